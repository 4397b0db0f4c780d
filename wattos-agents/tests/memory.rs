//! Long-term memory: the conformance suite over every `MemoryStore` (in memory, SQLite, Postgres),
//! keyword-only and with a semantic index (the local all-MiniLM-L6-v2 plus the embedded vector
//! store); `remember` / `recall` tools in a ReAct agent, scripted (deterministic) and on the local
//! SmolLM2-135M model.
//!
//! Needs the model cache (`scripts/fetch-models.sh`) and the machine's PostgreSQL (`PG_TEST_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`). Without them the affected tests print
//! `SKIPPED` and pass, except under `CI=true`, where a skip fails.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use wattos_agents::agent::{AgentState, ReactAgent};
use wattos_agents::memory::{
    InMemoryMemoryStore, MatchKind, MemoryIndex, MemoryQuery, MemoryStore, MemoryTools, Namespace,
    NewMemory, SqlMemoryStore, conformance,
};
use wattos_agents::{CompileOptions, RunConfig, RunStatus};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{Message, ToolChoice};
use wattos_core::test_utils::chat::ScriptedChatModel;
use wattos_core::vector_store::VectorStore;
use wattos_core::{Principal, RequestContext, TenantId};
use wattos_rag::store::EmbeddedStore;

fn pg_url() -> String {
    std::env::var("PG_TEST_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn run_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Prints `SKIPPED: why`; under `CI=true` a skip is a failure.
fn skip(why: &str) {
    wattos_core::test_utils::skip::skip("memory test", why);
}

/// The local MiniLM, loaded once per test binary.
fn minilm() -> Option<Arc<dyn EmbeddingModel>> {
    static MODEL: OnceLock<Option<Arc<dyn EmbeddingModel>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = wattos_llm::local::default_models_dir();
            match wattos_llm::local::MiniLmEmbedder::from_models_dir(&dir) {
                Ok(m) => Some(Arc::new(m) as Arc<dyn EmbeddingModel>),
                Err(e) => {
                    skip(&format!(
                        "MiniLM: {e} (models dir {}; run scripts/fetch-models.sh)",
                        dir.display()
                    ));
                    None
                }
            }
        })
        .clone()
}

fn index_in(dir: Option<&Path>) -> Option<MemoryIndex> {
    let embedder = minilm()?;
    let dims = embedder.dimensions();
    let vectors: Arc<dyn VectorStore> = match dir {
        Some(d) => Arc::new(EmbeddedStore::open(d, dims).unwrap()),
        None => Arc::new(EmbeddedStore::in_memory(dims)),
    };
    Some(MemoryIndex::new(embedder, vectors).unwrap())
}

async fn pg_store(index: Option<MemoryIndex>) -> Option<SqlMemoryStore> {
    match SqlMemoryStore::connect_postgres(&pg_url(), "wattos_memtest_").await {
        Ok(s) => Some(match index {
            Some(ix) => s.with_index(ix),
            None => s,
        }),
        Err(e) => {
            skip(&format!("PostgreSQL at {}: {e}", pg_url()));
            None
        }
    }
}

#[tokio::test]
async fn in_memory_keyword_conformance() {
    conformance::check(&InMemoryMemoryStore::new(), &run_id())
        .await
        .unwrap();
}

#[tokio::test]
async fn keyword_ranking_misses_paraphrases_that_the_semantic_suite_requires() {
    // The semantic cases are built so that word overlap puts a distractor first: without an
    // index the suite must fail, which is what makes it a test of the index.
    let err = conformance::check_semantic(&InMemoryMemoryStore::new(), &run_id())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("should find"), "{err}");
}

