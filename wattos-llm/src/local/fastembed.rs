//! ONNX sentence embeddings through fastembed (cargo feature `fastembed`).
//!
//! onnxruntime is loaded at run time from `ORT_DYLIB_PATH` (`scripts/fetch-models.sh
//! --with-onnxruntime` installs it and prints the path). fastembed's model download is not used: the
//! model is read from a folder holding an ONNX export of a BERT-style sentence encoder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use wattos_core::embedding::{EmbeddingModel, Embeddings};
use wattos_core::llm::Usage;
use wattos_core::{Error, RequestContext, Result};

use super::error::{self, LoadError};
use super::minilm::MINILM_MAX_TOKENS;

/// A sentence embedder running an ONNX model with onnxruntime via fastembed: mean pooling,
/// L2-normalised, inputs truncated to 256 tokens.
///
/// The folder must hold `model.onnx` (or `onnx/model.onnx`), `tokenizer.json`, `config.json`,
/// `special_tokens_map.json` and `tokenizer_config.json`. One batch runs at a time per instance, on a
/// blocking thread.
///
/// ```no_run
/// use wattos_core::embedding::EmbeddingModel;
/// use wattos_llm::local::FastEmbedder;
///
/// // ORT_DYLIB_PATH must point at libonnxruntime.so (scripts/fetch-models.sh --with-onnxruntime).
/// let embedder = FastEmbedder::load("/models/all-minilm-l6-v2-onnx")?;
/// assert_eq!(embedder.dimensions(), 384);
/// # Ok::<(), wattos_llm::local::LoadError>(())
/// ```
#[derive(Clone)]
pub struct FastEmbedder {
    inner: Arc<Mutex<TextEmbedding>>,
    name: String,
    dimensions: usize,
}

impl std::fmt::Debug for FastEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastEmbedder")
            .field("name", &self.name)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

fn onnx_path(folder: &Path) -> PathBuf {
    let direct = folder.join("model.onnx");
    if direct.is_file() {
        direct
    } else {
        let nested = folder.join("onnx").join("model.onnx");
        if nested.is_file() { nested } else { direct }
    }
}

impl FastEmbedder {
    /// Loads the ONNX model and tokenizer files from `folder`.
    ///
    /// # Errors
    /// [`LoadError::MissingFile`] / [`LoadError::CorruptFile`] naming the file; a corrupt-file error
    /// naming the ONNX model when onnxruntime cannot be loaded or rejects it.
    pub fn load(folder: impl AsRef<Path>) -> std::result::Result<Self, LoadError> {
        let folder = folder.as_ref();
        let onnx = onnx_path(folder);
        let config_path = folder.join("config.json");
        let config = error::read_file(&config_path)?;
        let dimensions = serde_json::from_slice::<serde_json::Value>(&config)
            .ok()
            .and_then(|c| c.get("hidden_size").and_then(serde_json::Value::as_u64))
            .ok_or_else(|| LoadError::corrupt(&config_path, "no numeric hidden_size"))?
            as usize;
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: error::read_file(&folder.join("tokenizer.json"))?,
            config_file: config,
            special_tokens_map_file: error::read_file(&folder.join("special_tokens_map.json"))?,
            tokenizer_config_file: error::read_file(&folder.join("tokenizer_config.json"))?,
        };
        let model = UserDefinedEmbeddingModel::new(error::read_file(&onnx)?, tokenizer_files)
            .with_pooling(Pooling::Mean);
        let mut options = InitOptionsUserDefined::new();
        options.max_length = MINILM_MAX_TOKENS;
        let embedding = TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| LoadError::corrupt(&onnx, e))?;
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fastembed".to_owned());
        Ok(Self {
            inner: Arc::new(Mutex::new(embedding)),
            name,
            dimensions,
        })
    }
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[async_trait]
impl EmbeddingModel for FastEmbedder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, _ctx: &RequestContext, inputs: &[String]) -> Result<Embeddings> {
        if inputs.is_empty() {
            return Err(Error::invalid_field("input", "must not be empty"));
        }
        if let Some(i) = inputs.iter().position(|s| s.trim().is_empty()) {
            return Err(Error::invalid_field(
                format!("input[{i}]"),
                "must not be empty",
            ));
        }
        let inner = Arc::clone(&self.inner);
        let name = self.name.clone();
        let texts = inputs.to_vec();
        let (vectors, input_tokens) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut model = inner.lock().map_err(|_| {
                Error::internal(format!("{name}: a previous embedding call panicked"))
            })?;
            let input_tokens = model
                .tokenizer
                .encode_batch(texts.clone(), true)
                // Count real tokens only: fastembed's tokenizer may pad.
                .map(|enc| {
                    enc.iter()
                        .map(|e| {
                            e.get_attention_mask()
                                .iter()
                                .map(|&m| u64::from(m))
                                .sum::<u64>()
                        })
                        .sum::<u64>()
                })
                .unwrap_or(0);
            let vectors = model
                .embed(&texts, Some(texts.len()))
                .map_err(|e| error::inference(&name, e))?;
            Ok((
                vectors.into_iter().map(normalise).collect::<Vec<_>>(),
                input_tokens,
            ))
        })
        .await
        .map_err(|e| error::join(&self.name, e))??;
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
}
