//! The official OpenAI (Python, Node) and Anthropic (Python) SDKs, unmodified, against the gateway.
//!
//! `scripts/test.sh` installs the SDKs (a Python venv and `npm ci` in `tests/sdk`) and exports
//! `SDK_TEST_PYTHON`; run directly with `cargo test`, these tests say they are skipped.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::path::Path;

fn sdk_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk"))
}

async fn run(cmd: &str, args: &[&str], base: &str) {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .current_dir(sdk_dir())
        .env("WATTOS_BASE_URL", base)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}

#[tokio::test]
async fn official_python_sdks_work_unmodified() {
    let Ok(python) = std::env::var("SDK_TEST_PYTHON") else {
        println!(
            "skipped: SDK_TEST_PYTHON is not set (scripts/test.sh installs the SDKs and sets it)"
        );
        return;
    };
    let base = support::start().await;
    run(&python, &["python_sdk.py"], &base).await;
}

#[tokio::test]
async fn official_node_sdk_works_unmodified() {
    if !sdk_dir().join("node_modules/openai").is_dir() {
        println!("skipped: tests/sdk/node_modules is missing (scripts/test.sh runs npm ci there)");
        return;
    }
    let base = support::start().await;
    run("node", &["node_sdk.mjs"], &base).await;
}
