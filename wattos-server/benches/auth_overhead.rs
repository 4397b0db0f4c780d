//! Per-request cost of authentication + RBAC through `Auth::layer()` and `Auth::require()`, with a
//! trivial inner service: a cached HS256 JWT, a cached RS256 JWT, and an API key (record cached).
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tower::{Layer, Service, ServiceExt};
use wattos_core::TenantId;
use wattos_core::tenancy::{ApiKeyRecord, ApiKeyStore, Permission, Tenant, TenantStore};
use wattos_server::auth::{
    Auth, AuthParts, JwtAuthenticator, JwtConfig, JwtKeys, KeyHasher, now_ms,
};
use wattos_server::tenancy::SqlStore;

const SECRET: &[u8] = b"an-hs256-bench-secret-of-32-bytes-or-more";

fn claims() -> serde_json::Value {
    json!({"sub": "alice", "tenant": "acme", "roles": ["member"], "jti": "j1",
           "exp": now_ms() / 1000 + 3600, "iss": "iss", "aud": "aud"})
}

async fn setup(keys: JwtKeys) -> (Auth, String) {
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    store
        .create_tenant(&Tenant {
            id: TenantId::new("acme").unwrap(),
            name: "acme".into(),
            disabled: false,
            created_at_ms: 0,
        })
        .await
        .unwrap();
    let hasher = KeyHasher::new("bench-pepper-0123456789").unwrap();
    let minted = hasher.mint().unwrap();
    store
        .insert(&ApiKeyRecord {
            id: minted.id.clone(),
            tenant: TenantId::new("acme").unwrap(),
            name: "b".into(),
            roles: vec!["member".into()],
            secret_hash: minted.secret_hash.clone(),
            created_by: "b".into(),
            created_at_ms: 0,
            expires_at_ms: None,
            revoked_at_ms: None,
            last_used_at_ms: None,
        })
        .await
        .unwrap();
    let mut parts = AuthParts::embedded(store, hasher);
    parts.cache_ttl = Duration::from_secs(600);
    let cfg = JwtConfig::new(keys).with_issuer("iss").with_audience("aud");
    parts.jwt = Some(Arc::new(
        JwtAuthenticator::new(cfg, parts.revocations.clone()).unwrap(),
    ));
    (Auth::new(parts), minted.key)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let (rs_priv, rs_pub) = {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        (
            rsa.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            rsa.to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
    };
    let hs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let rs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(),
        &EncodingKey::from_rsa_pem(rs_priv.as_bytes()).unwrap(),
    )
    .unwrap();

    let inner = tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::empty())
                .unwrap(),
        )
    });
    let mut group = c.benchmark_group("auth_overhead");
    for (name, keys, token) in [
        (
            "jwt_hs256_cached",
            JwtKeys::Hs256(SECRET.to_vec()),
            Some(hs_token),
        ),
        (
            "jwt_rs256_cached",
            JwtKeys::Rs256Pem(rs_pub.into_bytes()),
            Some(rs_token),
        ),
        ("api_key_cached", JwtKeys::Hs256(SECRET.to_vec()), None),
    ] {
        let (auth, api_key) = rt.block_on(setup(keys));
        let bearer = format!("Bearer {}", token.unwrap_or(api_key));
        let svc = auth
            .layer()
            .layer(auth.require(Permission::ChatInvoke).layer(inner));
        let request = || {
            Request::builder()
                .uri("/v1/chat")
                .header("authorization", &bearer)
                .body(Body::empty())
                .unwrap()
        };
        // Warm the caches and check the path really succeeds.
        let resp = rt.block_on(svc.clone().oneshot(request())).unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut svc = svc.clone();
                let req = request();
                async move { svc.call(req).await.unwrap() }
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
