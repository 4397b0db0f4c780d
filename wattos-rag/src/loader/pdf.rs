//! PDF text extraction with the pure-Rust `pdf-extract` crate.

use async_trait::async_trait;
use wattos_core::{Error, RequestContext, Result};

use super::{DEFAULT_MAX_BYTES, LoadFailure, Loader, check_size, document, fail, non_empty};
use crate::document::{Document, Format, Source};

/// Loads a PDF's text layer. Scanned PDFs without text give [`LoadFailure::Empty`]; unparsable
/// ones [`LoadFailure::BrokenPdf`]. Parsing runs on a blocking thread.
#[derive(Debug, Clone)]
pub struct PdfLoader {
    max_bytes: usize,
}

impl PdfLoader {
    /// A loader accepting up to `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl Default for PdfLoader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

#[async_trait]
impl Loader for PdfLoader {
    async fn load(&self, _ctx: &RequestContext, source: Source) -> Result<Document> {
        check_size(&source, self.max_bytes)?;
        if !source.bytes.starts_with(b"%PDF-") {
            return Err(fail(
                &source.id,
                LoadFailure::BrokenPdf {
                    reason: "missing %PDF- header".into(),
                },
            ));
        }
        let bytes = source.bytes.clone();
        let id = source.id.clone();
        let extracted = tokio::task::spawn_blocking(move || {
            // The parser may panic on hostile input; contain it as a broken PDF.
            std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(&bytes))
        })
        .await
        .map_err(|e| Error::internal(format!("pdf worker failed: {e}")))?;
        let text = match extracted {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Err(fail(
                    &id,
                    LoadFailure::BrokenPdf {
                        reason: e.to_string(),
                    },
                ));
            }
            Err(_) => {
                return Err(fail(
                    &id,
                    LoadFailure::BrokenPdf {
                        reason: "parser panicked".into(),
                    },
                ));
            }
        };
        let text = non_empty(&id, normalise(&text))?;
        Ok(document(source, Format::Pdf, text, None))
    }
}

fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            blank += 1;
            if blank == 1 && !out.is_empty() {
                out.push('\n');
            }
        } else {
            blank = 0;
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim().to_owned()
}
