//! Shared helpers for the `auth_*` integration tests (included with `#[path]`).
#![allow(dead_code, missing_docs, clippy::unwrap_used, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn;
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wattos_core::TenantId;
use wattos_core::tenancy::{Permission, Tenant, TenantStore};
use wattos_server::auth::{
    Auth, AuthParts, Authenticated, JwtAuthenticator, JwtConfig, JwtKeys, KeyHasher, now_ms,
};
use wattos_server::middleware::request_context;
use wattos_server::tenancy::{SqlStore, admin};

pub const HS_SECRET: &[u8] = b"an-hs256-test-secret-of-32-bytes-or-more!";
pub const ISS: &str = "https://issuer.test";
pub const AUD: &str = "wattos";
pub const PEPPER: &str = "test-pepper-0123456789";

pub fn now_s() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap()
}

/// Standard claims for `tenant`/`sub`/`roles`, valid for an hour.
pub fn claims(tenant: &str, sub: &str, roles: &[&str]) -> Value {
    json!({
        "sub": sub, "tenant": tenant, "roles": roles, "iss": ISS, "aud": AUD,
        "exp": now_s() + 3600, "iat": now_s(), "jti": format!("jti-{}", uuid::Uuid::new_v4()),
    })
}

pub fn hs_token(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET),
    )
    .unwrap()
}

pub fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

/// A token with `alg: none` and no signature.
pub fn none_token(claims: &Value) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b.encode(serde_json::to_vec(claims).unwrap())
    )
}

pub struct RsaPair {
    pub private_pem: String,
    pub public_pem: String,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

pub fn rsa_pair() -> RsaPair {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    RsaPair {
        private_pem: private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
        n: public.n().to_bytes_be(),
        e: public.e().to_bytes_be(),
    }
}

pub struct EcPair {
    pub private_pem: String,
    pub public_pem: String,
    pub x: Vec<u8>,
    pub y: Vec<u8>,
}

pub fn ec_pair() -> EcPair {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
    let public = secret.public_key();
    let point = public.to_encoded_point(false);
    EcPair {
        private_pem: secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
        x: point.x().unwrap().to_vec(),
        y: point.y().unwrap().to_vec(),
    }
}

/// A running test server.
pub struct TestApp {
    pub base: String,
    pub auth: Auth,
    pub store: SqlStore,
    pub http: reqwest::Client,
}

async fn whoami(caller: Authenticated) -> axum::Json<Value> {
    axum::Json(json!({
        "tenant": caller.tenant().as_str(),
        "subject": caller.ctx.principal().subject,
        "request_id": caller.ctx.request_id().as_str(),
    }))
}

/// Builds the app: admin routes + protected dummy routes behind the auth layer, behind the
/// server's request-context middleware. Tenants `platform`, `acme` and `globex` exist.
pub async fn start_with(
    keys: Option<JwtKeys>,
    store: SqlStore,
    tweak: impl FnOnce(&mut AuthParts),
) -> TestApp {
    for id in ["platform", "acme", "globex"] {
        let t = Tenant {
            id: TenantId::new(id).unwrap(),
            name: id.into(),
            disabled: false,
            created_at_ms: now_ms(),
        };
        match store.create_tenant(&t).await {
            Ok(()) => {}
            Err(e) if e.kind() == wattos_core::ErrorKind::Conflict => {}
            Err(e) => panic!("{e}"),
        }
    }
    let mut parts = AuthParts::embedded(store.clone(), KeyHasher::new(PEPPER).unwrap());
    parts.cache_ttl = Duration::from_millis(0);
    tweak(&mut parts);
    if let Some(keys) = keys {
        let cfg = JwtConfig::new(keys)
            .with_issuer(ISS)
            .with_audience(AUD)
            .with_leeway(Duration::from_secs(5));
        parts.jwt = Some(Arc::new(
            JwtAuthenticator::new(cfg, parts.revocations.clone()).unwrap(),
        ));
    }
    let auth = Auth::new(parts);
    let app: Router = Router::new()
        .route(
            "/v1/protected",
            post(whoami).route_layer(auth.require(Permission::ChatInvoke)),
        )
        .route(
            "/v1/ingest",
            get(whoami).route_layer(auth.require(Permission::RagIngest)),
        )
        .merge(admin::admin_routes(auth.clone()))
        .layer(auth.layer())
        .layer(from_fn(request_context));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    TestApp {
        base,
        auth,
        store,
        http: reqwest::Client::new(),
    }
}

pub async fn sqlite_store() -> SqlStore {
    let path = std::env::temp_dir().join(format!("wattos-auth-{}.db", uuid::Uuid::new_v4()));
    SqlStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap()
}

pub async fn start(keys: Option<JwtKeys>) -> TestApp {
    start_with(keys, sqlite_store().await, |_| {}).await
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.base, path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn with_api_key_header(&self, path: &str, key: &str) -> Resp {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Creates a key for `tenant` through the platform admin API.
    pub async fn platform_key(&self, tenant: &str, roles: &[&str]) -> (String, String) {
        let admin = hs_token(&claims("platform", "root", &["platform_admin"]));
        let r = self
            .call(
                "POST",
                &format!("/v1/admin/tenants/{tenant}/keys"),
                Some(&admin),
                Some(json!({"name": "k", "roles": roles})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        (
            r.body["id"].as_str().unwrap().to_owned(),
            r.body["key"].as_str().unwrap().to_owned(),
        )
    }
}
