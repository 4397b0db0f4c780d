//! End-to-end ingestion, retrieval, reranking and answering with the embedded stack.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::llm::{ChatModel, ChatRequest, ChatResponse, FinishReason, Usage};
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::vector_store::{Filter, VectorStore};
use wattos_core::{ErrorKind, RequestContext, Result, TenantId};
use wattos_rag::answer::AnswerOptions;
use wattos_rag::cache::MemoryQueryCache;
use wattos_rag::document::Source;
use wattos_rag::fusion::Fusion;
use wattos_rag::keyword::{KeywordIndex, Language};
use wattos_rag::loader::{LoadError, LoadFailure};
use wattos_rag::rerank::{LlmReranker, MmrReranker};
use wattos_rag::retrieve::{SearchMode, SearchRequest};
use wattos_rag::store::EmbeddedStore;
use wattos_rag::{Rag, RagBuilder};

fn ctx(t: &str) -> RequestContext {
    RequestContext::system(TenantId::new(t).unwrap())
}

/// Answers with a fixed script and records the prompts it saw.
struct ScriptedChat {
    replies: Mutex<Vec<String>>,
    prompts: Mutex<Vec<String>>,
}

impl ScriptedChat {
    fn new(replies: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies.iter().rev().map(|s| s.to_string()).collect()),
            prompts: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl ChatModel for ScriptedChat {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn chat(&self, _ctx: &RequestContext, req: ChatRequest) -> Result<ChatResponse> {
        self.prompts.lock().unwrap().push(
            req.messages
                .iter()
                .map(|m| m.text())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let reply = self.replies.lock().unwrap().pop().unwrap_or_default();
        Ok(ChatResponse {
            id: "1".into(),
            model: req.model,
            content: Some(reply),
            tool_calls: vec![],
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            cost: None,
            provider_fields: Default::default(),
        })
    }
}

fn sources() -> Vec<Source> {
    vec![
        Source::new(
            "solar.md",
            "# Solar\n\nSolar panels turn sunlight into electricity on roofs.\n\n## Cost\n\nPanel prices fell sharply over the last decade.",
        ),
        Source::new(
            "wind.html",
            "<html><head><title>Wind</title></head><body><h1>Wind power</h1><p>Wind turbines turn moving air into electricity.</p></body></html>",
        ),
        Source::new(
            "bread.txt",
            "Sourdough bread rises with wild yeast and a long fermentation.",
        ),
    ]
}

struct Stack {
    rag: Rag,
    vectors: Arc<EmbeddedStore>,
    keywords: KeywordIndex,
    embedder: Arc<HashingEmbedder>,
}

fn stack() -> Stack {
    let embedder = HashingEmbedder::shared(256);
    let vectors = Arc::new(EmbeddedStore::in_memory(256));
    let keywords = KeywordIndex::in_memory(Language::English);
    let rag = RagBuilder::new(embedder.clone())
        .vector_store(vectors.clone())
        .keyword_index(keywords.clone())
        .reranker(Arc::new(MmrReranker::new(embedder.clone(), 0.7)))
        .build()
        .unwrap();
    Stack {
        rag,
        vectors,
        keywords,
        embedder,
    }
}

#[tokio::test]
async fn ingest_search_all_modes() {
    let s = stack();
    let c = ctx("acme");
    let report = s.rag.ingest(&c, sources()).await.unwrap();
    assert_eq!(report.indexed(), 3, "{:?}", report.outcomes);
    assert_eq!(
        report.chunks() as u64,
        s.vectors.count(&c, None).await.unwrap()
    );
    assert_eq!(
        s.keywords.count(&c).unwrap(),
        s.vectors.count(&c, None).await.unwrap()
    );
    for mode in [
        SearchMode::Dense,
        SearchMode::Keyword,
        SearchMode::Hybrid {
            fusion: Fusion::Rrf { k: 60.0 },
        },
        SearchMode::Hybrid {
            fusion: Fusion::Weighted { dense_weight: 0.5 },
        },
    ] {
        let hits = s
            .rag
            .search(&c, &SearchRequest::new("wind turbines", 2).with_mode(mode))
            .await
            .unwrap();
        assert_eq!(hits[0].document_id, "wind.html", "{mode:?}");
    }
    let reranked = s
        .rag
        .search(&c, &SearchRequest::new("electricity", 2).reranked())
        .await
        .unwrap();
    assert_eq!(reranked.len(), 2);
    // Section metadata from the structure-aware chunker, filterable.
    let hits = s
        .rag
        .search(
            &c,
            &SearchRequest::new("prices", 5).with_filter(Filter::eq("section", "Solar > Cost")),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].text.contains("Panel prices"));
    assert_eq!(hits[0].metadata["title"], "Solar");
    assert!(
        s.rag
            .search(&c, &SearchRequest::new("  ", 2))
            .await
            .is_err_and(|e| e.kind() == ErrorKind::InvalidInput)
    );
}

#[tokio::test]
async fn incremental_reindex_skips_unchanged_and_replaces_changed() {
    let s = stack();
    let c = ctx("acme");
    s.rag.ingest(&c, sources()).await.unwrap();
    let embedded_before = s.embedder.texts_embedded();
    let again = s.rag.ingest(&c, sources()).await.unwrap();
    assert_eq!(again.unchanged(), 3);
    assert_eq!(
        s.embedder.texts_embedded(),
        embedded_before,
        "nothing re-embedded"
    );

    let mut changed = sources();
    changed[2] = Source::new("bread.txt", "Rye bread is dense and dark.");
    let r = s.rag.ingest(&c, changed).await.unwrap();
    assert_eq!((r.indexed(), r.unchanged()), (1, 2));
    let hits = s
        .rag
        .search(
            &c,
            &SearchRequest::new("sourdough yeast", 5).with_mode(SearchMode::Keyword),
        )
        .await
        .unwrap();
    assert!(hits.is_empty(), "old chunks gone from BM25: {hits:?}");
    let bread = Filter::eq("document_id", "bread.txt");
    assert_eq!(s.vectors.count(&c, Some(&bread)).await.unwrap(), 1);
    let hits = s
        .rag
        .search(
            &c,
            &SearchRequest::new("rye", 5).with_mode(SearchMode::Keyword),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].document_id, "bread.txt");

