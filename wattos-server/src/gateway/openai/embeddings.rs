//! OpenAI Embeddings wire types.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use wattos_core::embedding::Embeddings;
use wattos_core::{Error, Result};

/// `POST /v1/embeddings` request body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// Model name.
    pub model: String,
    /// A string or an array of strings (token arrays are not supported).
    pub input: Value,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Requested dimensions; must equal the model's when given.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// End-user id.
    #[serde(default)]
    pub user: Option<String>,
}

/// Output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON numbers.
    Float,
    /// Base64 of little-endian f32 bytes.
    Base64,
}

impl EmbeddingRequest {
    /// The inputs as strings, validated.
    ///
    /// # Errors
    /// `invalid_input` naming the field.
    pub fn inputs(&self) -> Result<Vec<String>> {
        let inputs = match &self.input {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(Error::invalid_field(
                        format!("input[{i}]"),
                        "must be a string (token arrays are not supported)",
                    )),
                })
                .collect::<Result<Vec<_>>>()?,
            Value::Array(_) => return Err(Error::invalid_field("input", "must not be empty")),
            _ => {
                return Err(Error::invalid_field(
                    "input",
                    "must be a string or an array of strings",
                ));
            }
        };
        if inputs.len() > 2048 {
            return Err(Error::invalid_field(
                "input",
                "at most 2048 inputs per request",
            ));
        }
        if let Some(i) = inputs.iter().position(|s| s.is_empty()) {
            return Err(Error::invalid_field(
                format!("input[{i}]"),
                "must not be empty",
            ));
        }
        Ok(inputs)
    }

    /// The requested encoding.
    ///
    /// # Errors
    /// `invalid_input` for an unknown format.
    pub fn encoding(&self) -> Result<Encoding> {
        match self.encoding_format.as_deref() {
            None | Some("float") => Ok(Encoding::Float),
            Some("base64") => Ok(Encoding::Base64),
            Some(other) => Err(Error::invalid_field(
                "encoding_format",
                format!("'{other}' is not float or base64"),
            )),
        }
    }
}

/// `list` of embeddings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: &'static str,
    /// One entry per input.
    pub data: Vec<EmbeddingObject>,
    /// Model name.
    pub model: String,
    /// Usage.
    pub usage: EmbeddingUsage,
}

/// One embedding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingObject {
    /// Always `embedding`.
    pub object: &'static str,
    /// Numbers, or a base64 string.
    pub embedding: Value,
    /// Input position.
    pub index: usize,
}

/// Embedding usage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Same as prompt tokens.
    pub total_tokens: u64,
}

/// Renders neutral embeddings.
pub fn to_list(model: String, e: Embeddings, encoding: Encoding) -> EmbeddingList {
    let data = e
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = match encoding {
                Encoding::Float => {
                    Value::Array(v.into_iter().map(|x| Value::from(f64::from(x))).collect())
                }
                Encoding::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            EmbeddingObject {
                object: "embedding",
                embedding,
                index,
            }
        })
        .collect();
    EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: e.usage.input_tokens,
            total_tokens: e.usage.input_tokens,
        },
    }
}
