//! RAG embedded in a plain Rust program, with no external services.
//!
//! ```text
//! cargo run -p example-rag-embedded [DATA_DIR]
//! ```
//!
//! Opens (or reopens) a persistent stack under `DATA_DIR` (default: a temp folder), ingests three
//! documents, runs a hybrid search and asks a question. The embedder is the deterministic hashing
//! embedder; swap in any `Arc<dyn EmbeddingModel>` (local MiniLM, a provider) without other changes.
//! The "chat model" here answers extractively so the example runs offline; plug any `ChatModel`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use async_trait::async_trait;
use wattos_core::llm::{ChatModel, ChatRequest, ChatResponse, FinishReason, Usage};
use wattos_core::test_utils::embed::HashingEmbedder;
use wattos_core::{RequestContext, TenantId};
use wattos_rag::Rag;
use wattos_rag::answer::AnswerOptions;
use wattos_rag::document::Source;
use wattos_rag::retrieve::SearchRequest;

/// Answers with the first sentence of source [1], cited.
struct Extractive;

#[async_trait]
impl ChatModel for Extractive {
    fn name(&self) -> &str {
        "extractive"
    }
    async fn chat(
        &self,
        _ctx: &RequestContext,
        req: ChatRequest,
    ) -> wattos_core::Result<ChatResponse> {
        let prompt = req.messages.last().map(|m| m.text()).unwrap_or_default();
        let first = prompt
            .split("[1]")
            .nth(1)
            .and_then(|s| {
                s.lines()
                    .skip(1)
                    .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
            })
            .unwrap_or("I do not know.");
        let sentence = first
            .split_inclusive('.')
            .next()
            .unwrap_or(first)
            .trim_end_matches('.');
        Ok(ChatResponse {
            id: "local".into(),
            model: req.model,
            content: Some(format!("{sentence} [1].")),
            tool_calls: vec![],
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            cost: None,
            provider_fields: Default::default(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("wattos-rag-embedded-example"));
    let rag = Rag::open(&dir, Arc::new(HashingEmbedder::new(384)))?;
    let ctx = RequestContext::system(TenantId::new("demo")?);

    let report = rag
        .ingest(
            &ctx,
            vec![
                Source::new("heat-pumps.md", "# Heat pumps\n\nA heat pump moves heat from outside air into a building, using far less electricity than a resistive heater.\n\n## Sizing\n\nSize the pump for the coldest week of the year."),
                Source::new("insulation.html", "<h1>Insulation</h1><p>Insulating walls and roofs cuts heating demand before any new heater is installed.</p>"),
                Source::new("notes.txt", "Batteries store surplus solar electricity for the evening."),
            ],
        )
        .await?;
    println!(
        "indexed {} documents ({} chunks), {} unchanged, {} failed (data in {})",
        report.indexed(),
        report.chunks(),
        report.unchanged(),
        report.failed().len(),
        dir.display()
    );

    for hit in rag
        .search(
            &ctx,
            &SearchRequest::new("how does a heat pump heat a house", 3),
        )
        .await?
    {
        println!(
            "{:.4}  {}  {:?}",
            hit.score,
            hit.id,
            hit.metadata.get("section")
        );
    }

    let answer = rag
        .answer(
            &ctx,
            &Extractive,
            "How does a heat pump work?",
            &AnswerOptions::new("extractive"),
        )
        .await?;
    println!("\nanswer: {}", answer.text);
    for s in &answer.cited {
        println!(
            "  [{}] {} ({:?}), chars {:?}..{:?}, score {:.4}",
            s.number, s.document_id, s.title, s.start_char, s.end_char, s.score
        );
    }
    Ok(())
}
