//! API keys: `wk_<id>_<secret>`, stored as HMAC-SHA-256(pepper, secret).
//!
//! Why a peppered SHA-256 and not argon2: the secret is 256 random bits, so there is nothing for a
//! slow hash to protect against (brute force of 2^256 is out of reach at any hash speed), while
//! argon2 would cost tens of milliseconds and megabytes on *every* request. The server-held pepper
//! (never in the database) means a stolen database alone cannot even confirm a guessed key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use wattos_core::tenancy::{
    ApiKeyRecord, ApiKeyStore, Authenticator, Credentials, Identity, RevocationStore,
};
use wattos_core::{Error, Principal, PrincipalKind, Result, TenantId};

/// Prefix every WattOS API key starts with.
pub const KEY_PREFIX: &str = "wk_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The revocation-store id of an API key.
pub fn key_revocation_id(key_id: &str) -> String {
    format!("key:{key_id}")
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0_u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::internal(format!("system random source failed: {e}")))?;
    Ok(buf)
}

/// A freshly minted key: the full secret string (shown once) and its id.
#[derive(Clone)]
pub struct NewKey {
    /// Public id (visible prefix).
    pub id: String,
    /// The complete key to hand to the caller once: `wk_<id>_<secret>`.
    pub key: String,
    /// The hash to store.
    pub secret_hash: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Mints and hashes keys with a server pepper.
#[derive(Clone)]
pub struct KeyHasher {
    pepper: Arc<[u8]>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(<pepper redacted>)")
    }
}

impl KeyHasher {
    /// A hasher with `pepper` (at least 16 bytes; keep it out of the database).
    ///
    /// # Errors
    /// `invalid_input` for a short pepper.
    pub fn new(pepper: impl AsRef<[u8]>) -> Result<Self> {
        let pepper = pepper.as_ref();
        if pepper.len() < 16 {
            return Err(Error::invalid_field(
                "auth.key_pepper",
                "must be at least 16 bytes",
            ));
        }
        Ok(Self {
            pepper: Arc::from(pepper),
        })
    }

    /// Hex HMAC-SHA-256 of `secret`.
    pub fn hash(&self, secret: &str) -> String {
        hex::encode(hmac_sha256(&self.pepper, secret.as_bytes()))
    }

    /// Mints a new random key.
    ///
    /// # Errors
    /// `internal` when the OS random source fails.
    pub fn mint(&self) -> Result<NewKey> {
        let id = hex::encode(random_bytes::<ID_BYTES>()?);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(random_bytes::<SECRET_BYTES>()?);
        Ok(NewKey {
            key: format!("{KEY_PREFIX}{id}_{secret}"),
            secret_hash: self.hash(&secret),
            id,
        })
    }

    /// Constant-time check of `secret` against a stored hash.
    pub fn verify(&self, secret: &str, stored_hash: &str) -> bool {
        self.hash(secret)
            .as_bytes()
            .ct_eq(stored_hash.as_bytes())
            .into()
    }
}

/// Splits `wk_<id>_<secret>` into id and secret; `None` when malformed.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && !secret.is_empty() && secret.len() <= 128).then_some((id, secret))
}

/// Whether a bearer token looks like an API key rather than a JWT.
pub fn looks_like_api_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

/// Authenticates API keys against an [`ApiKeyStore`], with a short record cache and batched
/// last-used updates (no database write per request).
pub struct ApiKeyAuthenticator {
    store: Arc<dyn ApiKeyStore>,
    revocations: Arc<dyn RevocationStore>,
    hasher: KeyHasher,
    cache_ttl: Duration,
    cache: RwLock<HashMap<String, (Arc<ApiKeyRecord>, Instant)>>,
    last_used: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

const CACHE_MAX: usize = 50_000;

impl ApiKeyAuthenticator {
    /// Keys from `store`, revocations checked on every request in `revocations`, records cached
    /// for `cache_ttl` (revocation stays immediate: it is checked outside the cache).
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        revocations: Arc<dyn RevocationStore>,
        hasher: KeyHasher,
        cache_ttl: Duration,
    ) -> Self {
        Self {
            store,
            revocations,
            hasher,
            cache_ttl,
            cache: RwLock::new(HashMap::new()),
            last_used: Mutex::new(HashMap::new()),
        }
    }

