//! Replays a cargo-fuzz corpus (`fuzz/corpus/<target>/` of this workspace) through the harness
//! the fuzz target uses, so every input a fuzzer kept runs in the normal test suite.

use std::path::PathBuf;

/// The corpus folder of fuzz target `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).join(target)
}

/// Runs `harness` on every file of `target`'s corpus.
///
/// # Panics
/// When the corpus is missing or empty (a replay that checks nothing must not pass), or when an
/// input makes `harness` panic (naming the file).
pub fn replay_corpus(target: &str, harness: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "corpus {} is empty", dir.display());
    for path in inputs {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            // A fuzzer running on the same corpus replaces inputs while it reduces them.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("corpus {}: {e}", path.display()),
        };
        let run = std::panic::catch_unwind(|| harness(&data));
        assert!(run.is_ok(), "{target}: {} fails", path.display());
    }
}
