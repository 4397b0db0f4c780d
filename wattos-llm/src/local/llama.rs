//! A Llama forward pass over quantized GGUF weights, shaped for one-token decoding on a CPU.
//!
//! Same maths as `candle_transformers::models::quantized_llama` (RMS norm, interleaved RoPE,
//! grouped-query attention, SwiGLU MLP, tied or separate output head), minus the per-token copies
//! that dominate a small model's decode step there:
//!
//! * the key/value cache is a buffer per layer that grows by doubling and is written in place
//!   (`slice_set`), instead of `Tensor::cat` of the whole cache on every token;
//! * a decode step's attention is plain loops over the cache buffers: each query head reads its
//!   group's shared key/value head in place, instead of copying every cached key and value `n_rep`
//!   times (`repeat_kv`) and running candle matmuls per layer;
//! * the causal mask of a prefill chunk is additive and cached per shape.

use std::collections::HashMap;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Result, Storage, Tensor};
use candle_nn::Embedding;
use candle_transformers::quantized_nn::RmsNorm;

/// Model dimensions read from GGUF metadata (`llama.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LlamaShape {
    /// Transformer blocks.
    pub(crate) blocks: usize,
    /// Model width.
    pub(crate) embedding: usize,
    /// Query heads.
    pub(crate) heads: usize,
    /// Key/value heads (a divisor of `heads`).
    pub(crate) kv_heads: usize,
    /// RoPE dimensions per head.
    pub(crate) rope_dim: usize,
    /// RoPE base frequency.
    pub(crate) rope_base: f32,
    /// RMS norm epsilon.
    pub(crate) rms_eps: f64,
}

impl LlamaShape {
    /// Reads the shape from GGUF metadata.
    pub(crate) fn from_metadata(
        md: &HashMap<String, candle_core::quantized::gguf_file::Value>,
    ) -> Result<Self> {
        let get = |k: &str| {
            md.get(k)
                .ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata {k} is missing")))
        };
        let shape = Self {
            blocks: get("llama.block_count")?.to_u32()? as usize,
            embedding: get("llama.embedding_length")?.to_u32()? as usize,
            heads: get("llama.attention.head_count")?.to_u32()? as usize,
            kv_heads: get("llama.attention.head_count_kv")?.to_u32()? as usize,
            rope_dim: get("llama.rope.dimension_count")?.to_u32()? as usize,
            rope_base: md
                .get("llama.rope.freq_base")
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(10_000.0),
            rms_eps: f64::from(get("llama.attention.layer_norm_rms_epsilon")?.to_f32()?),
        };
        if shape.heads == 0
            || shape.kv_heads == 0
            || !shape.heads.is_multiple_of(shape.kv_heads)
            || !shape.embedding.is_multiple_of(shape.heads)
        {
            candle_core::bail!("unsupported attention shape {shape:?}");
        }
        Ok(shape)
    }

    fn head_dim(&self) -> usize {
        self.embedding / self.heads
    }
}

/// One layer's key/value cache: `(1, kv_heads, capacity, head_dim)` buffers, `len` positions used.
#[derive(Debug, Clone, Default)]
struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