    /// Drops a cached record (after revocation in this process).
    pub fn invalidate(&self, id: &str) {
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    async fn record(&self, id: &str) -> Result<Option<Arc<ApiKeyRecord>>> {
        if let Some((rec, at)) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            && at.elapsed() < self.cache_ttl
        {
            super::service::cache_op("api_key", "hit");
            return Ok(Some(rec.clone()));
        }
        super::service::cache_op("api_key", "miss");
        let Some(rec) = self.store.find_by_id(id).await? else {
            return Ok(None);
        };
        let rec = Arc::new(rec);
        {
            let mut c = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            if c.len() >= CACHE_MAX {
                c.clear();
            }
            c.insert(id.to_owned(), (rec.clone(), Instant::now()));
        }
        super::service::cache_op("api_key", "set");
        Ok(Some(rec))
    }

    /// Writes the pending last-used times in one batch. Call it periodically
    /// (see [`ApiKeyAuthenticator::spawn_last_used_flusher`]) and at shutdown.
    ///
    /// # Errors
    /// The store's error; the batch is kept for the next try.
    pub async fn flush_last_used(&self) -> Result<()> {
        let batch: Vec<(String, i64)> = self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        if let Err(e) = self.store.touch(&batch).await {
            let mut m = self
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (id, at) in batch {
                let slot = m.entry(id).or_insert(at);
                *slot = (*slot).max(at);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Spawns a task flushing last-used times every `every`.
    pub fn spawn_last_used_flusher(
        self: &Arc<Self>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { break };
                if let Err(e) = this.flush_last_used().await {
                    tracing::warn!(error = %e, "could not record API key last-used times");
                }
            }
        })
    }
}

fn invalid() -> Error {
    Error::unauthenticated("invalid API key")
}

#[async_trait]
impl Authenticator for ApiKeyAuthenticator {
    async fn authenticate(&self, creds: &Credentials) -> Result<Identity> {
        let (id, secret) = parse_key(creds.secret()).ok_or_else(invalid)?;
        let rec = self.record(id).await?.ok_or_else(invalid)?;
        if !self.hasher.verify(secret, &rec.secret_hash) {
            return Err(invalid());
        }
        let now = now_ms();
        if rec.revoked_at_ms.is_some()
            || self.revocations.is_revoked(&key_revocation_id(id)).await?
        {
            return Err(Error::unauthenticated("API key revoked"));
        }
        if !rec.is_active(now) {
            return Err(Error::unauthenticated("API key expired"));
        }
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rec.id.clone(), now);
        Ok(Identity {
            tenant: TenantId::clone(&rec.tenant),
            principal: Principal {
                subject: rec.id.clone(),
                kind: PrincipalKind::ApiKey,
                roles: rec.roles.clone(),
            },
            expires_at: rec
                .expires_at_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms))),
            credential_id: Some(rec.id.clone()),
        })
    }
}

/// HMAC-SHA-256 of `data` under `key` (the server's one keyed hash: API key hashes, event tenant
/// tokens).
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_parse_and_verify() {
        let h = KeyHasher::new("0123456789abcdef-pepper").unwrap();
        let k = h.mint().unwrap();
        let (id, secret) = parse_key(&k.key).unwrap();
        assert_eq!(id, k.id);
        assert!(h.verify(secret, &k.secret_hash));
        assert!(!h.verify("nope", &k.secret_hash));
        let other = KeyHasher::new("another-pepper-16b").unwrap();
        assert!(!other.verify(secret, &k.secret_hash));
        assert!(parse_key("wk_short_x").is_none());
        assert!(parse_key("sk-abc").is_none());
        assert!(KeyHasher::new("short").is_err());
    }
}
