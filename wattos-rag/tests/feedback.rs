//! Feedback on SQLite and Postgres (`PG_TEST_URL`): validation, tenant scoping, report by model
//! and collection; the BEIR export round-trips through the RAG eval.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{ErrorKind, Principal, RequestContext, TenantId};
use wattos_rag::RagBuilder;
use wattos_rag::eval::{self, BeirDataset};
use wattos_rag::feedback::{
    FeedbackFilter, FeedbackStore, NewFeedback, RetrievedChunk, SqlFeedbackStore, export_beir,
};
use wattos_rag::keyword::{KeywordIndex, Language};
use wattos_rag::retrieve::SearchRequest;

fn ctx(tenant: &str) -> RequestContext {
    RequestContext::new(
        TenantId::new(tenant).unwrap(),
        Principal::user("u1", ["member"]),
    )
}

fn chunk(doc: &str, text: &str) -> RetrievedChunk {
    RetrievedChunk {
        chunk_id: format!("{doc}#0"),
        document_id: doc.into(),
        title: Some(doc.to_uppercase()),
        text: text.into(),
        score: 0.5,
    }
}

const SOLAR: &str = "Solar panels convert sunlight into electricity using photovoltaic cells.";
const WIND: &str = "Wind turbines convert moving air into electricity with large rotor blades.";
const HEAT: &str = "Heat pumps move warmth from outside air into the house even in winter.";

fn fb(req: &str, rating: u8, model: &str, coll: &str, query: &str, cited: &str) -> NewFeedback {
    NewFeedback {
        request_id: req.into(),
        rating,
        comment: Some("ok".into()),
        model: Some(model.into()),
        collection: Some(coll.into()),
        query: query.into(),
        answer: "an answer [1]".into(),
        chunks: vec![
            chunk("solar", SOLAR),
            chunk("wind", WIND),
            chunk("heat", HEAT),
        ],
        citations: vec![cited.into()],
        conversation_id: None,
    }
}

async fn conformance(store: &dyn FeedbackStore, tenant: &str) {
    let c = ctx(tenant);
    let other = ctx(&format!("{tenant}-other"));
    let mut bad = fb("r0", 0, "m", "c", "q", "solar");
    assert_eq!(
        store.record(&c, bad.clone()).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    bad.rating = 6;
    assert_eq!(
        store.record(&c, bad.clone()).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    bad.rating = 3;
    bad.request_id = " ".into();
    assert_eq!(
        store.record(&c, bad).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    store
        .record(
            &c,
            fb(
                "r1",
                5,
                "gpt-4o",
                "energy",
                "how do photovoltaic solar panels work",
                "solar",
            ),
        )
        .await
        .unwrap();
    store
        .record(
            &c,
            fb(
                "r2",
                4,
                "gpt-4o-mini",
                "energy",
                "wind turbine rotor blades",
                "wind",
            ),
        )
        .await
        .unwrap();
    store
        .record(
            &c,
            fb(
                "r3",
                1,
                "gpt-4o-mini",
                "energy",
                "heat pumps in winter",
                "wind",
            ),
        )
        .await
        .unwrap();
    let mut no_coll = fb("r4", 2, "gpt-4o", "x", "q", "solar");
    no_coll.collection = None;
    store.record(&c, no_coll).await.unwrap();
    store
        .record(
            &other,
            fb("r9", 5, "gpt-4o", "energy", "other tenant", "solar"),
        )
        .await
        .unwrap();

    let report = store.report(&c).await.unwrap();
    assert_eq!(report.total, 4);
    let m: Vec<_> = report
        .by_model
        .iter()
        .map(|s| (s.key.as_str(), s.count, s.mean, s.positive))
        .collect();
    assert_eq!(m, [("gpt-4o", 2, 3.5, 1), ("gpt-4o-mini", 2, 2.5, 1)]);
    let cl: Vec<_> = report
        .by_collection
        .iter()
        .map(|s| (s.key.as_str(), s.count))
        .collect();
    assert_eq!(cl, [("(none)", 1), ("energy", 3)]);

    let all = store.list(&c, &FeedbackFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].body.request_id, "r4", "newest first");
    assert!(all.iter().all(|f| f.tenant == tenant && f.user == "u1"));
    let good = store
        .list(
            &c,
            &FeedbackFilter {
                min_rating: Some(4),
                model: Some("gpt-4o-mini".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].body.request_id, "r2");
    assert_eq!(
        store
            .list(&other, &FeedbackFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn round_trip(store: &dyn FeedbackStore, tenant: &str) {
    let c = ctx(tenant);
    let all = store.list(&c, &FeedbackFilter::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = export_beir(&all, dir.path()).unwrap();
    assert_eq!(
        (summary.queries, summary.documents, summary.judgements),
        (2, 3, 6)
    );

    let ds = BeirDataset::load(dir.path(), "test").unwrap();
    assert_eq!(ds.corpus.len(), 3);
    assert_eq!(
        ds.queries.len(),
        2,
        "only well-rated answers become queries"
    );
    let r1 = all.iter().find(|f| f.body.request_id == "r1").unwrap();
    assert_eq!(ds.qrels[&r1.id]["solar"], 2, "cited document judged 2");
    assert_eq!(ds.qrels[&r1.id]["wind"], 1, "retrieved, not cited: 1");
    let solar = ds.corpus.iter().find(|d| d.id == "solar").unwrap();
    assert_eq!(
        (solar.title.as_str(), solar.text.as_str()),
        ("SOLAR", SOLAR)
    );

    // The eval runs on it: each query's cited document ranks first.
    let rag = RagBuilder::new(HashingEmbedder::shared(256))
        .keyword_index(KeywordIndex::in_memory(Language::English))
        .build()
        .unwrap();
    let ectx = RequestContext::system(TenantId::new("feedback-eval").unwrap());
    eval::ingest(&ectx, &rag, &ds).await.unwrap();
    let m = eval::evaluate(&ectx, &rag, &ds, &SearchRequest::new("", 10))
        .await
        .unwrap();
    assert_eq!(m.queries, 2);
    assert!((m.mrr_at_10 - 1.0).abs() < 1e-9, "{m:?}");
    assert!(m.ndcg_at_10 > 0.9, "{m:?}");
}

#[tokio::test]
async fn sqlite_feedback_report_and_beir_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fb.db");
    {
        let store = SqlFeedbackStore::open_sqlite(&path, "wattos_")
            .await
            .unwrap();
        conformance(&store, "fbs").await;
    }
    // Reopened: everything is still there.
    let store = Arc::new(
        SqlFeedbackStore::open_sqlite(&path, "wattos_")
            .await
            .unwrap(),
    );
    round_trip(store.as_ref(), "fbs").await;
    assert!(
        SqlFeedbackStore::open_sqlite(&path, "bad prefix")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn postgres_feedback_report_and_beir_round_trip() {
    let Ok(url) = std::env::var("PG_TEST_URL") else {
        wattos_core::test_utils::skip::skip("postgres feedback test", "PG_TEST_URL is not set");
        return;
    };
    let prefix = format!("fb_{}_", std::process::id());
    let store = SqlFeedbackStore::connect_postgres(&url, &prefix)
        .await
        .unwrap();
    conformance(&store, "fbp").await;
    round_trip(&store, "fbp").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!("DROP TABLE {prefix}feedback"))
        .execute(&pool)
        .await
        .unwrap();
}
