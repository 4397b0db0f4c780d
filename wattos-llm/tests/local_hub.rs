//! Local models from a Hub: files are downloaded once from the endpoint into the standard cache
//! layout, then found offline. A local axum server plays the Hub (`/{repo}/resolve/{rev}/{file}`,
//! `X-Repo-Commit`, 401 for a gated repository, 404 for unknown files) and serves the real
//! all-MiniLM-L6-v2 files of the WattOS model cache.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wattos_core::embedding::EmbeddingModel;
use wattos_core::{RequestContext, TenantId};
use wattos_llm::local::{HubCache, LoadError, MINILM_FILES, MiniLmEmbedder, ModelRef};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn models_dir() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-models.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run fetch-models.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

struct Hub {
    minilm: PathBuf,
    requests: AtomicUsize,
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((owner, name, revision, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    hub.requests.fetch_add(1, Ordering::SeqCst);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v == "Bearer secret");
    match (owner.as_str(), name.as_str(), revision.as_str()) {
        ("gated", _, _) if !authorized => StatusCode::UNAUTHORIZED.into_response(),
        ("sentence-transformers", "all-MiniLM-L6-v2", "main")
        | ("gated", "all-MiniLM-L6-v2", "main")
            if MINILM_FILES.contains(&file.as_str()) =>
        {
            let bytes = tokio::fs::read(hub.minilm.join(&file))
                .await
                .expect("model file");
            ([("x-repo-commit", COMMIT)], bytes).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_hub() -> (String, Arc<Hub>) {
    let hub = Arc::new(Hub {
        minilm: MiniLmEmbedder::folder_in(models_dir()),
        requests: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route(
            "/{owner}/{name}/resolve/{revision}/{*file}",
            axum::routing::get(resolve),
        )
        .with_state(hub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hub)
}

fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(partial_files(&p));
        } else if p.to_string_lossy().contains(".part-") {
            found.push(p);
        }
    }
    found
}

#[tokio::test]
async fn downloads_once_into_the_standard_cache_then_loads_offline() {
    let (url, hub) = start_hub().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let online = HubCache::new(cache_dir.path()).with_endpoint(&url);
    let model = ModelRef::parse("sentence-transformers/all-MiniLM-L6-v2").unwrap();

    let folder = online.folder(&model, &MINILM_FILES).await.unwrap();
    assert_eq!(
        folder,
        cache_dir
            .path()
            .join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots")
            .join(COMMIT)
    );
    assert_eq!(
        std::fs::read_to_string(
            cache_dir
                .path()
                .join("models--sentence-transformers--all-MiniLM-L6-v2/refs/main")
        )
        .unwrap(),
        COMMIT
    );
    assert_eq!(hub.requests.load(Ordering::SeqCst), 3);

    // The downloaded model is the real one: same vectors as the WattOS cache copy.
    let ctx = RequestContext::system(TenantId::new("t").unwrap());
    let text = vec!["a cat sits on the mat".to_owned()];
    let from_hub = MiniLmEmbedder::load(&folder).unwrap();
    let reference = MiniLmEmbedder::from_models_dir(models_dir()).unwrap();
    let a = from_hub.embed(&ctx, &text).await.unwrap();
    let b = reference.embed(&ctx, &text).await.unwrap();
    assert_eq!(a.vectors, b.vectors);

    // Cached: no more requests, and an offline cache (no endpoint) finds it by `refs/main`.
    online.folder(&model, &MINILM_FILES).await.unwrap();
    let offline = HubCache::new(cache_dir.path());
    assert_eq!(offline.folder(&model, &MINILM_FILES).await.unwrap(), folder);
    assert_eq!(hub.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn missing_gated_and_unreachable_files_are_typed_errors_and_leave_nothing() {
    let (url, _hub) = start_hub().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let online = HubCache::new(cache_dir.path()).with_endpoint(&url);

    let missing = ModelRef::parse("hf:sentence-transformers/all-MiniLM-L6-v2/nope.bin").unwrap();
    assert!(matches!(
        online.file(&missing).await,
        Err(LoadError::MissingFile { .. })
    ));

    let gated = ModelRef::parse("hf:gated/all-MiniLM-L6-v2").unwrap();
    let err = online.folder(&gated, &MINILM_FILES).await.unwrap_err();
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    let with_token = online.clone().with_token("secret");
    with_token.folder(&gated, &MINILM_FILES).await.unwrap();

    let unreachable = HubCache::new(cache_dir.path()).with_endpoint("http://127.0.0.1:9");
    let other = ModelRef::parse("hf:someone/else/model.gguf").unwrap();
    let err = unreachable.file(&other).await.unwrap_err();
    assert!(matches!(err, LoadError::CorruptFile { .. }), "{err}");
    assert!(partial_files(cache_dir.path()).is_empty());
}
