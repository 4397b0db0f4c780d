//! The SQL store on SQLite and Postgres: one conformance suite, including audit-chain tampering.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use wattos_core::TenantId;
use wattos_core::tenancy::{
    ApiKeyRecord, ApiKeyStore, AuditEvent, AuditFilter, AuditLog, AuditSink, Outcome, PageRequest,
    Tenant, TenantConfig, TenantStore,
};
use wattos_server::tenancy::{Backend, SqlStore};

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn event(tenant: &str, action: &str, n: i64) -> AuditEvent {
    AuditEvent {
        tenant: tid(tenant),
        actor: format!("actor-{}", n % 2),
        action: action.into(),
        target: format!("target-{n}"),
        outcome: if n % 3 == 0 {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        request_id: format!("req-{n}"),
        time_ms: 1_000 + n,
        detail: (n % 2 == 0).then(|| "detail".to_owned()),
    }
}

async fn sqlite() -> SqlStore {
    let path = std::env::temp_dir().join(format!("wattos-store-{}.db", uuid::Uuid::new_v4()));
    SqlStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap()
}

/// A store in a fresh Postgres schema, so test runs never see each other's rows.
async fn postgres() -> (SqlStore, String) {
    let base = std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("wattos_auth_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = SqlStore::connect(&format!("{base}{sep}options=-c%20search_path%3D{schema}"))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    (store, schema)
}

async fn conformance(store: SqlStore) {
    // Tenants and configuration.
    for id in ["a", "b"] {
        store
            .create_tenant(&Tenant {
                id: tid(id),
                name: id.into(),
                disabled: false,
                created_at_ms: 1,
            })
            .await
            .unwrap();
    }
    let dup = store
        .create_tenant(&Tenant {
            id: tid("a"),
            name: "a".into(),
            disabled: false,
            created_at_ms: 1,
        })
        .await;
    assert_eq!(dup.unwrap_err().code(), "conflict");
    assert_eq!(store.list_tenants(None, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.list_tenants(Some(&tid("a")), 10).await.unwrap()[0].id,
        tid("b")
    );
    store.set_disabled(&tid("b"), true).await.unwrap();
    assert!(store.get_tenant(&tid("b")).await.unwrap().unwrap().disabled);
    assert_eq!(
        store
            .set_disabled(&tid("zz"), true)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    let mut cfg = TenantConfig {
        allowed_models: vec!["m1".into()],
        ..Default::default()
    };
    store.put_config(&tid("a"), &cfg).await.unwrap();
    assert_eq!(store.get_config(&tid("a")).await.unwrap(), cfg);
    assert_eq!(
        store.get_config(&tid("b")).await.unwrap(),
        TenantConfig::default()
    );
    cfg.rag.default_top_k = 0;
    assert_eq!(
        store.put_config(&tid("a"), &cfg).await.unwrap_err().code(),
        "invalid_input"
    );

    // Keys are tenant-scoped everywhere except authentication's lookup.
    let key = ApiKeyRecord {
        id: "00000000000000aa".into(),
        tenant: tid("a"),
        name: "k".into(),
        roles: vec!["member".into()],
        secret_hash: "h".into(),
        created_by: "t".into(),
        created_at_ms: 5,
        expires_at_ms: None,
        revoked_at_ms: None,
        last_used_at_ms: None,
    };
    store.insert(&key).await.unwrap();
    assert_eq!(store.insert(&key).await.unwrap_err().code(), "conflict");
    assert_eq!(store.find_by_id(&key.id).await.unwrap().unwrap(), key);
    assert_eq!(store.get(&tid("a"), &key.id).await.unwrap(), key);
    let theirs = store.get(&tid("b"), &key.id).await.unwrap_err();
    let missing = store.get(&tid("b"), "nope").await.unwrap_err();
    assert_eq!(
        (theirs.code(), theirs.to_string()),
        (missing.code(), missing.to_string())
    );
    assert!(store.list(&tid("b")).await.unwrap().is_empty());
    assert_eq!(
        store
            .revoke(&tid("b"), &key.id, 9)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert!(
        store
            .get(&tid("a"), &key.id)
            .await
            .unwrap()
            .revoked_at_ms
            .is_none()
    );
    store.revoke(&tid("a"), &key.id, 9).await.unwrap();
    store.revoke(&tid("a"), &key.id, 99).await.unwrap();
    assert_eq!(
        store.get(&tid("a"), &key.id).await.unwrap().revoked_at_ms,
        Some(9)
    );
    store
        .touch(&[(key.id.clone(), 50), (key.id.clone(), 40)])
        .await
        .unwrap();
    assert_eq!(
        store.get(&tid("a"), &key.id).await.unwrap().last_used_at_ms,
        Some(50)
    );

    // Audit: concurrent appends form one gapless chain per tenant.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for n in 1..=20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.append(event("a", "key.created", n)).await.unwrap();
            s.append(event("b", "config.updated", n)).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = store.verify(&tid("a")).await.unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.checked, 20);
    assert!(store.verify(&tid("never")).await.unwrap().valid);

    // Filter and paginate, newest first, tenant-scoped.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .query(
                &tid("a"),
                &AuditFilter::default(),
                PageRequest { before, limit: 7 },
            )
            .await
            .unwrap();
        seen.extend(page.records.iter().map(|r| r.seq));
        assert!(page.records.iter().all(|r| r.event.tenant == tid("a")));
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(seen, (1..=20).rev().collect::<Vec<i64>>());
    let denied = store
        .query(
            &tid("a"),
            &AuditFilter {
                outcome: Some(Outcome::Denied),
                actor: Some("actor-1".into()),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert!(!denied.records.is_empty());
    assert!(
        denied
            .records
            .iter()
            .all(|r| r.event.outcome == Outcome::Denied && r.event.actor == "actor-1")
    );
    let window = store
        .query(
            &tid("a"),
            &AuditFilter {
                since_ms: Some(1_005),
                until_ms: Some(1_010),
                ..Default::default()
            },
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(window.records.len(), 5);

    // Tampering: edit a row, then restore; delete a middle row; delete the newest row.
    let pool = store.pool();
    sqlx::query("UPDATE audit_log SET target = 'forged' WHERE tenant_id = 'a' AND seq = 5")
        .execute(pool)
        .await
        .unwrap();
    let r = store.verify(&tid("a")).await.unwrap();
    assert!(!r.valid);
    assert_eq!(r.broken_at, Some(5));
    assert!(r.reason.unwrap().contains("edited"));
    assert!(
        store.verify(&tid("b")).await.unwrap().valid,
        "chains are per tenant"
    );
    sqlx::query("UPDATE audit_log SET target = 'target-x' WHERE tenant_id = 'b' AND seq = 3")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET outcome = 'success' WHERE tenant_id = 'b' AND seq = 3 AND outcome = 'denied'").execute(pool).await.unwrap();
    assert_eq!(store.verify(&tid("b")).await.unwrap().broken_at, Some(3));

    store.append(event("c", "x", 1)).await.unwrap();
    store.append(event("c", "x", 2)).await.unwrap();
    store.append(event("c", "x", 3)).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE tenant_id = 'c' AND seq = 2")
        .execute(pool)
        .await
        .unwrap();
    let r = store.verify(&tid("c")).await.unwrap();
    assert!(!r.valid);
    assert_eq!(r.broken_at, Some(2));
    assert!(r.reason.unwrap().contains("deleted"));

    store.append(event("d", "x", 1)).await.unwrap();
    store.append(event("d", "x", 2)).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE tenant_id = 'd' AND seq = 2")
        .execute(pool)
        .await
        .unwrap();
    let r = store.verify(&tid("d")).await.unwrap();
    assert!(
        !r.valid,
        "deleting the newest row is caught by the chain head"
    );
    assert_eq!(r.broken_at, Some(2));
}

#[tokio::test]
async fn sqlite_store_conformance() {
    conformance(sqlite().await).await;
}

/// A row edited to a value of the wrong type (SQLite keeps whatever is written) is a broken chain
/// at that row, not a failed verification (it answered 500 before).
#[tokio::test]
async fn verify_reports_a_malformed_row_as_a_break() {
    let store = sqlite().await;
    for n in 1..=4 {
        store.append(event("m", "x", n)).await.unwrap();
    }
    sqlx::query("UPDATE audit_log SET time_ms = 'not a number' WHERE tenant_id = 'm' AND seq = 3")
        .execute(store.pool())
        .await
        .unwrap();
    let r = store
        .verify(&tid("m"))
        .await
        .expect("a report, not an error");
    assert!(!r.valid);
    assert_eq!(r.broken_at, Some(3));
    assert!(r.reason.unwrap().contains("cannot be read"));
    assert_eq!(r.checked, 3);
}

#[tokio::test]
async fn sqlite_in_memory_store_works() {
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    store
        .create_tenant(&Tenant {
            id: tid("m"),
            name: "m".into(),
            disabled: false,
            created_at_ms: 1,
        })
        .await
        .unwrap();
    store.append(event("m", "x", 1)).await.unwrap();
    assert!(store.verify(&tid("m")).await.unwrap().valid);
}

#[tokio::test]
async fn postgres_store_conformance() {
    let (store, schema) = postgres().await;
    conformance(store.clone()).await;
    store.pool().close().await;
    let base = std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_database_scheme_is_invalid_input() {
    assert_eq!(
        SqlStore::connect("mysql://x").await.unwrap_err().code(),
        "invalid_input"
    );
}