impl KvCache {
    /// Writes `k`, `v` (`(1, kv_heads, seq, head_dim)`, contiguous) at `pos` and returns views of
    /// positions `0..pos + seq`. `pos` 0 starts over; `pos` past the cached length is an error.
    fn append(&mut self, k: &Tensor, v: &Tensor, pos: usize) -> Result<(Tensor, Tensor)> {
        if pos > self.len {
            candle_core::bail!(
                "kv cache holds {} positions, asked to write at {pos}",
                self.len
            );
        }
        let (b, h, seq, d) = k.dims4()?;
        let need = pos + seq;
        let capacity = self.k.as_ref().map_or(0, |t| t.dim(2).unwrap_or(0));
        if need > capacity {
            let grown = need.next_power_of_two().max(256);
            let k_buf = Tensor::zeros((b, h, grown, d), k.dtype(), k.device())?;
            let v_buf = Tensor::zeros((b, h, grown, d), v.dtype(), v.device())?;
            if let (Some(old_k), Some(old_v)) = (&self.k, &self.v)
                && pos > 0
            {
                k_buf.slice_set(&old_k.narrow(2, 0, pos)?.contiguous()?, 2, 0)?;
                v_buf.slice_set(&old_v.narrow(2, 0, pos)?.contiguous()?, 2, 0)?;
            }
            self.k = Some(k_buf);
            self.v = Some(v_buf);
        }
        let (Some(k_buf), Some(v_buf)) = (&self.k, &self.v) else {
            candle_core::bail!("kv cache not allocated");
        };
        k_buf.slice_set(k, 2, pos)?;
        v_buf.slice_set(v, 2, pos)?;
        self.len = need;
        Ok((k_buf.narrow(2, 0, need)?, v_buf.narrow(2, 0, need)?))
    }

    /// Attention of one query position (`q`: `heads * head_dim` values, head-major) over the
    /// first `len` cached positions; returns `heads * head_dim` values, head-major. Query head
    /// `h` reads key/value head `h / (heads / kv_heads)`.
    fn attend_one(&self, q: &[f32], shape: LlamaShape, len: usize, scale: f32) -> Result<Vec<f32>> {
        let (Some(k), Some(v)) = (&self.k, &self.v) else {
            candle_core::bail!("kv cache not allocated");
        };
        let hd = shape.head_dim();
        let n_rep = shape.heads / shape.kv_heads;
        let capacity = k.dim(2)?;
        if len > self.len || q.len() != shape.heads * hd {
            candle_core::bail!("attention over {len} of {} cached positions", self.len);
        }
        let (k_store, k_layout) = k.storage_and_layout();
        let (v_store, v_layout) = v.storage_and_layout();
        let (Storage::Cpu(k_cpu), Storage::Cpu(v_cpu)) = (&*k_store, &*v_store) else {
            candle_core::bail!("the decode kernel runs on the CPU");
        };
        let k_all = &k_cpu.as_slice::<f32>()?[k_layout.start_offset()..];
        let v_all = &v_cpu.as_slice::<f32>()?[v_layout.start_offset()..];
        let mut out = vec![0f32; shape.heads * hd];
        let mut probs = vec![0f32; len];
        for (h, (q_h, out_h)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
            let base = (h / n_rep) * capacity * hd;
            let keys = &k_all[base..base + len * hd];
            let values = &v_all[base..base + len * hd];
            let mut max = f32::NEG_INFINITY;
            for (p, key) in probs.iter_mut().zip(keys.chunks_exact(hd)) {
                *p = dot(q_h, key) * scale;
                max = max.max(*p);
            }
            let mut sum = 0f32;
            for p in &mut probs {
                *p = (*p - max).exp();
                sum += *p;
            }
            let inv = 1.0 / sum;
            for (p, value) in probs.iter().zip(values.chunks_exact(hd)) {
                let w = p * inv;
                for (o, x) in out_h.iter_mut().zip(value) {
                    *o += w * x;
                }
            }
        }
        Ok(out)
    }
}

/// Dot product with eight independent accumulators (vectorised by the compiler).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    let mut acc = [0f32; 8];
    for (x, y) in a8.iter().zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[derive(Debug, Clone)]
struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    gate: QMatMul,
    down: QMatMul,
    up: QMatMul,
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    cache: KvCache,
}

/// A quantized Llama decoder with its own key/value caches (one sequence at a time).
#[derive(Debug, Clone)]
pub(crate) struct Llama {
    shape: LlamaShape,
    embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    max_positions: usize,
    masks: HashMap<(usize, usize), Tensor>,
}

