//! [`Secret`]: a value that never shows up in `Debug`, `Display` or logs.

use std::fmt;

/// Wraps a secret (API key, password-bearing URL). `Debug` and `Display` print `[redacted]`;
/// read the value with [`Secret::expose`].
///
/// ```
/// use wattos_core::config::Secret;
/// let key = Secret::new("sk-live-123".to_string());
/// assert_eq!(format!("{key:?}"), "Secret([redacted])");
/// assert_eq!(key.expose(), "sk-live-123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(v: T) -> Self {
        Self(v)
    }
}
