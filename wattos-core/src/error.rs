//! One error model shared by every WattOS layer.
//!
//! Every crate converts its failures into [`Error`], whose [`ErrorKind`] decides how callers react:
//! retries and circuit breakers look at [`Error::is_retryable`], the server maps the kind to exactly one
//! HTTP status and a stable machine-readable [`ErrorKind::code`].

use std::fmt;
use std::time::Duration;

/// A boxed error usable as an error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most bytes of caller input an error message quotes (see [`quote`]).
pub const MAX_QUOTE_BYTES: usize = 200;

/// The most bytes an error message or field name keeps: whatever a caller sends, an error built
/// from it stays small (a 1 MB model name does not come back in a 1 MB error body).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `input` cut to at most [`MAX_QUOTE_BYTES`] bytes (on a character boundary), with `…` appended
/// when it was cut: what an error message may quote of caller input.
///
/// ```
/// use wattos_core::error::quote;
/// assert_eq!(quote("gpt-4o"), "gpt-4o");
/// let long = "x".repeat(10_000);
/// assert!(quote(&long).len() <= 200 + "…".len());
/// ```
pub fn quote(input: &str) -> std::borrow::Cow<'_, str> {
    truncate(input, MAX_QUOTE_BYTES)
}

/// `message` cut to at most [`MAX_MESSAGE_BYTES`] bytes, as every [`Error`] message is: for error
/// texts built outside [`Error`] (an HTTP layer's own rejections).
pub fn bound_message(message: &str) -> std::borrow::Cow<'_, str> {
    truncate(message, MAX_MESSAGE_BYTES)
}

/// `s` cut to at most `max` bytes on a character boundary, `…` appended when cut.
fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &s[..end]))
}

/// Bounds an owned message in place (no copy when it is short already).
fn bound(s: String, max: usize) -> String {
    match truncate(&s, max) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(cut) => cut,
    }
}

/// The class of an [`Error`]. Stable: the server turns it into an HTTP status and error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller sent something malformed or semantically invalid.
    InvalidInput,
    /// The prompt plus requested output does not fit the model's context window.
    ContextLengthExceeded,
    /// The addressed object does not exist (or is not visible to this tenant).
    NotFound,
    /// No or invalid credentials.
    Unauthenticated,
    /// Valid credentials that lack the required permission.
    Forbidden,
    /// A rate limit was hit; see [`Error::retry_after`].
    RateLimited,
    /// A spending budget would be exceeded.
    BudgetExceeded,
    /// An operation ran out of time.
    Timeout,
    /// A dependency (or a local capacity limit such as a bulkhead or open breaker) cannot serve now.
    Unavailable,
    /// An upstream service (LLM provider, database, ...) answered with an error.
    Upstream,
    /// The request conflicts with the current state (duplicate, version mismatch, wrong run state).
    Conflict,
    /// A bug or an unexpected condition inside WattOS.
    Internal,
}