impl Llama {
    /// Builds the model from `shape` and the GGUF tensors `tensor(name)` (llama.cpp names;
    /// `output.weight` falls back to the tied token embeddings). RoPE tables cover
    /// `max_positions`.
    pub(crate) fn load(
        shape: LlamaShape,
        max_positions: usize,
        device: &Device,
        mut tensor: impl FnMut(&str) -> Result<QTensor>,
    ) -> Result<Self> {
        let embeddings_q = tensor("token_embd.weight")?;
        let embeddings = Embedding::new(embeddings_q.dequantize(device)?, shape.embedding);
        let output = match tensor("output.weight") {
            Ok(t) => t,
            Err(_) => embeddings_q,
        };
        let norm = RmsNorm::from_qtensor(tensor("output_norm.weight")?, shape.rms_eps)?;
        let mut layers = Vec::with_capacity(shape.blocks);
        for i in 0..shape.blocks {
            let mut q = |name: &str| {
                tensor(&format!("blk.{i}.{name}.weight")).and_then(QMatMul::from_qtensor)
            };
            let (wq, wk, wv, wo) = (q("attn_q")?, q("attn_k")?, q("attn_v")?, q("attn_output")?);
            let (gate, down, up) = (q("ffn_gate")?, q("ffn_down")?, q("ffn_up")?);
            layers.push(Layer {
                wq,
                wk,
                wv,
                wo,
                gate,
                down,
                up,
                attn_norm: RmsNorm::from_qtensor(
                    tensor(&format!("blk.{i}.attn_norm.weight"))?,
                    shape.rms_eps,
                )?,
                ffn_norm: RmsNorm::from_qtensor(
                    tensor(&format!("blk.{i}.ffn_norm.weight"))?,
                    shape.rms_eps,
                )?,
                cache: KvCache::default(),
            });
        }
        let (cos, sin) = rope_tables(shape.rope_dim, shape.rope_base, max_positions, device)?;
        Ok(Self {
            shape,
            embeddings,
            layers,
            norm,
            output: QMatMul::from_qtensor(output)?,
            cos,
            sin,
            max_positions,
            masks: HashMap::new(),
        })
    }

    /// Runs tokens `x` (`(1, seq)`, u32) at positions `index_pos..index_pos + seq` and returns
    /// the logits of the last one (`(1, vocab)`). `index_pos` 0 starts a new sequence; a smaller
    /// `index_pos` than the cached length rewinds the caches.
    pub(crate) fn forward(&mut self, x: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (b, seq) = x.dims2()?;
        if b != 1 {
            candle_core::bail!("batch size {b}: one sequence at a time");
        }
        if index_pos + seq > self.max_positions {
            candle_core::bail!(
                "position {} is past the context window of {}",
                index_pos + seq,
                self.max_positions
            );
        }
        let mask = if seq == 1 {
            None
        } else {
            Some(self.mask(seq, index_pos, x.device())?)
        };
        let cos = self.cos.narrow(0, index_pos, seq)?;
        let sin = self.sin.narrow(0, index_pos, seq)?;
        let shape = self.shape;
        let mut h = self.embeddings.forward(x)?;
        for layer in &mut self.layers {
            let attn_in = layer.attn_norm.forward(&h)?;
            let attn = attention(
                layer,
                &shape,
                &attn_in,
                mask.as_ref(),
                &cos,
                &sin,
                index_pos,
            )?;
            h = (attn + &h)?;
            let ffn_in = layer.ffn_norm.forward(&h)?;
            let gate = layer.gate.forward(&ffn_in)?;
            let up = layer.up.forward(&ffn_in)?;
            let ffn = layer.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
            h = (ffn + &h)?;
        }
        let last = self.norm.forward(&h)?.i((.., seq - 1, ..))?;
        self.output.forward(&last)
    }

