//! Skips that show and fail where they must.
//!
//! A test that cannot run here calls [`skip`] (or [`skip_optional`] for what no CI machine of this
//! project provides, such as a Qdrant server) and returns. The reason goes to stderr and, when
//! `TEST_SKIP_LOG` names a file, is appended there, so `scripts/test.sh` can list every skip at the
//! end of a run (libtest hides the output of passing tests). Under `CI=true`, [`skip`] panics: a
//! skip of anything the CI machine provides is a failure.

use std::io::Write;

/// Whether this run is CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn record(line: &str) {
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("TEST_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Records that `what` was skipped because `why`.
///
/// # Panics
/// Under `CI=true`: the CI machine provides what the test needs, so not running it is a failure.
pub fn skip(what: &str, why: &str) {
    if in_ci() {
        panic!(
            "{what} was skipped: {why} (CI=true: this machine provides it, so a skip is a failure)"
        );
    }
    record(&format!("SKIPPED: {what}: {why}"));
}

/// Records that `what` was skipped because `why`, also under CI (for services no CI machine of the
/// project has, e.g. Qdrant).
pub fn skip_optional(what: &str, why: &str) {
    record(&format!("SKIPPED (optional): {what}: {why}"));
}
