//! Graceful shutdown of the real binary: SIGTERM arrives while a streaming chat completion is in
//! flight; the stream still completes with `data: [DONE]` and the process exits 0.

#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use wattos_llm::testing::{Fault, MockServer};

#[tokio::test]
async fn sigterm_mid_stream_drains_the_stream_and_exits_zero() {
    let mock = MockServer::openai().await;
    // Each streamed frame comes 150 ms after the previous one.
    mock.push_fault(Fault::Drip(Duration::from_millis(150)));
    let dir =
        std::env::temp_dir().join(format!("wattos-shutdown-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("wattos.toml");
    std::fs::write(
        &config,
        format!(
            "[llm.providers.slow]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"sk-test\"\nmodel = \"gpt-4o-mini\"\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wattos-server"))
        .arg("--config")
        .arg(&config)
        .env("WATTOS_SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("WATTOS_DATA_DIR", dir.join("data"))
        .env("WATTOS_MODELS__LOCAL_CHAT", "false")
        .env("WATTOS_MODELS__LOCAL_EMBEDDINGS", "false")
        .env("WATTOS_SERVER__SHUTDOWN_GRACE", "20s")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/health/liveness")).send().await
            && r.status() == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the server did not start");

    let resp = http
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": "slow", "stream": true, "messages": [{"role": "user",
            "content": "please repeat these several words slowly so the stream lasts a while"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    // Wait for the first chunk, then ask the server to stop.
    let first = body.next().await.unwrap().unwrap();
    text.push_str(&String::from_utf8_lossy(&first));
    let pid = child.id().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // New connections are refused soon after, while the open stream goes on.
    let mut chunks_after_term = 0;
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        chunks_after_term += 1;
    }
    assert!(
        chunks_after_term > 1,
        "the stream ended right at SIGTERM: {text}"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    // Every delta of the answer arrived.
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(content.starts_with("Echo: please repeat"), "{content}");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server did not exit after draining")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
