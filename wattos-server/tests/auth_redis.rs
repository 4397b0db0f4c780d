//! Shared mode: revocation and rate limits in Redis, exact across independent clients and servers.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

#[path = "auth_support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use support::*;
use wattos_core::tenancy::RevocationStore;
use wattos_server::auth::{JwtKeys, Quota, RateLimiter, RedisRateLimiter, RedisRevocations};

fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix() -> String {
    format!("wattos-test:{}:", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn redis_revocations_expire_with_the_credential() {
    let prefix = unique_prefix();
    let a = RedisRevocations::connect(&redis_url(), prefix.clone())
        .await
        .unwrap();
    let b = RedisRevocations::connect(&redis_url(), prefix)
        .await
        .unwrap();
    a.revoke("jti:t:1", SystemTime::now() + Duration::from_millis(300))
        .await
        .unwrap();
    assert!(b.is_revoked("jti:t:1").await.unwrap());
    assert!(!b.is_revoked("jti:t:2").await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !b.is_revoked("jti:t:1").await.unwrap(),
        "TTL removes it after expiry"
    );
}

#[tokio::test]
async fn redis_gcra_is_exact_across_two_clients_under_contention() {
    let prefix = unique_prefix();
    let clients = [
        Arc::new(
            RedisRateLimiter::connect(&redis_url(), prefix.clone())
                .await
                .unwrap(),
        ),
        Arc::new(
            RedisRateLimiter::connect(&redis_url(), prefix)
                .await
                .unwrap(),
        ),
    ];
    // 1 per minute sustained, burst 9: exactly 10 of 60 concurrent requests pass.
    let quota = Quota {
        per_minute: 1,
        burst: 9,
    };
    let mut tasks = Vec::new();
    for i in 0..60 {
        let c = clients[i % 2].clone();
        tasks.push(tokio::spawn(
            async move { c.check("k", quota).await.unwrap() },
        ));
    }
    let mut allowed = 0;
    for t in tasks {
        let d = t.await.unwrap();
        if d.allowed {
            allowed += 1;
        } else {
            assert!(d.retry_after > Duration::from_secs(50));
            assert_eq!(d.remaining, 0);
        }
    }
    assert_eq!(allowed, 10);
}

#[tokio::test]
async fn two_servers_sharing_redis_share_limits_and_revocations() {
    let prefix = unique_prefix();
    let store = sqlite_store().await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let limiter = Arc::new(
            RedisRateLimiter::connect(&redis_url(), prefix.clone())
                .await
                .unwrap(),
        );
        let revocations = Arc::new(
            RedisRevocations::connect(&redis_url(), prefix.clone())
                .await
                .unwrap(),
        );
        servers.push(
            start_with(
                Some(JwtKeys::Hs256(HS_SECRET.to_vec())),
                store.clone(),
                move |parts| {
                    parts.limiter = limiter;
                    parts.revocations = revocations;
                    // Long caches: revocation must still be immediate on the other server.
                    parts.cache_ttl = Duration::from_secs(60);
                },
            )
            .await,
        );
    }
    let (s1, s2) = (&servers[0], &servers[1]);
    let root = hs_token(&claims("platform", "root", &["platform_admin"]));
    let cfg = json!({"rate_limits": {"per_key_rpm": 1, "burst": 3}});
    let r = s1
        .call(
            "PUT",
            "/v1/admin/tenants/acme/config",
            Some(&root),
            Some(cfg),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (_, limited) = s1.platform_key("acme", &["member"]).await;
    let (free_id, free) = s1.platform_key("globex", &["owner"]).await;

    // Four requests in total pass, alternating between the two servers.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { s1 } else { s2 };
        statuses.push(
            s.call("POST", "/v1/protected", Some(&limited), None)
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);

    // A key revoked on one server is refused by the other at once, despite its record cache.
    assert_eq!(
        s2.call("POST", "/v1/protected", Some(&free), None)
            .await
            .status,
        200
    );
    let globex_owner = hs_token(&claims("globex", "gus", &["owner"]));
    let r = s1
        .call(
            "DELETE",
            &format!("/v1/admin/keys/{free_id}"),
            Some(&globex_owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s2.call("POST", "/v1/protected", Some(&free), None).await;
    assert_eq!((r.status, r.code()), (401, "unauthenticated"));

    // Same for a token revoked by jti, despite the verified-token cache.
    let c = claims("globex", "gina", &["member"]);
    let t = hs_token(&c);
    assert_eq!(
        s2.call("POST", "/v1/protected", Some(&t), None)
            .await
            .status,
        200
    );
    let body = json!({"jti": c["jti"], "exp": c["exp"]});
    assert_eq!(
        s1.call(
            "POST",
            "/v1/admin/tokens/revoke",
            Some(&globex_owner),
            Some(body)
        )
        .await
        .status,
        204
    );
    assert_eq!(
        s2.call("POST", "/v1/protected", Some(&t), None)
            .await
            .status,
        401
    );
}
