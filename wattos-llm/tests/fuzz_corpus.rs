//! Replays every input of the cargo-fuzz corpora (`fuzz/corpus/<target>/`: seeds and whatever a
//! fuzzing run kept) through the harness the fuzz targets use, so a fixed crash stays fixed.

#[test]
fn sse_corpus_replays_cleanly() {
    wattos_core::test_utils::fuzz::replay_corpus("sse", wattos_llm::fuzz::sse);
}

#[test]
fn ndjson_corpus_replays_cleanly() {
    wattos_core::test_utils::fuzz::replay_corpus("ndjson", wattos_llm::fuzz::ndjson);
}