impl ErrorKind {
    /// Stable, snake_case code for APIs and metrics.
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::ContextLengthExceeded => "context_length_exceeded",
            Self::NotFound => "not_found",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::BudgetExceeded => "budget_exceeded",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Upstream => "upstream_error",
            Self::Conflict => "conflict",
            Self::Internal => "internal_error",
        }
    }

    /// Every kind, for exhaustive tests and documentation.
    pub const ALL: [ErrorKind; 12] = [
        Self::InvalidInput,
        Self::ContextLengthExceeded,
        Self::NotFound,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::RateLimited,
        Self::BudgetExceeded,
        Self::Timeout,
        Self::Unavailable,
        Self::Upstream,
        Self::Conflict,
        Self::Internal,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Details of a failed call to an upstream service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamDetails {
    /// Which upstream failed, e.g. `openai` or `postgres`.
    pub provider: String,
    /// The upstream's status code, when it answered at all (HTTP status for HTTP APIs).
    pub status: Option<u16>,
    /// The upstream's own error code or type, when it gave one (e.g. `overloaded_error`).
    pub code: Option<String>,
}

/// The error type shared by all WattOS crates.
///
/// Build one with the constructor named after its kind ([`Error::invalid_input`], [`Error::upstream`], ...)
/// and refine it with the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use wattos_core::{Error, ErrorKind};
///
/// let err = Error::rate_limited("too many requests").with_retry_after(Duration::from_secs(2));
/// assert_eq!(err.kind(), ErrorKind::RateLimited);
/// assert!(err.is_retryable());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(err.code(), "rate_limited");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    field: Option<String>,
    retry_after: Option<Duration>,
    retryable: bool,
    shed: bool,
    upstream: Option<Box<UpstreamDetails>>,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind`. Retryability defaults per kind (see [`Error::is_retryable`]).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retryable = matches!(
            kind,
            ErrorKind::RateLimited | ErrorKind::Timeout | ErrorKind::Unavailable
        );
        Self {
            kind,
            message: bound(message.into(), MAX_MESSAGE_BYTES),
            field: None,
            retry_after: None,
            retryable,
            shed: false,
            upstream: None,
            source: None,
        }
    }

    /// Invalid input from the caller.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Invalid input, naming the offending field (e.g. `messages[2].content`).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::InvalidInput, message);
        e.field = Some(bound(field.into(), MAX_QUOTE_BYTES));
        e
    }

    /// The request does not fit the model's context window.
    pub fn context_length_exceeded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ContextLengthExceeded, message)
    }

    /// `what` does not exist (or is not visible to the caller's tenant).
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, what)
    }

    /// Missing or invalid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    /// The principal lacks a permission.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// A rate limit was hit.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited, message)
    }

    /// A budget would be exceeded.
    pub fn budget_exceeded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BudgetExceeded, message)
    }

    /// `operation` did not finish within `after`.
    pub fn timeout(operation: impl fmt::Display, after: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!("{operation} timed out after {} ms", after.as_millis()),
        )
    }

    /// A dependency or local capacity cannot serve right now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// A healthy dependency sheds load: it is busy and says when to come back (`unavailable`, 503,
    /// with `Retry-After`). Unlike other unavailability it is not a failure of the dependency, so it
    /// never trips a circuit breaker ([`Error::is_dependency_failure`] is false), and retrying at
    /// once is pointless ([`Error::is_load_shed`]).
    pub fn overloaded(message: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = Self::new(ErrorKind::Unavailable, message).with_retry_after(retry_after);
        e.shed = true;
        e
    }

    /// Whether this is a busy dependency's refusal ([`Error::overloaded`]).
    pub fn is_load_shed(&self) -> bool {
        self.shed
    }

    /// An upstream answered with an error. `retryable` says whether trying again may help
    /// (429, 5xx, overloaded) or not (400, 401, 404).
    pub fn upstream(
        provider: impl Into<String>,
        status: Option<u16>,
        retryable: bool,
        message: impl Into<String>,
    ) -> Self {
        let mut e = Self::new(ErrorKind::Upstream, message);
        e.retryable = retryable;
        e.upstream = Some(Box::new(UpstreamDetails {
            provider: provider.into(),
            status,
            code: None,
        }));
        e
    }

    /// The request conflicts with current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// An unexpected internal condition.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets how long the caller should wait before trying again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Overrides the default retry classification.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Attaches (or replaces) upstream details, e.g. to mark a rate limit as coming from a provider.
    pub fn with_upstream(mut self, provider: impl Into<String>, status: Option<u16>) -> Self {
        let code = self.upstream.as_ref().and_then(|u| u.code.clone());
        self.upstream = Some(Box::new(UpstreamDetails {
            provider: provider.into(),
            status,
            code,
        }));
        self
    }

    /// Records the upstream's own error code (e.g. `insufficient_quota`). Needs upstream details.
    pub fn with_upstream_code(mut self, code: impl Into<String>) -> Self {
        if let Some(u) = self.upstream.as_mut() {
            u.code = Some(code.into());
        }
        self
    }

    /// Names the input field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(bound(field.into(), MAX_QUOTE_BYTES));
        self
    }

    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code of [`Error::kind`].
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The human-readable message (without the source chain).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The input field at fault, when known.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// How long to wait before trying again, when the failing party said so.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Upstream details, for upstream failures and upstream-originated rate limits or timeouts.
    pub fn upstream_details(&self) -> Option<&UpstreamDetails> {
        self.upstream.as_deref()
    }

    /// Whether trying the same call again may succeed. Rate limits, timeouts and unavailability are
    /// retryable; upstream errors are retryable when the constructor said so; everything else is not.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether the failure says something about the health of the called dependency (and should
    /// therefore count towards a circuit breaker). Caller mistakes (bad input, auth, not found,
    /// budgets) never trip a breaker.
    pub fn is_dependency_failure(&self) -> bool {
        if self.shed {
            return false;
        }
        match self.kind {
            ErrorKind::Timeout | ErrorKind::Unavailable => true,
            ErrorKind::Upstream => self.retryable,
            ErrorKind::RateLimited => self.upstream.is_some(),
            _ => false,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(field) = &self.field {
            d.field("field", field);
        }
        if let Some(ra) = &self.retry_after {
            d.field("retry_after", ra);
        }
        if let Some(u) = &self.upstream {
            d.field("upstream", u);
        }
        d.field("retryable", &self.retryable);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.upstream {
            write!(f, "{}", u.provider)?;
            if let Some(status) = u.status {
                write!(f, " ({status})")?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid_input(format!("invalid JSON: {e}")).with_source(e)
    }
}

impl From<tokio::time::error::Elapsed> for Error {
    fn from(e: tokio::time::error::Elapsed) -> Self {
        Error::new(ErrorKind::Timeout, "operation timed out").with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            assert!(k.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn retry_classification() {
        assert!(Error::timeout("x", Duration::from_secs(1)).is_retryable());
        assert!(!Error::invalid_input("bad").is_retryable());
        assert!(Error::upstream("openai", Some(503), true, "down").is_retryable());
        assert!(!Error::upstream("openai", Some(400), false, "bad").is_retryable());
        assert!(!Error::not_found("x").is_dependency_failure());
        assert!(Error::upstream("openai", Some(500), true, "x").is_dependency_failure());
        assert!(!Error::rate_limited("tenant limit").is_dependency_failure());
        assert!(
            Error::rate_limited("provider limit")
                .with_upstream("openai", Some(429))
                .is_dependency_failure()
        );
    }

    #[test]
    fn messages_and_fields_from_callers_stay_bounded() {
        let huge = "é".repeat(500_000); // 1 MB of two-byte characters
        let e = Error::invalid_field(huge.clone(), format!("unknown model `{huge}`"));
        assert!(e.message().len() <= MAX_MESSAGE_BYTES + "…".len());
        assert!(e.field().unwrap().len() <= MAX_QUOTE_BYTES + "…".len());
        assert!(e.message().ends_with('…'));
        let e = Error::not_found("x").with_field(huge.clone());
        assert!(e.field().unwrap().len() <= MAX_QUOTE_BYTES + "…".len());
        assert!(quote(&huge).len() <= MAX_QUOTE_BYTES + "…".len());
        assert_eq!(quote("short"), "short");
        // Short messages are kept whole.
        assert_eq!(Error::invalid_input("bad").message(), "bad");
    }

    #[test]
    fn display_includes_provider_and_field() {
        let e = Error::upstream("anthropic", Some(529), true, "overloaded");
        assert_eq!(e.to_string(), "anthropic (529): overloaded");
        let e = Error::invalid_field("messages[0].role", "unknown role");
        assert_eq!(e.to_string(), "messages[0].role: unknown role");
    }
}
