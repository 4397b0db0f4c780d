//! HS256 test tokens for servers configured with `auth.jwt.hs256_secret` (shared by the test files
//! that log in with a JWT).

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

/// Who signs a test file's tokens: the server's HS256 secret and issuer, the subject, and how long
/// a token lives. The audience is always `wattos`.
pub(crate) struct TestIssuer {
    /// `auth.jwt.hs256_secret` of the server under test.
    pub(crate) secret: &'static str,
    /// `iss` (the server's `auth.jwt.issuer`).
    pub(crate) issuer: &'static str,
    /// `sub`.
    pub(crate) subject: &'static str,
    /// Seconds until `exp`.
    pub(crate) ttl_secs: u64,
}

impl TestIssuer {
    /// A fresh token (new `jti`) for `tenant` with `roles`.
    pub(crate) fn token(&self, tenant: &str, roles: &[&str]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({"sub": self.subject, "tenant": tenant, "roles": roles,
            "iss": self.issuer, "aud": "wattos", "exp": now + self.ttl_secs, "iat": now,
            "jti": uuid::Uuid::new_v4().to_string()});
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .unwrap()
    }
}

/// The settings of the production configuration that JWT test files start: `auth.mode =
/// "required"`, HS256 tokens of `secret` and `issuer` (audience `wattos`), no local models, and
/// data in a fresh folder under the temp dir named after `label`.
#[allow(dead_code)] // not every file that signs tokens starts a configured server
pub(crate) fn required_auth_env(label: &str, secret: &str, issuer: &str) -> Vec<(String, String)> {
    let dir =
        std::env::temp_dir().join(format!("wattos-{label}-{}", uuid::Uuid::new_v4().simple()));
    [
        ("WATTOS_DATA_DIR", dir.display().to_string()),
        ("WATTOS_AUTH__MODE", "required".into()),
        (
            "WATTOS_AUTH__KEY_PEPPER",
            "pepper-for-the-test-suite".into(),
        ),
        ("WATTOS_AUTH__JWT__HS256_SECRET", secret.into()),
        ("WATTOS_AUTH__JWT__ISSUER", issuer.into()),
        ("WATTOS_AUTH__JWT__AUDIENCE", "wattos".into()),
        ("WATTOS_MODELS__LOCAL_CHAT", "false".into()),
        ("WATTOS_MODELS__LOCAL_EMBEDDINGS", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
