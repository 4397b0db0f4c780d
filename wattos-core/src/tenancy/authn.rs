//! Authentication: credentials in, an [`Identity`] (tenant + principal) out.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::context::{Principal, TenantId};
use crate::error::Result;

/// What a caller presented.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Bearer <token>`: a JWT or an API key.
    Bearer(String),
    /// `x-api-key: <key>`.
    ApiKey(String),
}

impl Credentials {
    /// The raw secret.
    pub fn secret(&self) -> &str {
        match self {
            Self::Bearer(s) | Self::ApiKey(s) => s,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
        }
    }
}

/// Who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant the credential is scoped to.
    pub tenant: TenantId,
    /// Subject, kind and roles.
    pub principal: Principal,
    /// When the credential stops being valid, if it expires.
    pub expires_at: Option<SystemTime>,
    /// The token id (`jti`) or API key id, for revocation and audit.
    pub credential_id: Option<String>,
}

/// Turns credentials into an identity. Implement this to plug in your own identity provider.
///
/// Failures are `unauthenticated` errors; the message must not reveal which check failed beyond
/// what is safe to tell a caller.
///
/// ```
/// use async_trait::async_trait;
/// use wattos_core::{Error, Principal, Result, TenantId};
/// use wattos_core::tenancy::{Authenticator, Credentials, Identity};
///
/// struct Static;
/// #[async_trait]
/// impl Authenticator for Static {
///     async fn authenticate(&self, creds: &Credentials) -> Result<Identity> {
///         if creds.secret() != "letmein" { return Err(Error::unauthenticated("invalid credentials")); }
///         Ok(Identity { tenant: TenantId::new("acme")?, principal: Principal::user("u1", ["member"]),
///                       expires_at: None, credential_id: None })
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let id = Static.authenticate(&Credentials::Bearer("letmein".into())).await.unwrap();
/// assert_eq!(id.tenant.as_str(), "acme");
/// # });
/// ```
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Validates `creds`.
    ///
    /// # Errors
    /// `unauthenticated` for bad, expired or revoked credentials; `unavailable` when a backing store
    /// cannot be reached.
    async fn authenticate(&self, creds: &Credentials) -> Result<Identity>;
}

#[async_trait]
impl<T: Authenticator + ?Sized> Authenticator for Arc<T> {
    async fn authenticate(&self, creds: &Credentials) -> Result<Identity> {
        (**self).authenticate(creds).await
    }
}

#[cfg(test)]
fn _object_safe(_: Arc<dyn Authenticator>) {}
