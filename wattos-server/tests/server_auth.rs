//! The server as configured for production: `auth.mode = "required"`, built by `bootstrap` from
//! settings. A platform admin (JWT) creates a tenant and a key; the key then works on the gateway,
//! while missing credentials get 401 and operational routes stay open.

#![allow(clippy::unwrap_used)]

mod jwt_support;

use serde_json::{Value, json};
use wattos_core::config::ConfigSources;
use wattos_server::bootstrap::build_state;
use wattos_server::settings::Settings;

const SECRET: &str = "a-test-hs256-secret-of-at-least-32-bytes!";

fn jwt(tenant: &str, roles: &[&str]) -> String {
    jwt_support::TestIssuer {
        secret: SECRET,
        issuer: "wattos-tests",
        subject: "ops",
        ttl_secs: 600,
    }
    .token(tenant, roles)
}

#[tokio::test]
async fn required_auth_is_enforced_for_the_api_and_keys_work_end_to_end() {
    let env = jwt_support::required_auth_env("server-auth", SECRET, "wattos-tests");
    let sources = ConfigSources { file: None, env };
    let state = build_state(Settings::from_sources(&sources).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, wattos_server::app(state)).await });
    let http = reqwest::Client::new();

    // Operational routes stay open; the API does not.
    assert_eq!(
        http.get(format!("{base}/health/liveness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = http.get(format!("{base}/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "unauthenticated"
    );
    let resp = http
        .get(format!("{base}/v1/models"))
        .bearer_auth("wk_bogus_key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A platform admin creates a tenant and a developer key for it.
    let admin = jwt("platform", &["platform_admin"]);
    let resp = http
        .post(format!("{base}/v1/admin/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"id": "acme", "name": "Acme GmbH"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = http
        .post(format!("{base}/v1/admin/tenants/acme/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "ci", "roles": ["developer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let key = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // The key works on the gateway (the catalog is empty here: local models are off).
    let resp = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"object": "list", "data": []})
    );
    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .header("x-api-key", &key)
        .json(&json!({"model": "none", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A viewer-role key lacks chat:invoke.
    let resp = http
        .post(format!("{base}/v1/admin/tenants/acme/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "ro", "roles": ["viewer"]}))
        .send()
        .await
        .unwrap();
    let viewer = resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[test]
fn shared_mode_requires_a_key_pepper_and_rejects_unknown_auth_settings() {
    let env = [
        ("WATTOS_AUTH__MODE", "required"),
        ("WATTOS_AUTH__MDOE", "x"),
    ];
    let sources = ConfigSources {
        file: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let err = Settings::from_sources(&sources).unwrap_err().to_string();
    assert!(err.contains("WATTOS_AUTH__KEY_PEPPER"), "{err}");
    assert!(err.contains("auth.mdoe"), "{err}");
}
