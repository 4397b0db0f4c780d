//! Typed load errors for local models and the mapping of candle/tokenizer failures onto
//! [`wattos_core::Error`].

use std::path::{Path, PathBuf};

use wattos_core::Error;

/// Why a local model could not be loaded. Every variant names the file at fault.
///
/// Converts into [`wattos_core::Error`] (`NotFound` for missing files, `Unavailable` for corrupt ones)
/// so callers that only deal in the core error type can use `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file the model needs is not there.
    #[error(
        "model file {path} is missing (run scripts/fetch-models.sh or point WATTOS_MODELS__DIR at a filled cache)"
    )]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A file exists but cannot be read or parsed.
    #[error("model file {path} is unreadable or corrupt: {reason}")]
    CorruptFile {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl LoadError {
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::MissingFile { path } | Self::CorruptFile { path, .. } => path,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::CorruptFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        let base = match &e {
            LoadError::MissingFile { .. } => Error::not_found(e.to_string()),
            LoadError::CorruptFile { .. } => Error::unavailable(e.to_string()),
        };
        base.with_source(e)
    }
}

/// Checks that `path` is an existing file.
pub(crate) fn require_file(path: &Path) -> Result<(), LoadError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(LoadError::MissingFile {
            path: path.to_path_buf(),
        })
    }
}

/// Reads a whole file, mapping "not found" and other I/O failures to [`LoadError`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    require_file(path)?;
    std::fs::read(path).map_err(|e| LoadError::corrupt(path, e))
}

/// A failure inside inference (candle or tokenizer); these indicate a bug or a broken model,
/// not bad input.
pub(crate) fn inference(model: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{model}: inference failed: {e}"))
}

/// The blocking inference task died (panicked or was cancelled).
pub(crate) fn join(model: &str, e: tokio::task::JoinError) -> Error {
    Error::internal(format!("{model}: inference task failed: {e}"))
}
