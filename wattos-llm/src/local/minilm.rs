//! all-MiniLM-L6-v2 sentence embeddings with candle's BERT: mean pooling over the attention mask,
//! L2 normalisation, inputs truncated to 256 tokens (the model's sentence-transformers setting).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::Usage;
use wattos_core::{Error, RequestContext, Result};

use super::error::{self, LoadError};

/// Folder name of the model inside the WattOS model cache (see `scripts/fetch-models.sh`).
pub const MINILM_CACHE_SUBDIR: &str = "all-minilm-l6-v2";

/// Longest input in tokens; longer inputs are truncated (sentence-transformers' `max_seq_length`).
pub const MINILM_MAX_TOKENS: usize = 256;

/// The files of a sentence-transformers BERT folder that [`MiniLmEmbedder::load`] reads.
pub const MINILM_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Sequences run through BERT together; larger requests are split, shortest first, to limit padding.
const FORWARD_BATCH: usize = 32;

/// Local all-MiniLM-L6-v2 embeddings (384 dimensions), matching sentence-transformers' output.
///
/// Inference runs on a blocking thread (`spawn_blocking`), never on the async runtime. A batch is
/// tokenised, sorted by length, padded per forward batch of 32 and mean-pooled over the attention
/// mask, then L2-normalised. The embedder is `Clone` and cheap to share; concurrent calls run in
/// parallel on the CPU.
///
/// ```no_run
/// use wattos_core::embedding::EmbeddingModel;
/// use wattos_core::{RequestContext, TenantId};
/// use wattos_llm::local::MiniLmEmbedder;
///
/// # async fn run() -> wattos_core::Result<()> {
/// let models = wattos_llm::local::default_models_dir();
/// let embedder = MiniLmEmbedder::from_models_dir(&models)?;
/// let ctx = RequestContext::system(TenantId::new("acme")?);
/// let v = embedder.embed_one(&ctx, "How do I reset my password?").await?;
/// assert_eq!(v.len(), 384);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MiniLmEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    dimensions: usize,
    device: Device,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("name", &self.inner.name)
            .field("dimensions", &self.inner.dimensions)
            .finish_non_exhaustive()
    }
}

impl MiniLmEmbedder {
    /// Loads the model from a folder holding `config.json`, `tokenizer.json` and `model.safetensors`.
    ///
    /// # Errors
    /// [`LoadError::MissingFile`] or [`LoadError::CorruptFile`] naming the file at fault.
    pub fn load(folder: impl AsRef<Path>) -> std::result::Result<Self, LoadError> {
        let folder = folder.as_ref();
        let [config_file, tokenizer_file, weights_file] = MINILM_FILES;
        let config_path = folder.join(config_file);
        let tokenizer_path = folder.join(tokenizer_file);
        let weights_path = folder.join(weights_file);

        let config: Config = serde_json::from_slice(&error::read_file(&config_path)?)
            .map_err(|e| LoadError::corrupt(&config_path, e))?;
        let tokenizer = load_tokenizer(&tokenizer_path)?;

        let device = Device::Cpu;
        let weights = error::read_file(&weights_path)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| LoadError::corrupt(&weights_path, e))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| LoadError::corrupt(&weights_path, e))?;

        Ok(Self {
            inner: Arc::new(Inner {
                name: "all-MiniLM-L6-v2".to_owned(),
                model,
                tokenizer,
                dimensions: config.hidden_size,
                device,
            }),
        })
    }

    /// Loads the model from the WattOS model cache (`<dir>/all-minilm-l6-v2`).
    ///
    /// # Errors
    /// As for [`MiniLmEmbedder::load`].
    pub fn from_models_dir(dir: impl AsRef<Path>) -> std::result::Result<Self, LoadError> {
        Self::load(dir.as_ref().join(MINILM_CACHE_SUBDIR))
    }

    /// The folder [`MiniLmEmbedder::from_models_dir`] reads.
    pub fn folder_in(dir: impl AsRef<Path>) -> PathBuf {
        dir.as_ref().join(MINILM_CACHE_SUBDIR)
    }

    /// Embeds a batch synchronously on the calling thread (used by the async trait method from a
    /// blocking task, and by benchmarks).
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::InvalidInput`] for an empty input; internal errors if inference fails.
    pub fn embed_blocking(&self, inputs: &[String]) -> Result<Embeddings> {
        self.inner.embed(inputs)
    }
}

fn load_tokenizer(path: &Path) -> std::result::Result<Tokenizer, LoadError> {
    error::require_file(path)?;
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| LoadError::corrupt(path, e))?;
    // tokenizer.json ships with fixed padding/truncation at 128; sentence-transformers uses 256 and
    // pads per batch, which we do ourselves.
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MINILM_MAX_TOKENS,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| LoadError::corrupt(path, e))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

impl Inner {
    fn embed(&self, inputs: &[String]) -> Result<Embeddings> {
        if let Some(i) = inputs.iter().position(|s| s.trim().is_empty()) {
            return Err(Error::invalid_field(
                format!("input[{i}]"),
                "must not be empty",
            ));
        }
        let encodings = self
            .tokenizer
            .encode_batch(inputs.to_vec(), true)
            .map_err(|e| error::inference(&self.name, e))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let input_tokens = ids.iter().map(|t| t.len() as u64).sum();

        // Shortest first so each forward batch pads little; results go back to input order.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut vectors = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(FORWARD_BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i]).collect();
            let pooled = self
                .forward(&batch)
                .map_err(|e| error::inference(&self.name, e))?;
            for (&i, v) in chunk.iter().zip(pooled) {
                vectors[i] = v;
            }
        }
        Ok(Embeddings {
            vectors,
            model: self.name.clone(),
            usage: Usage {
                input_tokens,
                output_tokens: 0,
                cached_input_tokens: 0,
            },
            cost: None,
        })
    }

    /// BERT over one padded batch, then masked mean pooling and L2 normalisation.
    fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let longest = batch.iter().map(|t| t.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for tokens in batch {
            ids.extend_from_slice(tokens);
            ids.extend(std::iter::repeat_n(0u32, longest - tokens.len()));
            mask.extend(std::iter::repeat_n(1u32, tokens.len()));
            mask.extend(std::iter::repeat_n(0u32, longest - tokens.len()));
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;

        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f32::MAX)?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

#[async_trait]
impl EmbeddingModel for MiniLmEmbedder {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    fn max_batch_size(&self) -> usize {
        64
    }

    async fn embed(&self, _ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        if inputs.is_empty() {
            return Err(Error::invalid_field("input", "must not be empty"));
        }
        let inner = Arc::clone(&self.inner);
        let inputs = inputs.to_vec();
        tokio::task::spawn_blocking(move || inner.embed(&inputs))
            .await
            .map_err(|e| error::join(&self.inner.name, e))?
    }
}
