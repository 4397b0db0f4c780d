//! fastembed (onnxruntime) against the same sentence-transformers reference vectors.
//!
//! Needs `ORT_DYLIB_PATH` (`scripts/fetch-models.sh --with-onnxruntime` prints it) and an ONNX export
//! at `<cache>/all-minilm-l6-v2/onnx/model.onnx` (`fixtures/minilm_onnx_export.py` writes one from
//! the safetensors). Without them the test prints why it is skipped.
#![cfg(feature = "fastembed")]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use wattos_core::embedding::EmbeddingModel;
use wattos_core::{RequestContext, TenantId};
use wattos_llm::local::{FastEmbedder, MiniLmEmbedder};

fn models_dir() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-models.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run fetch-models.sh");
    assert!(out.status.success(), "fetch-models.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

#[tokio::test]
async fn fastembed_matches_sentence_transformers_reference() {
    let folder = MiniLmEmbedder::folder_in(models_dir());
    if std::env::var_os("ORT_DYLIB_PATH").is_none() || !folder.join("onnx/model.onnx").is_file() {
        wattos_core::test_utils::skip::skip_optional(
            "fastembed vs sentence-transformers",
            &format!(
                "set ORT_DYLIB_PATH (scripts/fetch-models.sh --with-onnxruntime) and export \
                 {}/onnx/model.onnx with tests/fixtures/minilm_onnx_export.py",
                folder.display()
            ),
        );
        return;
    }
    let embedder = FastEmbedder::load(&folder).expect("load ONNX model");
    assert_eq!(embedder.dimensions(), 384);
    let json: Value =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).expect("reference");
    let cases = json["cases"].as_array().expect("cases");
    let texts: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().expect("text").to_owned())
        .collect();
    let ctx = RequestContext::system(TenantId::new("test").expect("tenant"));
    let out = embedder.embed_all(&ctx, &texts).await.expect("embed");
    for (case, got) in cases.iter().zip(&out.vectors) {
        let want: Vec<f32> = case["vector"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|v| v.as_f64().expect("number") as f32)
            .collect();
        let diff = want
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "max |diff| {diff} for {:?}", case["text"]);
    }
    let tokens: u64 = cases
        .iter()
        .map(|c| c["tokens"].as_u64().expect("tokens"))
        .sum();
    assert_eq!(out.usage.input_tokens, tokens);
}
