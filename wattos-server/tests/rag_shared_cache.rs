//! Shared mode: instances that search the same pgvector collection never serve each other stale
//! cached results. Two `PgVectorBackend`s stand for two server instances on one PostgreSQL and one
//! Redis; what one ingests, the other finds at once, although it answered the same query before.
//!
//! Needs `PGVECTOR_TEST_URL` and `REDIS_TEST_URL` (`scripts/test.sh` sets both); skipped with a
//! message otherwise.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;

use wattos_core::embedding::EmbeddingModel;
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{RequestContext, TenantId};
use wattos_rag::Rag;
use wattos_rag::cache::RedisQueryCache;
use wattos_rag::document::Source;
use wattos_rag::retrieve::SearchRequest;
use wattos_server::rag::{PgVectorBackend, RagBackend};

fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
    if value.is_none() {
        wattos_core::test_utils::skip::skip(
            "shared RAG cache",
            &format!("{name} is not set (scripts/test.sh sets it)"),
        );
    }
    value
}

async fn ingest(rag: &Rag, ctx: &RequestContext, id: &str, text: &str) {
    let report = rag
        .ingest(ctx, vec![Source::new(id, text.as_bytes().to_vec())])
        .await
        .unwrap();
    assert_eq!(report.indexed(), 1, "{report:?}");
}

async fn found(rag: &Rag, ctx: &RequestContext, query: &str) -> Vec<String> {
    let mut ids: Vec<String> = rag
        .search(ctx, &SearchRequest::new(query, 10))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.document_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test]
async fn instances_never_serve_each_other_stale_search_results() {
    let (Some(pg), Some(redis)) = (env("PGVECTOR_TEST_URL"), env("REDIS_TEST_URL")) else {
        return;
    };
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("wattos-test:{run}:rag:cache");
    let cache = |prefix: &str| {
        let (redis, prefix) = (redis.clone(), prefix.to_owned());
        async move { RedisQueryCache::connect(&redis, prefix, 60).await.unwrap() }
    };
    let embedder: Arc<dyn EmbeddingModel> = HashingEmbedder::shared(64);
    let tenant = TenantId::new("acme").unwrap();
    let ctx = RequestContext::system(tenant.clone());
    let collection = format!("cache-{}", &run[..12]);
    let other_collection = format!("other-{}", &run[..12]);

    // Instance A and instance B share Redis; instance C runs without a shared cache.
    let a = PgVectorBackend::new(pool.clone()).with_redis_cache(cache(&prefix).await);
    let b = PgVectorBackend::new(pool.clone()).with_redis_cache(cache(&prefix).await);
    let c = PgVectorBackend::new(pool.clone());
    let rag_a = a
        .open(&tenant, &collection, embedder.clone())
        .await
        .unwrap();
    let rag_b = b
        .open(&tenant, &collection, embedder.clone())
        .await
        .unwrap();
    let rag_c = c
        .open(&tenant, &collection, embedder.clone())
        .await
        .unwrap();

    ingest(
        &rag_b,
        &ctx,
        "first",
        "invoices are paid within thirty days",
    )
    .await;
    let query = "when are invoices paid";
    assert_eq!(found(&rag_a, &ctx, query).await, ["first"]);
    assert_eq!(found(&rag_c, &ctx, query).await, ["first"]);
    // A's answer is now cached in Redis, so it is shared, not private to A.
    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.contains(&collection)),
        "A's search is cached under its collection's scope: {keys:?}"
    );

    // B ingests a second document: A and C see it at once, although A answered the same query
    // before (from Redis, which B's write invalidated) and C answered it too.
    ingest(&rag_b, &ctx, "second", "invoices are paid by bank transfer").await;
    assert_eq!(found(&rag_a, &ctx, query).await, ["first", "second"]);
    assert_eq!(found(&rag_c, &ctx, query).await, ["first", "second"]);

    // Deleting through A is seen by B.
    assert_eq!(found(&rag_b, &ctx, query).await, ["first", "second"]);
    rag_a.delete(&ctx, &["first".to_owned()]).await.unwrap();
    assert_eq!(found(&rag_b, &ctx, query).await, ["second"]);

    // The same query in another collection of the same tenant never gets this one's entries.
    let rag_other = a
        .open(&tenant, &other_collection, embedder.clone())
        .await
        .unwrap();
    assert!(found(&rag_other, &ctx, query).await.is_empty());

    a.destroy(&tenant, &collection).await.unwrap();
    a.destroy(&tenant, &other_collection).await.unwrap();
    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
}