    assert_eq!(s.rag.delete(&c, &["bread.txt".into()]).await.unwrap(), 1);
    assert_eq!(s.vectors.count(&c, Some(&bread)).await.unwrap(), 0);
    assert!(
        s.rag
            .search(
                &c,
                &SearchRequest::new("rye", 5).with_mode(SearchMode::Keyword)
            )
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_documents_fail_alone_and_leave_nothing_behind() {
    let s = stack();
    let c = ctx("acme");
    let mut input = sources();
    input.push(Source::new("binary.bin", vec![0u8, 159, 146, 150]));
    input.push(Source::new("latin1.txt", b"caf\xe9".to_vec()));
    input.push(Source::new("broken.pdf", b"%PDF-1.4 garbage".to_vec()));
    input.push(Source::new("empty.md", ""));
    let r = s.rag.ingest(&c, input).await.unwrap();
    assert_eq!(r.indexed(), 3);
    let failed = r.failed();
    assert_eq!(failed.len(), 4);
    for (id, err) in &failed {
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.message().contains(id), "{err} names {id}");
    }
    let kinds: Vec<LoadFailure> = failed
        .iter()
        .map(|(_, e)| LoadError::from_error(e).unwrap().failure.clone())
        .collect();
    assert_eq!(kinds[0], LoadFailure::Binary);
    assert!(matches!(kinds[1], LoadFailure::InvalidUtf8 { .. }));
    assert!(matches!(kinds[2], LoadFailure::BrokenPdf { .. }));
    assert_eq!(kinds[3], LoadFailure::Empty);
    for id in ["binary.bin", "latin1.txt", "broken.pdf", "empty.md"] {
        assert_eq!(
            s.vectors
                .count(&c, Some(&Filter::eq("document_id", id)))
                .await
                .unwrap(),
            0
        );
    }
}

/// A failing embedder must not leave a document half-indexed (old chunks stay, nothing new lands).
#[tokio::test]
async fn embedder_failure_keeps_previous_version() {
    struct FailOn(Arc<HashingEmbedder>, &'static str);
    #[async_trait]
    impl EmbeddingModel for FailOn {
        fn name(&self) -> &str {
            "fail-on"
        }
        fn dimensions(&self) -> usize {
            self.0.dimensions()
        }
        async fn embed(
            &self,
            ctx: &RequestContext,
            inputs: &[String],
        ) -> Result<wattos_core::embedding::Embeddings> {
            if inputs.iter().any(|t| t.contains(self.1)) {
                return Err(wattos_core::Error::unavailable("embedder down"));
            }
            self.0.embed(ctx, inputs).await
        }
    }
    let vectors = Arc::new(EmbeddedStore::in_memory(64));
    let rag = RagBuilder::new(Arc::new(FailOn(HashingEmbedder::shared(64), "POISON")))
        .vector_store(vectors.clone())
        .keyword_index(KeywordIndex::in_memory(Language::English))
        .build()
        .unwrap();
    let c = ctx("t");
    rag.ingest(&c, vec![Source::new("a.txt", "first version")])
        .await
        .unwrap();
    let r = rag
        .ingest(
            &c,
            vec![Source::new("a.txt", "second version\n\nPOISON paragraph")],
        )
        .await
        .unwrap();
    assert_eq!(r.failed().len(), 1);
    assert!(r.failed()[0].1.message().contains("a.txt"));
    let hits = rag
        .search(&c, &SearchRequest::new("version", 5))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].text, "first version");
}