    /// The additive causal mask (0 or -inf) of a `seq`-token chunk at `index_pos`:
    /// `(seq, index_pos + seq)`.
    fn mask(&mut self, seq: usize, index_pos: usize, device: &Device) -> Result<Tensor> {
        let key = (seq, index_pos);
        if let Some(m) = self.masks.get(&key) {
            return Ok(m.clone());
        }
        let kv_len = index_pos + seq;
        let values: Vec<f32> = (0..seq)
            .flat_map(|i| {
                (0..kv_len).map(move |j| {
                    if j > index_pos + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(values, (seq, kv_len), device)?;
        if self.masks.len() > 64 {
            self.masks.clear();
        }
        self.masks.insert(key, mask.clone());
        Ok(mask)
    }
}

fn attention(
    layer: &mut Layer,
    shape: &LlamaShape,
    x: &Tensor,
    mask: Option<&Tensor>,
    cos: &Tensor,
    sin: &Tensor,
    index_pos: usize,
) -> Result<Tensor> {
    let (b, seq, width) = x.dims3()?;
    let hd = shape.head_dim();
    let (heads, kv_heads) = (shape.heads, shape.kv_heads);
    let n_rep = heads / kv_heads;
    let q = layer
        .wq
        .forward(x)?
        .reshape((b, seq, heads, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    let k = layer
        .wk
        .forward(x)?
        .reshape((b, seq, kv_heads, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    let v = layer
        .wv
        .forward(x)?
        .reshape((b, seq, kv_heads, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
    let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
    let (k, v) = layer.cache.append(&k, &v, index_pos)?;
    let kv_len = k.dim(2)?;
    let scale = (hd as f64).sqrt();
    if seq == 1 {
        // Decoding: plain loops over the cache buffers. The n_rep query heads of a group read
        // their shared key/value head in place (no copy), and no candle matmul runs: one costs
        // more in dispatch (and, in candle 0.11, a thread-count lookup that parses
        // /proc/cpuinfo) than the few thousand multiply-adds it computes here.
        let q: Vec<f32> = q.flatten_all()?.to_vec1()?;
        let out = layer
            .cache
            .attend_one(&q, *shape, kv_len, (1.0 / scale) as f32)?;
        let out = Tensor::from_vec(out, (b, seq, width), x.device())?;
        return layer.wo.forward(&out);
    }
    let out = {
        // Prefill chunks (once per prompt): keys and values repeated per query head, exactly as
        // the reference computes it, so a prompt's logits do not depend on how it is chunked.
        let k = candle_transformers::utils::repeat_kv(k.contiguous()?, n_rep)?;
        let v = candle_transformers::utils::repeat_kv(v.contiguous()?, n_rep)?;
        let scores = (q.matmul(&k.t()?)? / scale)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        debug_assert_eq!(scores.dim(3)?, kv_len);
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        probs.matmul(&v.contiguous()?)?
    };
    let out = out.transpose(1, 2)?.reshape((b, seq, width))?;
    layer.wo.forward(&out)
}

/// RoPE cos/sin tables `(max_positions, rope_dim / 2)`.
fn rope_tables(
    rope_dim: usize,
    base: f32,
    max_positions: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..rope_dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / rope_dim as f32))
        .collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let positions = Tensor::arange(0, max_positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max_positions, 1))?;
    let angles = positions.matmul(&theta.reshape((1, ()))?)?;
    Ok((angles.cos()?, angles.sin()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_grows_in_place_and_rewinds() {
        let dev = Device::Cpu;
        let mut cache = KvCache::default();
        let step = |v: f32| Tensor::full(v, (1, 2, 1, 4), &dev).unwrap();
        for pos in 0..300 {
            let (k, _) = cache.append(&step(pos as f32), &step(0.0), pos).unwrap();
            assert_eq!(k.dims4().unwrap(), (1, 2, pos + 1, 4));
        }
        let (k, _) = cache.append(&step(7.0), &step(0.0), 10).unwrap();
        assert_eq!(k.dim(2).unwrap(), 11);
        let firsts: Vec<f32> = k.i((0, 0, .., 0)).unwrap().to_vec1().unwrap();
        assert_eq!(firsts[..3], [0.0, 1.0, 2.0]);
        assert_eq!(firsts[10], 7.0);
        assert!(cache.append(&step(0.0), &step(0.0), 12).is_err());
        let (k, _) = cache.append(&step(5.0), &step(0.0), 0).unwrap();
        assert_eq!(k.dim(2).unwrap(), 1);
    }

    /// Logits match candle's reference `quantized_llama` on the real SmolLM2 file: a prefill in
    /// two chunks, then decode steps (skipped without the models folder).
    #[test]
    fn logits_match_candles_quantized_llama() {
        use candle_core::quantized::gguf_file::Content;
        use candle_transformers::models::quantized_llama::ModelWeights;
        let Some(dir) = std::env::var_os("WATTOS_MODELS__DIR") else {
            wattos_core::test_utils::skip::skip(
                "SmolLM2 logits vs candle",
                "WATTOS_MODELS__DIR is not set",
            );
            return;
        };
        let path = std::path::Path::new(&dir).join(crate::local::SMOLLM_CACHE_FILE);
        let dev = Device::Cpu;
        let mut file = std::fs::File::open(&path).unwrap();
        let content = Content::read(&mut file).unwrap();
        let shape = LlamaShape::from_metadata(&content.metadata).unwrap();
        let mut ours =
            Llama::load(shape, 512, &dev, |n| content.tensor(&mut file, n, &dev)).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let content = Content::read(&mut file).unwrap();
        let mut reference = ModelWeights::from_gguf(content, &mut file, &dev).unwrap();
        let tokens: Vec<u32> = (0..20).map(|i| 100 + i * 37).collect();
        let run = |m: &mut dyn FnMut(&Tensor, usize) -> Result<Tensor>| -> Vec<Vec<f32>> {
            let mut out = Vec::new();
            for (start, end) in [(0, 7), (7, 12), (12, 13), (13, 14), (14, 20)] {
                let x = Tensor::new(&tokens[start..end], &dev)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap();
                out.push(
                    m(&x, start)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap(),
                );
            }
            out
        };
        let a = run(&mut |x, p| ours.forward(x, p));
        let b = run(&mut |x, p| reference.forward(x, p));
        for (step, (a, b)) in a.iter().zip(&b).enumerate() {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-3, "step {step}: max logit difference {diff}");
            let argmax = |v: &[f32]| {
                v.iter()
                    .enumerate()
                    .max_by(|x, y| x.1.total_cmp(y.1))
                    .map(|(i, _)| i)
            };
            assert_eq!(argmax(a), argmax(b), "step {step}");
        }
    }

    #[test]
    fn decode_attention_equals_repeated_heads() {
        // `attend_one` over the cache must equal the reference: keys and values repeated per
        // query head, softmax of the scaled scores, weighted values.
        let dev = Device::Cpu;
        let (kv_heads, n_rep, len, hd) = (3, 3, 5, 8);
        let heads = kv_heads * n_rep;
        let shape = LlamaShape {
            blocks: 1,
            embedding: heads * hd,
            heads,
            kv_heads,
            rope_dim: hd,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
        };
        let q = Tensor::randn(0f32, 1.0, (1, heads, 1, hd), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, kv_heads, len, hd), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, kv_heads, len, hd), &dev).unwrap();
        let mut cache = KvCache::default();
        cache.append(&k, &v, 0).unwrap();
        let scale = 1.0 / (hd as f32).sqrt();
        let q_values: Vec<f32> = q.flatten_all().unwrap().to_vec1().unwrap();
        let ours = cache.attend_one(&q_values, shape, len, scale).unwrap();
        let reference: Vec<f32> = {
            let k = candle_transformers::utils::repeat_kv(k.clone(), n_rep).unwrap();
            let v = candle_transformers::utils::repeat_kv(v.clone(), n_rep).unwrap();
            let scores = (q.matmul(&k.t().unwrap()).unwrap() * f64::from(scale)).unwrap();
            let s = candle_nn::ops::softmax_last_dim(&scores).unwrap();
            s.matmul(&v.contiguous().unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(ours.len(), reference.len());
        let diff = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "max difference {diff}");
    }
}
