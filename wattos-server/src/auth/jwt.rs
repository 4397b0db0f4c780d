//! JWT authentication: HS256, or RS256/ES256 from a PEM key or a JWKS URL (cached).
//!
//! Hardening: the accepted algorithm is fixed by the configured key, never taken from the token, so
//! `alg: none` and algorithm confusion (an HS256 token signed with an RSA public key, or the reverse)
//! are rejected before any signature check. `exp` and `sub` are required; `nbf`, `iss` and `aud`
//! are checked when configured, with a small leeway. Verified tokens are cached (keyed by their
//! SHA-256) until they expire, so the per-request cost of a repeated token is a hash and a lookup;
//! revocation by `jti` is checked on every request.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use wattos_core::tenancy::{Authenticator, Credentials, Identity, RevocationStore};
use wattos_core::{Error, Principal, PrincipalKind, Result, TenantId};

/// Where verification keys come from.
#[derive(Clone)]
pub enum JwtKeys {
    /// A shared HS256 secret (at least 32 bytes).
    Hs256(Vec<u8>),
    /// An RS256 public key in PEM.
    Rs256Pem(Vec<u8>),
    /// An ES256 (P-256) public key in PEM.
    Es256Pem(Vec<u8>),
    /// A JWKS endpoint serving RS256 / ES256 keys, re-fetched after `ttl` and at most every
    /// `min_refresh` for unknown `kid`s (key rotation).
    Jwks {
        /// The JWKS URL.
        url: String,
        /// How long fetched keys are trusted.
        ttl: Duration,
        /// Minimum time between fetches triggered by unknown key ids.
        min_refresh: Duration,
    },
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("Hs256(<redacted>)"),
            Self::Rs256Pem(_) => f.write_str("Rs256Pem"),
            Self::Es256Pem(_) => f.write_str("Es256Pem"),
            Self::Jwks { url, .. } => write!(f, "Jwks({url})"),
        }
    }
}

/// JWT validation settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Verification keys.
    pub keys: JwtKeys,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

impl JwtConfig {
    /// Settings for `keys` with a 30 s leeway and no issuer or audience check.
    pub fn new(keys: JwtKeys) -> Self {
        Self {
            keys,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }

    /// Requires `iss`.
    #[must_use]
    pub fn with_issuer(mut self, iss: impl Into<String>) -> Self {
        self.issuer = Some(iss.into());
        self
    }

    /// Requires `aud`.
    #[must_use]
    pub fn with_audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = Some(aud.into());
        self
    }

    /// Sets the leeway.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
}

/// The claims WattOS reads: `sub`, `tenant` (or `tid`), `roles`, `jti`, `exp`.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(alias = "tid")]
    tenant: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    jti: Option<String>,
    exp: u64,
}

/// The latest `exp` accepted, in unix seconds (9999-12-31T23:59:59Z). Tokens and revocations with
/// a later one are refused: such values are no real expiry and overflow time arithmetic.
pub const MAX_EXP_SECS: u64 = 253_402_300_799;

/// The revocation-store id of a token: scoped by tenant so one tenant cannot revoke another's.
pub fn token_revocation_id(tenant: &TenantId, jti: &str) -> String {
    format!("jti:{tenant}:{jti}")
}

struct CachedToken {
    identity: Identity,
    exp: u64,
}

#[derive(Default)]
struct JwksState {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    fetched: Option<Instant>,
}

