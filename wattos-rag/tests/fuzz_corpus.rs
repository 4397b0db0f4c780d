//! Replays every input of the cargo-fuzz corpora (`fuzz/corpus/<target>/`: seeds and whatever a
//! fuzzing run kept) through the harness the fuzz targets use, so a fixed crash stays fixed.

#[test]
fn chunkers_corpus_replays_cleanly() {
    wattos_core::test_utils::fuzz::replay_corpus("chunkers", wattos_rag::fuzz::chunkers);
}

#[test]
fn loaders_corpus_replays_cleanly() {
    wattos_core::test_utils::fuzz::replay_corpus("loaders", wattos_rag::fuzz::loaders);
}
