//! The conformance suite every [`VectorStore`] backend runs (feature `test-utils`, or in this
//! crate's tests): upsert/replace, search order, filters, deletes, counts, validation, tenant
//! isolation and, where a store persists, restart.
//!
//! Each check clears the tenants it uses first, so the suite can run against a shared database.
//!
//! ```no_run
//! # async fn demo() -> wattos_core::Result<()> {
//! let store = wattos_rag::store::EmbeddedStore::in_memory(wattos_rag::conformance::DIMS);
//! wattos_rag::conformance::run_all(&store).await?;
//! # Ok(()) }
//! ```

use std::future::Future;

use serde_json::json;
use wattos_core::vector_store::{Filter, VectorQuery, VectorRecord, VectorStore};
use wattos_core::{Error, ErrorKind, RequestContext, Result, TenantId};

/// Vector length the suite uses; open the store under test with it.
pub const DIMS: usize = 4;

fn ctx(tenant: &str) -> Result<RequestContext> {
    Ok(RequestContext::system(TenantId::new(tenant)?))
}

fn check(cond: bool, what: &str) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::internal(format!("conformance: {what}")))
    }
}

fn rec(id: &str, doc: &str, v: [f32; 4], lang: &str, year: i64) -> VectorRecord {
    VectorRecord::new(id, doc, v.to_vec(), format!("text of {id}"))
        .with_meta("lang", lang)
        .with_meta("year", year)
}

async fn clear(store: &dyn VectorStore, ctx: &RequestContext) -> Result<()> {
    store.delete_where(ctx, &Filter::And(vec![])).await?;
    Ok(())
}

fn corpus() -> Vec<VectorRecord> {
    vec![
        rec("a#0", "a", [1.0, 0.0, 0.0, 0.0], "en", 2024),
        rec("a#1", "a", [0.9, 0.1, 0.0, 0.0], "en", 2024),
        rec("b#0", "b", [0.0, 1.0, 0.0, 0.0], "de", 2025),
        rec("b#1", "b", [0.0, 0.9, 0.1, 0.0], "de", 2025),
        rec("c#0", "c", [0.0, 0.0, 1.0, 0.0], "de", 2023),
    ]
}

/// Runs every check except restart.
///
/// # Errors
/// The first failed check, as an internal error naming it, or the store's own error.
pub async fn run_all(store: &dyn VectorStore) -> Result<()> {
    upsert_and_search(store).await?;
    filters(store).await?;
    deletes(store).await?;
    replace_document(store).await?;
    validation(store).await?;
    tenant_isolation(store).await?;
    Ok(())
}

/// Nearest first, scores descending, upsert replaces by id, text and metadata round-trip.
///
/// # Errors
/// As for [`run_all`].
pub async fn upsert_and_search(store: &dyn VectorStore) -> Result<()> {
    let c = ctx("conf-search")?;
    clear(store, &c).await?;
    store.upsert(&c, corpus()).await?;
    check(store.count(&c, None).await? == 5, "count after upsert")?;
    let hits = store
        .search(&c, &VectorQuery::new(vec![1.0, 0.05, 0.0, 0.0], 3))
        .await?;
    check(hits.len() == 3, "top_k respected")?;
    check(hits[0].id == "a#0" && hits[1].id == "a#1", "nearest first")?;
    check(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "scores descending",
    )?;
    check(
        hits[0].score > 0.99 && hits[0].score <= 1.0001,
        "cosine score",
    )?;
    check(
        hits[0].text == "text of a#0" && hits[0].document_id == "a",
        "text round-trips",
    )?;
    check(
        hits[0].metadata.get("lang") == Some(&json!("en")),
        "metadata round-trips",
    )?;
    // Upsert replaces by id.
    store
        .upsert(&c, vec![rec("a#0", "a", [0.0, 0.0, 0.0, 1.0], "en", 2024)])
        .await?;
    check(
        store.count(&c, None).await? == 5,
        "upsert by existing id does not duplicate",
    )?;
    let hits = store
        .search(&c, &VectorQuery::new(vec![0.0, 0.0, 0.0, 1.0], 1))
        .await?;
    check(hits[0].id == "a#0", "upsert replaced the vector")?;
    let all = store
        .search(&c, &VectorQuery::new(vec![1.0, 1.0, 1.0, 1.0], 100))
        .await?;
    check(all.len() == 5, "top_k above count returns everything")?;
    clear(store, &c).await
}