/// Validates JWTs.
pub struct JwtAuthenticator {
    config: JwtConfig,
    static_key: Option<(Algorithm, DecodingKey)>,
    jwks: RwLock<JwksState>,
    jwks_fetch: Mutex<()>,
    http: reqwest::Client,
    revocations: Arc<dyn RevocationStore>,
    verified: RwLock<HashMap<[u8; 32], CachedToken>>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const VERIFIED_CACHE_MAX: usize = 100_000;

fn invalid() -> Error {
    Error::unauthenticated("invalid token")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtAuthenticator {
    /// A validator for `config`, checking revocations in `revocations`.
    ///
    /// # Errors
    /// `invalid_input` for an unusable key (short HS secret, bad PEM).
    pub fn new(config: JwtConfig, revocations: Arc<dyn RevocationStore>) -> Result<Self> {
        let bad =
            |e: jsonwebtoken::errors::Error| Error::invalid_field("auth.jwt.key", e.to_string());
        let static_key = match &config.keys {
            JwtKeys::Hs256(secret) => {
                if secret.len() < 32 {
                    return Err(Error::invalid_field(
                        "auth.jwt.key",
                        "an HS256 secret must be at least 32 bytes",
                    ));
                }
                Some((Algorithm::HS256, DecodingKey::from_secret(secret)))
            }
            JwtKeys::Rs256Pem(pem) => Some((
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(pem).map_err(bad)?,
            )),
            JwtKeys::Es256Pem(pem) => Some((
                Algorithm::ES256,
                DecodingKey::from_ec_pem(pem).map_err(bad)?,
            )),
            JwtKeys::Jwks { .. } => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::internal("cannot build the JWKS HTTP client").with_source(e))?;
        Ok(Self {
            config,
            static_key,
            jwks: RwLock::new(JwksState::default()),
            jwks_fetch: Mutex::new(()),
            http,
            revocations,
            verified: RwLock::new(HashMap::new()),
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &self.config.audience {
            v.set_audience(&[aud]);
            required.push("aud");
        } else {
            v.validate_aud = false;
        }
        v.set_required_spec_claims(&required);
        v
    }

    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey> {
        if let Some((expected, key)) = &self.static_key {
            // The configured key fixes the algorithm: this is what stops alg confusion.
            return if *expected == alg {
                Ok(key.clone())
            } else {
                Err(invalid())
            };
        }
        let JwtKeys::Jwks {
            ttl, min_refresh, ..
        } = &self.config.keys
        else {
            return Err(invalid());
        };
        let kid = kid.ok_or_else(invalid)?;
        let lookup = |state: &JwksState| {
            state
                .keys
                .get(kid)
                .filter(|(a, _)| *a == alg)
                .map(|(_, k)| k.clone())
        };
        {
            let state = self.jwks.read().unwrap_or_else(PoisonError::into_inner);
            let fresh = state.fetched.is_some_and(|t| t.elapsed() < *ttl);
            if fresh && let Some(k) = lookup(&state) {
                return Ok(k);
            }
            // A known-fresh set without this kid: refetch only if allowed by min_refresh.
            if fresh && state.fetched.is_some_and(|t| t.elapsed() < *min_refresh) {
                return Err(invalid());
            }
        }
        let _one_fetch = self.jwks_fetch.lock().await;
        // Another request may have fetched while we waited.
        {
            let state = self.jwks.read().unwrap_or_else(PoisonError::into_inner);
            if state.fetched.is_some_and(|t| t.elapsed() < *min_refresh) {
                return lookup(&state).ok_or_else(invalid);
            }
        }
        let keys = self.fetch_jwks().await?;
        let mut state = self.jwks.write().unwrap_or_else(PoisonError::into_inner);
        state.keys = keys;
        state.fetched = Some(Instant::now());
        lookup(&state).ok_or_else(invalid)
    }

    async fn fetch_jwks(&self) -> Result<HashMap<String, (Algorithm, DecodingKey)>> {
        let JwtKeys::Jwks { url, .. } = &self.config.keys else {
            return Ok(HashMap::new());
        };
        let unavailable =
            |e: reqwest::Error| Error::unavailable("JWKS endpoint unreachable").with_source(e);
        let set: JwkSet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            // Only asymmetric keys: a JWKS must never turn into an HMAC secret.
            let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                    if p.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (alg, key));
            }
        }
        Ok(keys)
    }

    fn cache_key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    async fn check_revoked(&self, identity: &Identity) -> Result<()> {
        if let Some(jti) = &identity.credential_id
            && self
                .revocations
                .is_revoked(&token_revocation_id(&identity.tenant, jti))
                .await?
        {
            return Err(Error::unauthenticated("token revoked"));
        }
        Ok(())
    }

    async fn verify(&self, token: &str) -> Result<Identity> {
        // Header parsing fails for unknown algorithms, `none` included.
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation(header.alg))
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => Error::unauthenticated("token expired"),
                    K::ImmatureSignature => Error::unauthenticated("token not yet valid"),
                    K::InvalidIssuer => Error::unauthenticated("token issuer not accepted"),
                    K::InvalidAudience => Error::unauthenticated("token audience not accepted"),
                    _ => invalid(),
                }
            })?;
        let c = data.claims;
        // An `exp` past year 9999 is no real expiry (and past 2^63 it does not fit a SystemTime).
        if c.exp > MAX_EXP_SECS {
            return Err(invalid());
        }
        let tenant = TenantId::new(&c.tenant).map_err(|_| invalid())?;
        Ok(Identity {
            tenant,
            principal: Principal {
                subject: c.sub,
                kind: PrincipalKind::User,
                roles: c.roles,
            },
            expires_at: UNIX_EPOCH.checked_add(Duration::from_secs(c.exp)),
            credential_id: c.jti,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, creds: &Credentials) -> Result<Identity> {
        let token = creds.secret();
        let cache_key = Self::cache_key(token);
        let leeway = self.config.leeway.as_secs();
        let cached = self
            .verified
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cache_key)
            .filter(|c| c.exp.saturating_add(leeway) > now_secs())
            .map(|c| c.identity.clone());
        let identity = match cached {
            Some(identity) => identity,
            None => {
                let identity = self.verify(token).await?;
                let exp = identity
                    .expires_at
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let mut m = self
                    .verified
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if m.len() >= VERIFIED_CACHE_MAX {
                    let now = now_secs();
                    m.retain(|_, c| c.exp.saturating_add(leeway) > now);
                    if m.len() >= VERIFIED_CACHE_MAX {
                        m.clear();
                    }
                }
                m.insert(
                    cache_key,
                    CachedToken {
                        identity: identity.clone(),
                        exp,
                    },
                );
                drop(m);
                identity
            }
        };
        self.check_revoked(&identity).await?;
        Ok(identity)
    }
}
