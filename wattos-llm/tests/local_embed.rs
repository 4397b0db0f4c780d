//! all-MiniLM-L6-v2 with candle against sentence-transformers reference vectors
//! (`fixtures/minilm_reference.json`, computed once by `fixtures/minilm_reference.py`).
#![cfg(feature = "local")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::{ErrorKind, RequestContext, TenantId};
use wattos_llm::local::{LoadError, MiniLmEmbedder};

/// The model cache, filled (offline if already complete) by `scripts/fetch-models.sh`.
fn models_dir() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-models.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run fetch-models.sh");
    assert!(
        out.status.success(),
        "fetch-models.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

fn embedder() -> &'static MiniLmEmbedder {
    static MODEL: OnceLock<MiniLmEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| MiniLmEmbedder::from_models_dir(models_dir()).expect("load MiniLM"))
}

fn ctx() -> RequestContext {
    RequestContext::system(TenantId::new("test").expect("tenant"))
}

struct Case {
    text: String,
    tokens: u64,
    vector: Vec<f32>,
}

fn reference() -> Vec<Case> {
    let raw = include_str!("fixtures/minilm_reference.json");
    let json: Value = serde_json::from_str(raw).expect("reference json");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_owned(),
            tokens: c["tokens"].as_u64().expect("tokens"),
            vector: c["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect(),
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[tokio::test]
async fn matches_sentence_transformers_reference() {
    let cases = reference();
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let out = embedder().embed_all(&ctx(), &texts).await.expect("embed");
    assert_eq!(out.vectors.len(), cases.len());
    for (case, got) in cases.iter().zip(&out.vectors) {
        assert_eq!(got.len(), 384);
        let diff = max_abs_diff(got, &case.vector);
        assert!(diff < 1e-4, "max |diff| {diff} for {:?}", case.text);
    }
    // Usage counts every token, the truncated passage at the 256-token limit.
    let expected: u64 = cases.iter().map(|c| c.tokens).sum();
    assert_eq!(out.usage.input_tokens, expected);
    assert_eq!(cases.last().map(|c| c.tokens), Some(256));
}

#[tokio::test]
async fn batch_equals_single() {
    let cases = reference();
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let batch = embedder().embed_all(&ctx(), &texts).await.expect("batch");
    for (text, in_batch) in texts.iter().zip(&batch.vectors) {
        let single = embedder().embed_one(&ctx(), text).await.expect("single");
        let diff = max_abs_diff(&single, in_batch);
        assert!(diff < 1e-5, "padding changed {text:?} by {diff}");
    }
}

#[tokio::test]
async fn vectors_are_unit_length_and_ordered() {
    let texts: Vec<String> = [
        "zebra",
        "a much longer sentence about many different things",
        "x y",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = embedder().embed_all(&ctx(), &texts).await.expect("embed");
    for (t, v) in texts.iter().zip(&out.vectors) {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{t}: norm {norm}");
        let again = embedder().embed_one(&ctx(), t).await.expect("single");
        assert!(max_abs_diff(&again, v) < 1e-5, "order mixed up for {t}");
    }
    assert_eq!(embedder().dimensions(), 384);
    assert_eq!(out.model, embedder().name());
}

#[tokio::test]
async fn empty_input_is_rejected() {
    let err = embedder()
        .embed_all(&ctx(), &["ok".to_owned(), "  ".to_owned()])
        .await
        .expect_err("blank input");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("input[1]"));
    let err = embedder().embed(&ctx(), &[]).await.expect_err("no inputs");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn missing_folder_names_the_file() {
    let dir = std::env::temp_dir().join(format!("wattos-minilm-missing-{}", std::process::id()));
    let err = MiniLmEmbedder::load(&dir).expect_err("missing");
    assert!(matches!(err, LoadError::MissingFile { .. }));
    assert_eq!(err.path(), dir.join("config.json"));
    let core: wattos_core::Error = err.into();
    assert_eq!(core.kind(), ErrorKind::NotFound);
    assert!(core.message().contains("config.json"));
}

#[test]
fn corrupt_files_are_named() {
    let src = MiniLmEmbedder::folder_in(models_dir());
    let dir = std::env::temp_dir().join(format!("wattos-minilm-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    std::fs::write(dir.join("config.json"), "{ not json").expect("write");
    let err = MiniLmEmbedder::load(&dir).expect_err("bad config");
    assert!(matches!(err, LoadError::CorruptFile { .. }), "{err}");
    assert_eq!(err.path(), dir.join("config.json"));

    std::fs::copy(src.join("config.json"), dir.join("config.json")).expect("copy");
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    std::fs::write(dir.join("model.safetensors"), b"truncated").expect("write");
    let err = MiniLmEmbedder::load(&dir).expect_err("bad weights");
    assert!(matches!(err, LoadError::CorruptFile { .. }), "{err}");
    assert_eq!(err.path(), dir.join("model.safetensors"));
    let core: wattos_core::Error = err.into();
    assert_eq!(core.kind(), ErrorKind::Unavailable);

    std::fs::remove_dir_all(&dir).ok();
}
