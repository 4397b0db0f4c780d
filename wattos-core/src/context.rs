//! Who is calling, for which tenant, under which deadline: the [`RequestContext`] every trait call takes.
//!
//! There is no way to build a context without a [`TenantId`], so no call path can run tenant-less.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Maximum length of tenant ids and principal subjects.
const MAX_ID_LEN: usize = 128;

fn validate_id(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(Error::invalid_field(
            what,
            format!("must be 1..={MAX_ID_LEN} characters"),
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(Error::invalid_field(
            what,
            "may only contain ASCII letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// A validated tenant identifier: 1 to 128 ASCII letters, digits, `-`, `_` or `.`.
///
/// ```
/// use wattos_core::TenantId;
/// let t: TenantId = "acme-gmbh".parse().unwrap();
/// assert_eq!(t.as_str(), "acme-gmbh");
/// assert!("".parse::<TenantId>().is_err());
/// assert!("a/b".parse::<TenantId>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Validates and wraps `id`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when `id` is empty, too long or has other characters.
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        validate_id("tenant_id", id)?;
        Ok(Self(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::new(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

/// What kind of actor a [`Principal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human user (JWT subject).
    User,
    /// An API key.
    ApiKey,
    /// WattOS itself (background workers, embedded library use).
    System,
}

/// The authenticated actor behind a request: subject plus roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable subject id (user id, key id, `system`).
    pub subject: String,
    /// What kind of actor this is.
    pub kind: PrincipalKind,
    /// Role names granted within the tenant.
    pub roles: Vec<String>,
}

impl Principal {
    /// A principal for WattOS's own work (embedded use, workers), holding the `system` role.
    pub fn system() -> Self {
        Self {
            subject: "system".into(),
            kind: PrincipalKind::System,
            roles: vec!["system".into()],
        }
    }

    /// A user principal.
    pub fn user(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            subject: subject.into(),
            kind: PrincipalKind::User,
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A request id: the caller's `x-request-id` when valid, else a fresh UUIDv7.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::now_v7().to_string()))
    }

    /// Accepts a caller-supplied id when it is 1..=128 visible ASCII characters; `None` otherwise.
    pub fn from_header(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= MAX_ID_LEN
            && value.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(Arc::from(value)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

/// W3C trace context (`traceparent` / `tracestate`), propagated to upstream calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the span that made this request.
    pub parent_id: String,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
    /// Vendor `tracestate`, passed through untouched.
    pub state: Option<String>,
}

impl TraceContext {
    /// Parses a W3C `traceparent` header (`00-<trace-id>-<parent-id>-<flags>`); `None` when malformed.
    ///
    /// ```
    /// use wattos_core::TraceContext;
    /// let t = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
    /// assert!(t.sampled());
    /// assert_eq!(t.to_traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
    /// ```
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let is_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !is_hex(version, 2) || version == "ff" || !is_hex(trace_id, 32) || !is_hex(parent_id, 16)
        {
            return None;
        }
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || parent_id.bytes().all(|b| b == b'0') {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags,
            state: tracestate.map(str::to_owned),
        })
    }

    /// A new root trace with random ids, sampled.
    pub fn new_root() -> Self {
        let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
        Self {
            trace_id,
            parent_id: format!("{:016x}", fastrand::u64(1..)),
            flags: 1,
            state: None,
        }
    }

    /// A child context: same trace, new span id, as sent to an upstream.
    pub fn child(&self) -> Self {
        Self {
            parent_id: format!("{:016x}", fastrand::u64(1..)),
            ..self.clone()
        }
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Renders the `traceparent` header value.
    pub fn to_traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

/// Everything a trait call needs to know about the request it serves.
///
/// ```
/// use std::time::Duration;
/// use wattos_core::{Principal, RequestContext, TenantId};
///
/// let ctx = RequestContext::new(TenantId::new("acme").unwrap(), Principal::system())
///     .with_timeout(Duration::from_secs(30));
/// assert_eq!(ctx.tenant().as_str(), "acme");
/// assert!(ctx.remaining().unwrap() <= Duration::from_secs(30));
/// assert!(ctx.check_deadline().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    tenant: TenantId,
    principal: Arc<Principal>,
    request_id: RequestId,
    trace: Option<TraceContext>,
    deadline: Option<Instant>,
}

impl RequestContext {
    /// A context for `tenant` acting as `principal`, with a fresh request id and no deadline.
    pub fn new(tenant: TenantId, principal: Principal) -> Self {
        Self {
            tenant,
            principal: Arc::new(principal),
            request_id: RequestId::generate(),
            trace: None,
            deadline: None,
        }
    }

    /// A system context for `tenant`: for embedded use, tests and background work.
    pub fn system(tenant: TenantId) -> Self {
        Self::new(tenant, Principal::system())
    }

    /// Replaces the request id.
    pub fn with_request_id(mut self, id: RequestId) -> Self {
        self.request_id = id;
        self
    }

    /// Sets the trace context.
    pub fn with_trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Sets an absolute deadline; an earlier existing deadline wins.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(match self.deadline {
            Some(d) if d < deadline => d,
            _ => deadline,
        });
        self
    }

    /// Sets a deadline `timeout` from now; an earlier existing deadline wins.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// The tenant every operation of this request is scoped to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The authenticated actor.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The request id (logged, echoed in responses, sent upstream).
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The W3C trace context, when the caller sent one or tracing created one.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }

    /// The absolute deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left until the deadline (`Some(ZERO)` once passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Fails with a timeout error once the deadline has passed.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Timeout`] when the deadline is in the past.
    pub fn check_deadline(&self) -> Result<()> {
        match self.remaining() {
            Some(left) if left.is_zero() => Err(Error::new(
                crate::ErrorKind::Timeout,
                "request deadline exceeded",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_validation() {
        assert!(TenantId::new("t1").is_ok());
        assert!(TenantId::new("a".repeat(129)).is_err());
        assert!(TenantId::new("spa ce").is_err());
        let json = serde_json::to_string(&TenantId::new("x").unwrap()).unwrap();
        assert_eq!(json, "\"x\"");
        assert!(serde_json::from_str::<TenantId>("\"a b\"").is_err());
    }

    #[test]
    fn earlier_deadline_wins() {
        let ctx = RequestContext::system(TenantId::new("t").unwrap())
            .with_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(100));
        assert!(ctx.remaining().unwrap() <= Duration::from_secs(1));
        let past = RequestContext::system(TenantId::new("t").unwrap())
            .with_deadline(Instant::now() - Duration::from_millis(1));
        assert_eq!(
            past.check_deadline().unwrap_err().kind(),
            crate::ErrorKind::Timeout
        );
    }

    #[test]
    fn request_id_header_validation() {
        assert!(RequestId::from_header("abc-123").is_some());
        assert!(RequestId::from_header("").is_none());
        assert!(RequestId::from_header("has space").is_none());
        assert!(RequestId::from_header(&"x".repeat(200)).is_none());
    }

    #[test]
    fn traceparent_roundtrip_and_child() {
        let root = TraceContext::new_root();
        let parsed = TraceContext::parse(&root.to_traceparent(), None).unwrap();
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.parent_id, root.parent_id);
        assert!(TraceContext::parse("garbage", None).is_none());
        assert!(
            TraceContext::parse(
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                None
            )
            .is_none()
        );
    }
}
