//! A byte-level BPE tokenizer rebuilt from a GGUF file's `tokenizer.ggml.*` metadata (no
//! `tokenizer.json` needed), plus an incremental UTF-8 decoder for token streaming.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Tokenizer and decoding tables for a GPT-2 style (byte-level BPE) GGUF model.
pub(crate) struct GgufTokenizer {
    tokenizer: Tokenizer,
    /// Raw bytes of each token; empty for control tokens, which never appear in output text.
    token_bytes: Vec<Vec<u8>>,
    /// Tokens that end a turn (EOS, `<|im_end|>`, `<|endoftext|>`).
    end_of_generation: Vec<u32>,
    /// Text of the BOS token, for chat templates.
    pub(crate) bos_token: String,
    /// Text of the EOS token, for chat templates.
    pub(crate) eos_token: String,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab", &self.token_bytes.len())
            .field("end_of_generation", &self.end_of_generation)
            .finish_non_exhaustive()
    }
}

fn strings(content: &Content, key: &str) -> Result<Vec<String>, String> {
    let value = content
        .metadata
        .get(key)
        .ok_or_else(|| format!("metadata key {key} is missing"))?;
    value
        .to_vec()
        .map_err(|e| format!("{key}: {e}"))?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| format!("{key}: {e}")))
        .collect()
}

fn u32_key(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

/// GPT-2's reversible byte <-> printable char mapping, as char -> byte.
fn byte_level_decode_table() -> HashMap<char, u8> {
    let mut table = HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u8..=255 {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        let c = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + extra).unwrap_or(char::REPLACEMENT_CHARACTER);
            extra += 1;
            c
        };
        table.insert(c, b);
    }
    table
}

impl GgufTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    ///
    /// # Errors
    /// A message naming the missing or malformed metadata key.
    pub(crate) fn from_gguf(content: &Content) -> Result<Self, String> {
        let model = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if model != "gpt2" {
            return Err(format!(
                "tokenizer.ggml.model is '{model}'; only byte-level BPE ('gpt2') is supported"
            ));
        }
        let tokens = strings(content, "tokenizer.ggml.tokens")?;
        let merges = strings(content, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(values)) => values.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };

        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| format!("tokenizer.ggml.merges: malformed merge '{m}'"))
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| format!("tokenizer.ggml.*: {e}"))?;

        let mut tokenizer = Tokenizer::new(bpe);
        // llama.cpp's `smollm`/`starcoder` pre-tokenizer: digits split one by one, then GPT-2's regex.
        let pre = Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]);
        tokenizer.with_pre_tokenizer(Some(pre));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| matches!(**t, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|(s, t)| AddedToken::from(s.clone(), *t == TOKEN_TYPE_CONTROL))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| format!("tokenizer.ggml special tokens: {e}"))?;

        let table = byte_level_decode_table();
        let token_bytes = tokens
            .iter()
            .zip(&types)
            .map(|(t, ty)| match *ty {
                TOKEN_TYPE_CONTROL => Vec::new(),
                TOKEN_TYPE_USER_DEFINED => t.as_bytes().to_vec(),
                _ => t
                    .chars()
                    .flat_map(|c| match table.get(&c) {
                        Some(b) => vec![*b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect(),
            })
            .collect();

        let id_of = |s: &str| tokens.iter().position(|t| t == s).map(|i| i as u32);
        let eos = u32_key(content, "tokenizer.ggml.eos_token_id");
        let bos = u32_key(content, "tokenizer.ggml.bos_token_id");
        let mut end_of_generation: Vec<u32> = eos.into_iter().collect();
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"] {
            if let Some(id) = id_of(name)
                && !end_of_generation.contains(&id)
            {
                end_of_generation.push(id);
            }
        }
        let text_of = |id: Option<u32>| {
            id.and_then(|i| tokens.get(i as usize))
                .cloned()
                .unwrap_or_default()
        };
        Ok(Self {
            tokenizer,
            token_bytes,
            end_of_generation,
            bos_token: text_of(bos),
            eos_token: text_of(eos),
        })
    }

    /// Token ids of `text`; special-token text such as `<|im_start|>` maps to its single id.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    /// Whether `id` ends the assistant's turn.
    pub(crate) fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }

    /// The bytes `id` stands for in output text (empty for control tokens and unknown ids).
    pub(crate) fn bytes_of(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The tokens that end a turn.
    pub(crate) fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Number of tokens in the vocabulary.
    pub(crate) fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }
}

/// Turns a sequence of token byte strings into text pieces, holding back incomplete UTF-8.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends bytes and returns the text that is now complete (possibly empty).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_owned();
                self.pending.clear();
                out
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // An invalid byte (not just an incomplete tail) can never become valid: flush it lossily.
                let cut = if e.error_len().is_some() {
                    self.pending.len()
                } else {
                    valid
                };
                let out = String::from_utf8_lossy(&self.pending[..cut]).into_owned();
                self.pending.drain(..cut);
                out
            }
        }
    }

    /// Bytes held back (an incomplete UTF-8 character).
    pub(crate) fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Whatever is still pending, lossily (end of generation).
    pub(crate) fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_back_split_characters() {
        let mut s = Utf8Stream::default();
        let bytes = "é🚀".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..]), "🚀");
        assert_eq!(s.push(b"ok"), "ok");
        assert_eq!(s.push(&[0xF0]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn byte_table_covers_all_bytes() {
        let t = byte_level_decode_table();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'Ġ'], b' ');
        assert_eq!(t[&'Ċ'], b'\n');
    }
}