#[tokio::test]
async fn tenants_never_see_each_other_in_stores_or_cache() {
    let s = stack();
    let (a, b) = (ctx("tenant-a"), ctx("tenant-b"));
    s.rag.ingest(&a, sources()).await.unwrap();
    // Warm the cache for A, then B asks the same query.
    let req = SearchRequest::new("solar panels", 5);
    assert!(!s.rag.search(&a, &req).await.unwrap().is_empty());
    assert!(
        s.rag.search(&b, &req).await.unwrap().is_empty(),
        "B sees nothing of A, cache included"
    );
    for mode in [SearchMode::Dense, SearchMode::Keyword] {
        assert!(
            s.rag
                .search(&b, &req.clone().with_mode(mode))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn query_cache_is_invalidated_on_index_change() {
    let embedder = HashingEmbedder::shared(64);
    let cache = Arc::new(MemoryQueryCache::new(16));
    let rag = RagBuilder::new(embedder.clone())
        .query_cache(cache)
        .keyword_index(KeywordIndex::in_memory(Language::English))
        .build()
        .unwrap();
    let c = ctx("t");
    rag.ingest(&c, vec![Source::new("a.txt", "apples are red")])
        .await
        .unwrap();
    let req = SearchRequest::new("pears", 5).with_mode(SearchMode::Keyword);
    assert!(rag.search(&c, &req).await.unwrap().is_empty());
    rag.ingest(&c, vec![Source::new("b.txt", "pears are green")])
        .await
        .unwrap();
    assert_eq!(
        rag.search(&c, &req).await.unwrap().len(),
        1,
        "stale cached miss was invalidated"
    );
    rag.delete(&c, &["b.txt".into()]).await.unwrap();
    assert!(
        rag.search(&c, &req).await.unwrap().is_empty(),
        "delete invalidates too"
    );
}

#[tokio::test]
async fn answer_cites_sources_and_drops_invalid_citations() {
    let s = stack();
    let c = ctx("acme");
    s.rag.ingest(&c, sources()).await.unwrap();
    let chat = ScriptedChat::new(&[
        "Wind turbines make electricity from moving air [1]. They are tall [7].",
    ]);
    let mut opts = AnswerOptions::new("scripted");
    opts.search = SearchRequest::new("", 2);
    let answer = s
        .rag
        .answer(&c, chat.as_ref(), "How do wind turbines work?", &opts)
        .await
        .unwrap();
    assert_eq!(
        answer.text,
        "Wind turbines make electricity from moving air [1]. They are tall."
    );
    assert_eq!(answer.invalid_citations, vec![7]);
    assert_eq!(answer.cited.len(), 1);
    let src = &answer.cited[0];
    assert_eq!(src.document_id, "wind.html");
    assert_eq!(src.title.as_deref(), Some("Wind"));
    assert!(src.start_char.is_some() && src.end_char > src.start_char);
    assert!(src.score > 0.0);
    let prompt = chat.prompts.lock().unwrap()[0].clone();
    assert!(prompt.contains("[1] (Wind"), "{prompt}");
    assert!(prompt.contains("How do wind turbines work?"));
}

#[tokio::test]
async fn llm_reranker_follows_the_model_order() {
    let embedder = HashingEmbedder::shared(128);
    let chat = ScriptedChat::new(&["2, 1"]);
    let rag = RagBuilder::new(embedder)
        .keyword_index(KeywordIndex::in_memory(Language::English))
        .reranker(Arc::new(LlmReranker::new(chat.clone(), "scripted")))
        .build()
        .unwrap();
    let c = ctx("t");
    rag.ingest(
        &c,
        vec![
            Source::new("a.txt", "energy energy energy storage"),
            Source::new("b.txt", "energy policy"),
        ],
    )
    .await
    .unwrap();
    let first = rag
        .search(
            &c,
            &SearchRequest::new("energy", 2).with_mode(SearchMode::Keyword),
        )
        .await
        .unwrap();
    let reranked = rag
        .search(
            &c,
            &SearchRequest::new("energy", 2)
                .with_mode(SearchMode::Keyword)
                .reranked(),
        )
        .await
        .unwrap();
    assert_eq!(reranked[0].id, first[1].id);
    assert_eq!(reranked[1].id, first[0].id);
    assert!(chat.prompts.lock().unwrap()[0].contains("[2]"));
}

#[tokio::test]
async fn persistent_stack_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = ctx("acme");
    {
        let rag = Rag::open(dir.path(), HashingEmbedder::shared(64)).unwrap();
        rag.ingest(&c, sources()).await.unwrap();
    }
    let rag = Rag::open(dir.path(), HashingEmbedder::shared(64)).unwrap();
    let hits = rag
        .search(&c, &SearchRequest::new("sourdough", 1))
        .await
        .unwrap();
    assert_eq!(hits[0].document_id, "bread.txt");
    let again = rag.ingest(&c, sources()).await.unwrap();
    assert_eq!(again.unchanged(), 3, "content hashes persisted");
}

#[cfg(feature = "pdf")]
/// Builds a one-page PDF with a Helvetica text line (offsets computed, so the xref is valid).
fn tiny_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(feature = "pdf")]
#[tokio::test]
async fn pdf_loader_extracts_text() {
    use wattos_rag::loader::{Loader, PdfLoader};
    let doc = PdfLoader::default()
        .load(&ctx("t"), Source::new("x.pdf", tiny_pdf("Hello PDF world")))
        .await
        .unwrap();
    assert!(doc.text.contains("Hello PDF world"), "{:?}", doc.text);
    let err = PdfLoader::default()
        .load(
            &ctx("t"),
            Source::new("cut.pdf", tiny_pdf("Hello")[..60].to_vec()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            LoadError::from_error(&err).unwrap().failure,
            LoadFailure::BrokenPdf { .. }
        ),
        "{err}"
    );
    let err = PdfLoader::default()
        .load(&ctx("t"), Source::new("blank.pdf", tiny_pdf("")))
        .await
        .unwrap_err();
    assert_eq!(
        LoadError::from_error(&err).unwrap().failure,
        LoadFailure::Empty
    );
}