/// `Eq`, `In`, `Not`, `And`, `Or` and `document_id` filters in search and count.
///
/// # Errors
/// As for [`run_all`].
pub async fn filters(store: &dyn VectorStore) -> Result<()> {
    let c = ctx("conf-filter")?;
    clear(store, &c).await?;
    store.upsert(&c, corpus()).await?;
    let q = |f: Filter| VectorQuery::new(vec![1.0, 0.0, 0.0, 0.0], 10).with_filter(f);
    let ids = |hits: Vec<wattos_core::vector_store::Hit>| {
        let mut v: Vec<String> = hits.into_iter().map(|h| h.id).collect();
        v.sort();
        v
    };
    check(
        ids(store.search(&c, &q(Filter::eq("lang", "de"))).await?) == ["b#0", "b#1", "c#0"],
        "eq filter",
    )?;
    check(
        ids(store.search(&c, &q(Filter::eq("year", 2024))).await?) == ["a#0", "a#1"],
        "numeric eq filter",
    )?;
    check(
        ids(store
            .search(&c, &q(Filter::any_of("year", [json!(2023), json!(2024)])))
            .await?)
            == ["a#0", "a#1", "c#0"],
        "in filter",
    )?;
    check(
        ids(store.search(&c, &q(Filter::eq("lang", "de").not())).await?) == ["a#0", "a#1"],
        "not filter",
    )?;
    check(
        ids(store
            .search(
                &c,
                &q(Filter::eq("lang", "de").and(Filter::eq("year", 2025))),
            )
            .await?)
            == ["b#0", "b#1"],
        "and filter",
    )?;
    check(
        ids(store
            .search(
                &c,
                &q(Filter::eq("year", 2023).or(Filter::eq("lang", "en"))),
            )
            .await?)
            == ["a#0", "a#1", "c#0"],
        "or filter",
    )?;
    check(
        ids(store.search(&c, &q(Filter::eq("document_id", "b"))).await?) == ["b#0", "b#1"],
        "document_id filter",
    )?;
    check(
        store
            .search(&c, &q(Filter::eq("lang", "fr")))
            .await?
            .is_empty(),
        "no match",
    )?;
    check(
        store.count(&c, Some(&Filter::eq("lang", "de"))).await? == 3,
        "filtered count",
    )?;
    clear(store, &c).await
}

/// Delete by document, by filter, idempotently.
///
/// # Errors
/// As for [`run_all`].
pub async fn deletes(store: &dyn VectorStore) -> Result<()> {
    let c = ctx("conf-delete")?;
    clear(store, &c).await?;
    store.upsert(&c, corpus()).await?;
    check(
        store.delete_documents(&c, &["a".into()]).await? == 2,
        "delete_documents count",
    )?;
    check(
        store.delete_documents(&c, &["a".into()]).await? == 0,
        "delete is idempotent",
    )?;
    check(
        store.delete_where(&c, &Filter::eq("year", 2023)).await? == 1,
        "delete_where count",
    )?;
    check(store.count(&c, None).await? == 2, "remaining count")?;
    let hits = store
        .search(&c, &VectorQuery::new(vec![1.0, 0.0, 0.0, 0.0], 10))
        .await?;
    check(
        hits.iter().all(|h| h.document_id == "b"),
        "deleted records are gone from search",
    )?;
    check(store.delete_documents(&c, &[]).await? == 0, "empty delete")?;
    clear(store, &c).await
}

/// `replace_document` swaps a document's chunks; an empty list removes them.
///
/// # Errors
/// As for [`run_all`].
pub async fn replace_document(store: &dyn VectorStore) -> Result<()> {
    let c = ctx("conf-replace")?;
    clear(store, &c).await?;
    store.upsert(&c, corpus()).await?;
    store
        .replace_document(
            &c,
            "a",
            vec![rec("a#0", "a", [0.0, 0.0, 0.0, 1.0], "en", 2026)],
        )
        .await?;
    check(
        store
            .count(&c, Some(&Filter::eq("document_id", "a")))
            .await?
            == 1,
        "old chunks replaced",
    )?;
    check(
        store.count(&c, Some(&Filter::eq("year", 2026))).await? == 1,
        "new chunk stored",
    )?;
    let wrong = store
        .replace_document(
            &c,
            "a",
            vec![rec("x#0", "x", [1.0, 0.0, 0.0, 0.0], "en", 1)],
        )
        .await;
    check(
        wrong.is_err_and(|e| e.kind() == ErrorKind::InvalidInput),
        "foreign record rejected",
    )?;
    check(
        store
            .count(&c, Some(&Filter::eq("document_id", "a")))
            .await?
            == 1,
        "rejected replace changed nothing",
    )?;
    store.replace_document(&c, "a", vec![]).await?;
    check(
        store.count(&c, None).await? == 3,
        "empty replace removes the document",
    )?;
    clear(store, &c).await
}