/// Semantic ranking of the hand-written question-to-fact cases with the local MiniLM. Ignored (so
/// it is listed as such in every run): all-MiniLM-L6-v2 ranks by surface similarity and gets only
/// one of the three cases right. Cosine similarities measured on 2026-12-05 (fact vs the best
/// distractor): "what diet does she follow" 0.286 vs 0.462; "when does my kid begin class" 0.684
/// vs 0.676 (right); "which medicines should doctors avoid giving me" 0.441 vs 0.557. A stronger
/// (asymmetric) embedder or a cross-encoder rerank is needed; issue #23 stays open on this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "all-MiniLM-L6-v2 misranks two of the three question-to-fact cases; issue #23 open"]
async fn semantic_ranking_with_minilm_beats_word_overlap() {
    let Some(index) = index_in(None) else {
        return;
    };
    let store = InMemoryMemoryStore::new().with_index(index);
    conformance::check_semantic(&store, &run_id())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_conformance_with_the_minilm_index() {
    let Some(index) = index_in(None) else {
        return;
    };
    let store = InMemoryMemoryStore::new().with_index(index);
    conformance::check(&store, &run_id()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conformance_with_the_minilm_index_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("memories.db");
    // Keyword-only first (no model needed).
    let plain = SqlMemoryStore::open_sqlite(&db, "wattos_").await.unwrap();
    conformance::check(&plain, &run_id()).await.unwrap();
    drop(plain);
    let Some(index) = index_in(Some(&dir.path().join("vectors"))) else {
        return;
    };
    let store = SqlMemoryStore::open_sqlite(&db, "wattos_")
        .await
        .unwrap()
        .with_index(index);
    conformance::check(&store, &run_id()).await.unwrap();
    let run = run_id();
    conformance::write_durable(&store, &run).await.unwrap();
    drop(store);
    // A new process: the database file and the vector store's directory are reopened.
    let reopened = SqlMemoryStore::open_sqlite(&db, "wattos_")
        .await
        .unwrap()
        .with_index(index_in(Some(&dir.path().join("vectors"))).unwrap());
    conformance::check_durable(&reopened, &run).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance_with_the_minilm_index_and_restart() {
    let Some(plain) = pg_store(None).await else {
        return;
    };
    conformance::check(&plain, &run_id()).await.unwrap();
    drop(plain);
    let dir = tempfile::tempdir().unwrap();
    let Some(index) = index_in(Some(dir.path())) else {
        return;
    };
    // No pgvector on this machine: the index is the embedded store; the rows are in Postgres.
    let store = pg_store(Some(index)).await.unwrap();
    conformance::check(&store, &run_id()).await.unwrap();
    let run = run_id();
    conformance::write_durable(&store, &run).await.unwrap();
    drop(store);
    let reopened = pg_store(index_in(Some(dir.path()))).await.unwrap();
    conformance::check_durable(&reopened, &run).await.unwrap();
    assert!(
        SqlMemoryStore::connect_postgres(&pg_url(), "Bad;Name")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn index_failures_fall_back_to_keywords_when_asked() {
    /// An embedder that always fails.
    struct Down;
    #[async_trait::async_trait]
    impl EmbeddingModel for Down {
        fn name(&self) -> &str {
            "down"
        }
        fn dimensions(&self) -> usize {
            4
        }
        async fn embed(
            &self,
            _ctx: &RequestContext,
            _inputs: &[String],
        ) -> wattos_core::Result<wattos_core::embedding::Embeddings> {
            Err(wattos_core::Error::unavailable("embedder down"))
        }
    }
    let ctx = RequestContext::system(TenantId::new("fallback").unwrap());
    let ns = Namespace::user("ann").unwrap();
    // Rows written before the index went down.
    let rows = InMemoryMemoryStore::new();
    rows.remember(&ctx, &ns, "Ann drinks green tea")
        .await
        .unwrap();
    let vectors: Arc<dyn VectorStore> = Arc::new(EmbeddedStore::in_memory(4));
    let strict = InMemoryMemoryStore::new()
        .with_index(MemoryIndex::new(Arc::new(Down), vectors.clone()).unwrap());
    assert!(
        strict.remember(&ctx, &ns, "x y").await.is_err(),
        "writes need the index"
    );
    assert!(
        strict
            .search(&ctx, &ns, "tea", &MemoryQuery::default())
            .await
            .is_err()
    );
    // A store whose rows exist and whose index fails at search time ranks by keywords.
    let dir = tempfile::tempdir().unwrap();
    let lenient = SqlMemoryStore::open_sqlite(dir.path().join("m.db"), "wattos_")
        .await
        .unwrap();
    lenient
        .remember(&ctx, &ns, "Ann drinks green tea")
        .await
        .unwrap();
    let lenient = lenient.with_index(
        MemoryIndex::new(Arc::new(Down), vectors)
            .unwrap()
            .with_keyword_fallback(true),
    );
    let hits = lenient
        .search(&ctx, &ns, "green tea", &MemoryQuery::default())
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].matched_by, MatchKind::Keyword);
}

#[test]
fn index_rejects_mismatched_dimensions() {
    let Some(embedder) = minilm() else {
        return;
    };
    let vectors: Arc<dyn VectorStore> = Arc::new(EmbeddedStore::in_memory(8));
    assert!(MemoryIndex::new(embedder, vectors).is_err());
}

fn user_ctx(tenant: &str, user: &str) -> RequestContext {
    RequestContext::new(
        TenantId::new(tenant).unwrap(),
        Principal::user(user, ["member"]),
    )
}

fn tool_results(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

/// Deterministic: a scripted model calls `remember` in one run and `recall` in a later one; the
/// store, the tools and the namespace from the run's context are real.
#[tokio::test]
async fn react_agent_remembers_across_runs_scripted() {
    let store: Arc<dyn MemoryStore> = Arc::new(InMemoryMemoryStore::new());
    let tools = MemoryTools::new(store.clone()).with_path(["assistant"]);
    let agent = |model: ScriptedChatModel| {
        ReactAgent::new(Arc::new(model), "scripted")
            .with_tools(tools.tools())
            .compile(CompileOptions::new())
            .unwrap()
    };
    let ann = user_ctx("acme", "ann");
    let first = agent(
        ScriptedChatModel::new()
            .then_tool_call("remember", r#"{"text":"Ann's favourite colour is teal"}"#)
            .then_text("Noted."),
    )
    .invoke(
        &ann,
        &RunConfig::default(),
        AgentState::user("My favourite colour is teal."),
    )
    .await
    .unwrap();
    assert_eq!(first.status, RunStatus::Completed);
    assert!(tool_results(&first.state.messages)[0].contains("\"stored\":true"));
    let stored = store
        .list(
            &ann,
            &Namespace::user("ann").unwrap(),
            &MemoryQuery::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].namespace.path(), ["assistant"]);

    // A later run (fresh state, fresh thread) recalls it.
    let recall_model = ScriptedChatModel::new()
        .then_tool_call("recall", r#"{"query":"favourite colour"}"#)
        .then_text("Teal.");
    let second = agent(recall_model.clone())
        .invoke(
            &ann,
            &RunConfig::default(),
            AgentState::user("What is my favourite colour?"),
        )
        .await
        .unwrap();
    assert_eq!(
        tool_results(&second.state.messages),
        [r#"["Ann's favourite colour is teal"]"#]
    );
    // The model saw the recalled fact before answering.
    let last = recall_model.requests().last().cloned().unwrap();
    assert!(last.messages.iter().any(|m| m.text().contains("teal")));

    // Another user of the same tenant, and the same user id in another tenant, recall nothing.
    for ctx in [user_ctx("acme", "bob"), user_ctx("globex", "ann")] {
        let out = agent(
            ScriptedChatModel::new()
                .then_tool_call("recall", r#"{"query":"favourite colour"}"#)
                .then_text("I don't know."),
        )
        .invoke(
            &ctx,
            &RunConfig::default(),
            AgentState::user("What is my favourite colour?"),
        )
        .await
        .unwrap();
        assert_eq!(tool_results(&out.state.messages), ["[]"]);
    }
}

#[tokio::test]
async fn recall_message_lists_relevant_memories() {
    let store = InMemoryMemoryStore::new();
    let ctx = user_ctx("acme", "ann");
    let ns = Namespace::for_caller(&ctx).unwrap();
    store
        .put(&ctx, &ns, NewMemory::new("Ann's dog is called Rex"))
        .await
        .unwrap();
    let tools = MemoryTools::new(Arc::new(store));
    let msg = tools
        .recall_message(&ctx, "dog name")
        .await
        .unwrap()
        .unwrap();
    assert!(msg.text().contains("Rex"));
    assert!(
        tools
            .recall_message(&user_ctx("acme", "bob"), "dog name")
            .await
            .unwrap()
            .is_none()
    );
}

fn load_smollm() -> Option<wattos_llm::local::SmolLm> {
    use wattos_llm::local::{SmolLm, SmolLmOptions, default_models_dir};
    let dir = default_models_dir();
    if !SmolLm::file_in(&dir).is_file() {
        skip(&format!(
            "{} is missing; run scripts/fetch-models.sh or set WATTOS_MODELS__DIR",
            SmolLm::file_in(&dir).display()
        ));
        return None;
    }
    let mut options = SmolLmOptions::default();
    options.default_temperature = 0.0;
    Some(SmolLm::from_models_dir(&dir, options).expect("load SmolLM2"))
}

/// End to end on the local SmolLM2-135M (greedy): run 1 is told a fact and must call `remember`
/// (the tool choice names it, so the local model's grammar forces a schema-valid call; the text is
/// the model's own); run 2, a fresh run of the same user, must call `recall` and answer from it.
/// The tools' `maxLength` (200 characters) is what lets a small model that keeps writing close its
/// arguments in time: greedy SmolLM2-135M repeats its sentence until the grammar ends the string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn react_agent_remembers_across_runs_on_the_local_model() {
    let (Some(model), Some(index)) = (load_smollm(), index_in(None)) else {
        return;
    };
    let model = Arc::new(model);
    let store: Arc<dyn MemoryStore> = Arc::new(InMemoryMemoryStore::new().with_index(index));
    let tools = MemoryTools::new(store.clone());
    let agent = |tool: &str| {
        ReactAgent::new(model.clone(), "smollm2")
            .with_prompt("You are a helpful assistant with a long-term memory about the user.")
            .with_tools(tools.tools())
            .with_first_tool_choice(ToolChoice::Tool { name: tool.into() })
            .with_tool_choice(ToolChoice::None)
            .with_max_tokens(96)
            .compile(CompileOptions::new())
            .unwrap()
    };
    let ann = user_ctx("local", "ann");
    let cfg = RunConfig::default().with_step_limit(6);
    let first = agent("remember")
        .invoke(
            &ann,
            &cfg,
            AgentState::user("Please remember this: my favourite colour is teal."),
        )
        .await
        .unwrap();
    for m in &first.state.messages {
        eprintln!("run 1: {m:?}");
    }
    assert_eq!(first.status, RunStatus::Completed);
    let stored = store
        .list(
            &ann,
            &Namespace::user("ann").unwrap(),
            &MemoryQuery::default(),
        )
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "the model called remember once");
    assert!(
        stored[0].text.to_lowercase().contains("teal"),
        "the model stored the fact: {:?}",
        stored[0].text
    );

    let second = agent("recall")
        .invoke(&ann, &cfg, AgentState::user("What is my favourite colour?"))
        .await
        .unwrap();
    for m in &second.state.messages {
        eprintln!("run 2: {m:?}");
    }
    assert_eq!(second.status, RunStatus::Completed);
    let results = tool_results(&second.state.messages);
    assert_eq!(results.len(), 1);
    assert!(
        results[0].to_lowercase().contains("teal"),
        "recalled: {results:?}"
    );
    let answer = second
        .state
        .last_answer()
        .unwrap_or_default()
        .to_lowercase();
    assert!(answer.contains("teal"), "answer: {answer:?}");
}
