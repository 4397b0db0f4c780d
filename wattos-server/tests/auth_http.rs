//! Authentication, authorization, cross-tenant isolation, audit and rate limits over real HTTP.
#![allow(clippy::unwrap_used)]

#[path = "auth_support.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use support::*;
use wattos_core::TenantId;
use wattos_core::tenancy::{
    ApiKeyRecord, ApiKeyStore, AuditFilter, AuditLog, PageRequest, actions,
};
use wattos_server::auth::{JwtKeys, KeyHasher, now_ms};

const PROTECTED: &str = "/v1/protected";

fn assert_401(r: &Resp) {
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.code(), "unauthenticated");
    assert_eq!(r.body["error"]["type"], "authentication_error");
}

#[tokio::test]
async fn jwt_hs256_accepts_valid_and_rejects_every_bad_token() {
    let app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    let good = hs_token(&claims("acme", "alice", &["member"]));
    let r = app.call("POST", PROTECTED, Some(&good), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["tenant"], "acme");
    assert_eq!(r.body["subject"], "alice");

    // Forged signature: same claims, another secret.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims("acme", "alice", &["owner"]),
        &EncodingKey::from_secret(b"not-the-server-secret-not-the-server-secret"),
    )
    .unwrap();
    assert_401(&app.call("POST", PROTECTED, Some(&forged), None).await);
    // Tampered payload with the original signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims("acme", "alice", &["owner"])).unwrap());
    assert_401(
        &app.call("POST", PROTECTED, Some(&parts.join(".")), None)
            .await,
    );
    // alg = none.
    assert_401(
        &app.call(
            "POST",
            PROTECTED,
            Some(&none_token(&claims("acme", "alice", &["owner"]))),
            None,
        )
        .await,
    );
    // Wrong issuer / audience.
    let mut c = claims("acme", "alice", &["member"]);
    c["iss"] = json!("https://evil.test");
    assert_401(&app.call("POST", PROTECTED, Some(&hs_token(&c)), None).await);
    let mut c = claims("acme", "alice", &["member"]);
    c["aud"] = json!("someone-else");
    assert_401(&app.call("POST", PROTECTED, Some(&hs_token(&c)), None).await);
    // Expired beyond the 5 s leeway; not yet valid beyond it.
    let mut c = claims("acme", "alice", &["member"]);
    c["exp"] = json!(now_s() - 60);
    let r = app.call("POST", PROTECTED, Some(&hs_token(&c)), None).await;
    assert_401(&r);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let mut c = claims("acme", "alice", &["member"]);
    c["nbf"] = json!(now_s() + 600);
    let r = app.call("POST", PROTECTED, Some(&hs_token(&c)), None).await;
    assert_401(&r);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not yet valid")
    );
    // Within the leeway still passes.
    let mut c = claims("acme", "alice", &["member"]);
    c["nbf"] = json!(now_s() + 2);
    assert_eq!(
        app.call("POST", PROTECTED, Some(&hs_token(&c)), None)
            .await
            .status,
        200
    );
    // Unknown tenant, garbage, no credentials at all, wrong scheme.
    assert_401(
        &app.call(
            "POST",
            PROTECTED,
            Some(&hs_token(&claims("nope", "a", &["owner"]))),
            None,
        )
        .await,
    );
    assert_401(&app.call("POST", PROTECTED, Some("garbage"), None).await);
    assert_401(&app.call("POST", PROTECTED, None, None).await);
    let r = app
        .http
        .post(format!("{}{PROTECTED}", app.base))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn missing_permission_is_403_and_audited() {
    let app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    let viewer = hs_token(&claims("acme", "vic", &["viewer"]));
    let r = app.call("POST", PROTECTED, Some(&viewer), None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "forbidden");
    assert_eq!(r.body["error"]["type"], "permission_error");
    let member = hs_token(&claims("acme", "mem", &["member"]));
    assert_eq!(
        app.call("GET", "/v1/ingest", Some(&member), None)
            .await
            .status,
        403
    );
    assert_eq!(
        app.call("GET", "/v1/admin/keys", Some(&member), None)
            .await
            .code(),
        "forbidden"
    );
    // Tenant roles can never reach platform scope, whatever the token claims.
    let fake_root = hs_token(&claims("acme", "mallory", &["platform_admin"]));
    let r = app
        .call("GET", "/v1/admin/tenants", Some(&fake_root), None)
        .await;
    assert_eq!(r.status, 403);
    let page = app
        .store
        .query(
            &TenantId::new("acme").unwrap(),
            &AuditFilter {
                action: Some(actions::ACCESS_DENIED.into()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(
        page.records
            .iter()
            .any(|r| r.event.actor == "vic" && r.event.target == PROTECTED)
    );
}

#[tokio::test]
async fn revoked_jti_is_rejected_and_revocation_is_tenant_scoped() {
    let app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    let c = claims("acme", "alice", &["member"]);
    let token = hs_token(&c);
    assert_eq!(
        app.call("POST", PROTECTED, Some(&token), None).await.status,
        200
    );
    let body = json!({"jti": c["jti"], "exp": c["exp"]});
    // globex revoking acme's jti changes nothing for acme.
    let globex = hs_token(&claims("globex", "gus", &["owner"]));
    assert_eq!(
        app.call(
            "POST",
            "/v1/admin/tokens/revoke",
            Some(&globex),
            Some(body.clone())
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.call("POST", PROTECTED, Some(&token), None).await.status,
        200
    );
    let owner = hs_token(&claims("acme", "olga", &["owner"]));
    assert_eq!(
        app.call("POST", "/v1/admin/tokens/revoke", Some(&owner), Some(body))
            .await
            .status,
        204
    );
    let r = app.call("POST", PROTECTED, Some(&token), None).await;
    assert_401(&r);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
}

#[tokio::test]
async fn rs256_pem_rejects_algorithm_confusion() {
    let rsa = rsa_pair();
    let app = start(Some(JwtKeys::Rs256Pem(rsa.public_pem.clone().into_bytes()))).await;
    let key = EncodingKey::from_rsa_pem(rsa.private_pem.as_bytes()).unwrap();
    let good = sign(
        Algorithm::RS256,
        None,
        &claims("acme", "alice", &["member"]),
        &key,
    );
    assert_eq!(
        app.call("POST", PROTECTED, Some(&good), None).await.status,
        200
    );
    // The classic attack: HS256 with the server's public key as the HMAC secret.
    let confused = sign(
        Algorithm::HS256,
        None,
        &claims("acme", "alice", &["owner"]),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    );
    assert_401(&app.call("POST", PROTECTED, Some(&confused), None).await);
    // An HS256 token with the right HS secret is not accepted by an RS256 server either.
    assert_401(
        &app.call(
            "POST",
            PROTECTED,
            Some(&hs_token(&claims("acme", "alice", &["owner"]))),
            None,
        )
        .await,
    );
    // Signed by another RSA key.
    let other = rsa_pair();
    let forged = sign(
        Algorithm::RS256,
        None,
        &claims("acme", "alice", &["owner"]),
        &EncodingKey::from_rsa_pem(other.private_pem.as_bytes()).unwrap(),
    );
    assert_401(&app.call("POST", PROTECTED, Some(&forged), None).await);

    // And the reverse: an RS256 token against an HS256 server.
    let hs_app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    assert_401(&hs_app.call("POST", PROTECTED, Some(&good), None).await);
}

#[tokio::test]
async fn es256_pem_accepts_valid_and_rejects_rs_token() {
    let ec = ec_pair();
    let app = start(Some(JwtKeys::Es256Pem(ec.public_pem.clone().into_bytes()))).await;
    let key = EncodingKey::from_ec_pem(ec.private_pem.as_bytes()).unwrap();
    let good = sign(
        Algorithm::ES256,
        None,
        &claims("acme", "alice", &["member"]),
        &key,
    );
    assert_eq!(
        app.call("POST", PROTECTED, Some(&good), None).await.status,
        200
    );
    let confused = sign(
        Algorithm::HS256,
        None,
        &claims("acme", "alice", &["owner"]),
        &EncodingKey::from_secret(ec.public_pem.as_bytes()),
    );
    assert_401(&app.call("POST", PROTECTED, Some(&confused), None).await);
}

#[tokio::test]
async fn jwks_keys_are_fetched_once_and_cached() {
    let rsa = rsa_pair();
    let ec = ec_pair();
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": b.encode(&rsa.n), "e": b.encode(&rsa.e)},
        {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b.encode(&ec.x), "y": b.encode(&ec.y)},
        {"kty": "oct", "kid": "h1", "k": b.encode(HS_SECRET)},
    ]});
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let jwks_app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = jwks.clone();
            async move { axum::Json(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, jwks_app).await.unwrap() });

    let app = start(Some(JwtKeys::Jwks {
        url,
        ttl: Duration::from_secs(300),
        min_refresh: Duration::from_secs(60),
    }))
    .await;
    let rs = EncodingKey::from_rsa_pem(rsa.private_pem.as_bytes()).unwrap();
    let es = EncodingKey::from_ec_pem(ec.private_pem.as_bytes()).unwrap();
    for i in 0..3 {
        let t = sign(
            Algorithm::RS256,
            Some("r1"),
            &claims("acme", &format!("u{i}"), &["member"]),
            &rs,
        );
        assert_eq!(
            app.call("POST", PROTECTED, Some(&t), None).await.status,
            200
        );
    }
    let t = sign(
        Algorithm::ES256,
        Some("e1"),
        &claims("acme", "ec", &["member"]),
        &es,
    );
    assert_eq!(
        app.call("POST", PROTECTED, Some(&t), None).await.status,
        200
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "JWKS fetched once, then cached"
    );
    // A symmetric JWKS entry is never used, the kid must match, and the kid's algorithm is fixed.
    let hs = sign(
        Algorithm::HS256,
        Some("h1"),
        &claims("acme", "x", &["owner"]),
        &EncodingKey::from_secret(HS_SECRET),
    );
    assert_401(&app.call("POST", PROTECTED, Some(&hs), None).await);
    let wrong_kid = sign(
        Algorithm::RS256,
        Some("e1"),
        &claims("acme", "x", &["owner"]),
        &rs,
    );
    assert_401(&app.call("POST", PROTECTED, Some(&wrong_kid), None).await);
    let no_kid = sign(
        Algorithm::RS256,
        None,
        &claims("acme", "x", &["owner"]),
        &rs,
    );
    assert_401(&app.call("POST", PROTECTED, Some(&no_kid), None).await);
    // Unknown kids within min_refresh do not hammer the endpoint.
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn api_keys_lifecycle_create_use_revoke_expire() {
    let app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    let owner = hs_token(&claims("acme", "olga", &["owner"]));
    let r = app
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&owner),
            Some(json!({"name": "ci", "roles": ["member"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let key = r.body["key"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("wk_{id}_")));
    assert!(r.body.get("secret_hash").is_none());
    // Both header styles work; the subject is the key id.
    let r = app.call("POST", PROTECTED, Some(&key), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["subject"], id.as_str());
    assert_eq!(app.with_api_key_header(PROTECTED, &key).await.status, 200);
    // The secret is never shown again.
    let listed = app.call("GET", "/v1/admin/keys", Some(&owner), None).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert!(
        !listed
            .body
            .to_string()
            .contains(key.rsplit('_').next().unwrap())
    );
    // A key with a wrong secret but a valid id.
    assert_401(
        &app.call(
            "POST",
            PROTECTED,
            Some(&format!(
                "wk_{id}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            )),
            None,
        )
        .await,
    );
    // last-used is recorded by the batch flush, not per request.
    app.auth.api_keys().flush_last_used().await.unwrap();
    let got = app
        .call("GET", &format!("/v1/admin/keys/{id}"), Some(&owner), None)
        .await;
    assert!(got.body["last_used_at_ms"].as_i64().is_some());
    // Revoke: immediately rejected.
    let r = app
        .call(
            "DELETE",
            &format!("/v1/admin/keys/{id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["revoked_at_ms"].as_i64().is_some());
    let r = app.call("POST", PROTECTED, Some(&key), None).await;
    assert_401(&r);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );

    // An expired key.
    let hasher = KeyHasher::new(PEPPER).unwrap();
    let minted = hasher.mint().unwrap();
    app.store
        .insert(&ApiKeyRecord {
            id: minted.id.clone(),
            tenant: TenantId::new("acme").unwrap(),
            name: "old".into(),
            roles: vec!["owner".into()],
            secret_hash: minted.secret_hash.clone(),
            created_by: "test".into(),
            created_at_ms: now_ms() - 10_000,
            expires_at_ms: Some(now_ms() - 1),
            revoked_at_ms: None,
            last_used_at_ms: None,
        })
        .await
        .unwrap();
    let r = app.call("POST", PROTECTED, Some(&minted.key), None).await;
    assert_401(&r);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Escalation: a developer cannot mint an owner key; unknown roles are invalid.
    let dev = hs_token(&claims("acme", "dave", &["developer"]));
    let r = app
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&dev),
            Some(json!({"name": "x", "roles": ["owner"]})),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .call(
            "POST",
            "/v1/admin/keys",
            Some(&owner),
            Some(json!({"name": "x", "roles": ["wizard"]})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_input"));
    // A viewer key cannot call chat.
    let (_, viewer_key) = app.platform_key("acme", &["viewer"]).await;
    assert_eq!(
        app.call("POST", PROTECTED, Some(&viewer_key), None)
            .await
            .code(),
        "forbidden"
    );
}

#[tokio::test]
async fn cross_tenant_probing_finds_nothing() {
    let app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    let (acme_key_id, acme_key) = app.platform_key("acme", &["owner"]).await;
    let acme_owner = hs_token(&claims("acme", "olga", &["owner"]));
    let mut cfg = app
        .call("GET", "/v1/admin/config", Some(&acme_owner), None)
        .await
        .body;
    cfg["allowed_models"] = json!(["acme-secret-model"]);
    assert_eq!(
        app.call("PUT", "/v1/admin/config", Some(&acme_owner), Some(cfg))
            .await
            .status,
        200
    );

    let (_, globex_key) = app.platform_key("globex", &["owner"]).await;
    let globex_jwt = hs_token(&claims("globex", "gus", &["owner"]));
    for cred in [globex_key.as_str(), globex_jwt.as_str()] {
        // Another tenant's object answers exactly like a missing one.
        for method in ["GET", "DELETE"] {
            let theirs = app
                .call(
                    method,
                    &format!("/v1/admin/keys/{acme_key_id}"),
                    Some(cred),
                    None,
                )
                .await;
            let missing = app
                .call(method, "/v1/admin/keys/0123456789abcdef", Some(cred), None)
                .await;
            assert_eq!(theirs.status, 404);
            assert_eq!(theirs.body, missing.body, "{method}");
        }
        let list = app.call("GET", "/v1/admin/keys", Some(cred), None).await;
        assert!(!list.body.to_string().contains(&acme_key_id));
        let cfg = app.call("GET", "/v1/admin/config", Some(cred), None).await;
        assert!(!cfg.body.to_string().contains("acme-secret-model"));
        let audit = app.call("GET", "/v1/admin/audit", Some(cred), None).await;
        assert_eq!(audit.status, 200);
        assert!(
            audit.body["records"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["tenant"] == "globex"),
            "{}",
            audit.body
        );
        // Nothing of acme's: not its key, its configuration or its users. "acme" appears only in
        // globex's own `access.denied` records of the acme paths it probed (every 403 is audited).
        let text = audit.body.to_string();
        for secret in [acme_key_id.as_str(), "acme-secret-model", "olga"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        for r in audit.body["records"].as_array().unwrap() {
            if r.to_string().contains("acme") {
                assert_eq!(r["action"], "access.denied", "{r}");
                assert!(
                    r["target"]
                        .as_str()
                        .unwrap()
                        .starts_with("/v1/admin/tenants/acme"),
                    "{r}"
                );
            }
        }
        // Platform routes: the same 403 whether the tenant exists or not.
        for path in ["/v1/admin/tenants/acme", "/v1/admin/tenants/acme/config"] {
            let theirs = app.call("GET", path, Some(cred), None).await;
            let missing = app
                .call(
                    "GET",
                    &path.replace("acme", "no-such-tenant"),
                    Some(cred),
                    None,
                )
                .await;
            assert_eq!(theirs.status, 403);
            assert_eq!(theirs.body, missing.body);
        }
        let r = app
            .call(
                "POST",
                "/v1/admin/tenants/acme/keys",
                Some(cred),
                Some(json!({"name": "x", "roles": ["owner"]})),
            )
            .await;
        assert_eq!(r.status, 403);
    }
    // Acme's key still works and still belongs to acme.
    let r = app.call("POST", PROTECTED, Some(&acme_key), None).await;
    assert_eq!(r.body["tenant"], "acme");
    let r = app
        .call(
            "GET",
            &format!("/v1/admin/keys/{acme_key_id}"),
            Some(&acme_owner),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn every_audit_event_type_is_recorded_and_the_chain_verifies() {
    let app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    let root = hs_token(&claims("platform", "root", &["platform_admin"]));
    let r = app
        .call(
            "POST",
            "/v1/admin/tenants",
            Some(&root),
            Some(json!({"id": "initech", "name": "Initech"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        app.call(
            "POST",
            "/v1/admin/tenants",
            Some(&root),
            Some(json!({"id": "initech", "name": "again"}))
        )
        .await
        .code(),
        "conflict"
    );
    let r = app
        .call(
            "POST",
            "/v1/admin/tenants/initech/keys",
            Some(&root),
            Some(json!({"name": "boot", "roles": ["owner"]})),
        )
        .await;
    let key = r.body["key"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    let mut cfg = app
        .call("GET", "/v1/admin/config", Some(&key), None)
        .await
        .body;
    cfg["default_model"] = json!("m");
    cfg["allowed_models"] = json!(["m"]);
    assert_eq!(
        app.call("PUT", "/v1/admin/config", Some(&key), Some(cfg.clone()))
            .await
            .status,
        200
    );
    // Invalid config is refused naming the field.
    cfg["default_model"] = json!("other");
    let r = app
        .call("PUT", "/v1/admin/config", Some(&key), Some(cfg))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (400, Some("default_model"))
    );
    let c = claims("initech", "peter", &["viewer"]);
    assert_eq!(
        app.call("POST", PROTECTED, Some(&hs_token(&c)), None)
            .await
            .status,
        403
    );
    let body = json!({"jti": c["jti"], "exp": c["exp"]});
    assert_eq!(
        app.call("POST", "/v1/admin/tokens/revoke", Some(&key), Some(body))
            .await
            .status,
        204
    );
    assert_eq!(
        app.call(
            "PATCH",
            "/v1/admin/tenants/initech",
            Some(&root),
            Some(json!({"disabled": false}))
        )
        .await
        .status,
        200
    );
    // The library hook other crates use for ingest/delete/approvals.
    let tenant = TenantId::new("initech").unwrap();
    for action in [
        actions::RAG_INGESTED,
        actions::RAG_DELETED,
        actions::AGENT_APPROVAL,
    ] {
        app.auth
            .audit_event(
                &tenant,
                "svc",
                action,
                "doc-1",
                wattos_core::tenancy::Outcome::Success,
                "req-1",
                None,
            )
            .await;
    }
    assert_eq!(
        app.call("DELETE", &format!("/v1/admin/keys/{id}"), Some(&root), None)
            .await
            .status,
        404,
        "platform admins act through tenant routes"
    );
    let (_, key2_id) = {
        let r = app
            .call(
                "POST",
                "/v1/admin/keys",
                Some(&key),
                Some(json!({"name": "k2", "roles": ["viewer"]})),
            )
            .await;
        (
            r.body["key"].as_str().unwrap().to_owned(),
            r.body["id"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/v1/admin/keys/{key2_id}"),
            Some(&key),
            None
        )
        .await
        .status,
        200
    );
    // A failed authentication lands in the platform chain, without the secret.
    assert_401(
        &app.call(
            "POST",
            PROTECTED,
            Some("wk_0123456789abcdef_secretsecret"),
            None,
        )
        .await,
    );

    let all = app
        .call("GET", "/v1/admin/audit?limit=1000", Some(&key), None)
        .await;
    let seen: std::collections::BTreeSet<String> = all.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        actions::TENANT_CREATED,
        actions::KEY_CREATED,
        actions::CONFIG_UPDATED,
        actions::ACCESS_DENIED,
        actions::TOKEN_REVOKED,
        actions::TENANT_UPDATED,
        actions::RAG_INGESTED,
        actions::RAG_DELETED,
        actions::AGENT_APPROVAL,
        actions::KEY_REVOKED,
    ] {
        assert!(seen.contains(action), "{action} missing from {seen:?}");
    }
    let rec = &all.body["records"][0];
    for field in [
        "actor",
        "tenant",
        "action",
        "target",
        "outcome",
        "request_id",
        "time_ms",
        "hash",
        "prev_hash",
        "seq",
    ] {
        assert!(!rec[field].is_null(), "{field}");
    }
    let platform = app
        .store
        .query(
            &TenantId::new("_platform").unwrap(),
            &AuditFilter {
                action: Some(actions::AUTH_FAILED.into()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    let failure = &platform.records[0];
    assert_eq!(failure.event.target, "api_key:0123456789abcdef");
    assert!(!format!("{failure:?}").contains("secretsecret"));

    // Filter + pagination through the API.
    let p1 = app
        .call("GET", "/v1/admin/audit?limit=3", Some(&key), None)
        .await;
    assert_eq!(p1.body["records"].as_array().unwrap().len(), 3);
    let before = p1.body["next_before"].as_i64().unwrap();
    let p2 = app
        .call(
            "GET",
            &format!("/v1/admin/audit?limit=3&before={before}"),
            Some(&key),
            None,
        )
        .await;
    assert!(p2.body["records"][0]["seq"].as_i64().unwrap() < before);
    let only = app
        .call(
            "GET",
            "/v1/admin/audit?action=key.created",
            Some(&key),
            None,
        )
        .await;
    assert!(
        only.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"] == "key.created")
    );
    let v = app
        .call("GET", "/v1/admin/audit/verify", Some(&key), None)
        .await;
    assert_eq!(v.body["valid"], true, "{:?}", v.body);
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers() {
    let app = start(Some(JwtKeys::Hs256(HS_SECRET.to_vec()))).await;
    let owner = hs_token(&claims("acme", "olga", &["owner"]));
    let mut cfg = app
        .call("GET", "/v1/admin/config", Some(&owner), None)
        .await
        .body;
    cfg["rate_limits"] = json!({"per_key_rpm": 2, "burst": 2, "per_user_rpm": 1000});
    assert_eq!(
        app.call("PUT", "/v1/admin/config", Some(&owner), Some(cfg))
            .await
            .status,
        200
    );
    let (_, key) = app.platform_key("acme", &["member"]).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let r = app.call("POST", PROTECTED, Some(&key), None).await;
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let r = last.unwrap();
    assert_eq!(r.code(), "rate_limited");
    assert_eq!(r.headers["retry-after"], "30");
    assert_eq!(r.headers["ratelimit-limit"], "3");
    assert_eq!(r.headers["ratelimit-remaining"], "0");
    assert!(r.headers.contains_key("ratelimit-reset"));
    // The user limit is separate.
    assert_eq!(
        app.call("POST", PROTECTED, Some(&owner), None).await.status,
        200
    );
}