/// Wrong dimensions, bad `top_k`, bad filters are invalid input; a bad batch writes nothing.
///
/// # Errors
/// As for [`run_all`].
pub async fn validation(store: &dyn VectorStore) -> Result<()> {
    let c = ctx("conf-validate")?;
    clear(store, &c).await?;
    let bad = vec![
        rec("ok", "d", [1.0, 0.0, 0.0, 0.0], "en", 1),
        VectorRecord::new("bad", "d", vec![1.0], ""),
    ];
    let r = store.upsert(&c, bad).await;
    check(
        r.is_err_and(|e| e.kind() == ErrorKind::InvalidInput),
        "wrong dimensions rejected",
    )?;
    check(store.count(&c, None).await? == 0, "bad batch wrote nothing")?;
    let r = store
        .search(&c, &VectorQuery::new(vec![1.0, 0.0, 0.0, 0.0], 0))
        .await;
    check(
        r.is_err_and(|e| e.kind() == ErrorKind::InvalidInput),
        "top_k 0 rejected",
    )?;
    let r = store
        .search(
            &c,
            &VectorQuery::new(vec![1.0; 4], 1).with_filter(Filter::eq("x'); drop table", 1)),
        )
        .await;
    check(
        r.is_err_and(|e| e.kind() == ErrorKind::InvalidInput),
        "odd filter key rejected",
    )?;
    check(
        store
            .search(&c, &VectorQuery::new(vec![1.0; 4], 3))
            .await?
            .is_empty(),
        "empty tenant searches fine",
    )?;
    Ok(())
}

/// Tenant B never sees, counts or deletes tenant A's records.
///
/// # Errors
/// As for [`run_all`].
pub async fn tenant_isolation(store: &dyn VectorStore) -> Result<()> {
    let a = ctx("conf-tenant-a")?;
    let b = ctx("conf-tenant-b")?;
    clear(store, &a).await?;
    clear(store, &b).await?;
    store.upsert(&a, corpus()).await?;
    store
        .upsert(&b, vec![rec("a#0", "a", [0.0, 0.0, 0.0, 1.0], "en", 1)])
        .await?;
    let hits = store
        .search(&b, &VectorQuery::new(vec![1.0, 0.0, 0.0, 0.0], 10))
        .await?;
    check(
        hits.len() == 1 && hits[0].metadata.get("year") == Some(&json!(1)),
        "B sees only its record",
    )?;
    check(
        store.count(&b, None).await? == 1,
        "B counts only its records",
    )?;
    check(
        store.delete_documents(&b, &["b".into()]).await? == 0,
        "B cannot delete A's documents",
    )?;
    store.delete_where(&b, &Filter::And(vec![])).await?;
    check(
        store.count(&a, None).await? == 5,
        "B's delete-all left A intact",
    )?;
    let hits = store
        .search(&a, &VectorQuery::new(vec![0.0, 0.0, 0.0, 1.0], 1))
        .await?;
    check(
        hits[0].metadata.get("year") != Some(&json!(1)),
        "same id in B did not overwrite A",
    )?;
    clear(store, &a).await
}

/// Writes, reopens through `reopen`, and checks everything is still there.
///
/// # Errors
/// As for [`run_all`].
pub async fn restart<S, F, Fut>(store: &S, reopen: F) -> Result<()>
where
    S: VectorStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<S>>,
{
    let c = ctx("conf-restart")?;
    clear(store, &c).await?;
    store.upsert(&c, corpus()).await?;
    store.delete_documents(&c, &["c".into()]).await?;
    store
        .replace_document(
            &c,
            "b",
            vec![rec("b#9", "b", [0.0, 1.0, 0.0, 0.0], "de", 2030)],
        )
        .await?;
    let reopened = reopen().await?;
    check(
        reopened.count(&c, None).await? == 3,
        "count survives restart",
    )?;
    let hits = reopened
        .search(&c, &VectorQuery::new(vec![0.0, 1.0, 0.0, 0.0], 1))
        .await?;
    check(
        hits[0].id == "b#9" && hits[0].metadata.get("year") == Some(&json!(2030)),
        "replace survives restart",
    )?;
    check(
        reopened
            .count(&c, Some(&Filter::eq("document_id", "c")))
            .await?
            == 0,
        "delete survives restart",
    )?;
    clear(&reopened, &c).await
}
