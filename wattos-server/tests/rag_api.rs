//! The RAG API over real HTTP, on the server built by `bootstrap` with the real local models
//! (MiniLM embeddings, SmolLM2 chat): collections, JSON and multipart ingestion with per-document
//! results, listing and deleting documents, search modes and filters, cited answers (JSON and SSE),
//! validation errors, persistence across a restart, and tenant isolation with authentication on.

#![allow(clippy::unwrap_used)]

mod apis_support;

use apis_support::*;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = http.post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn docs() -> Value {
    json!({"documents": [
        {"id": "solar.md", "text": "# Solar\n\nSolar panels turn sunlight into electricity. Photovoltaic cells are made of silicon.",
         "metadata": {"topic": "energy", "year": 2024}},
        {"id": "bread.txt", "text": "Sourdough bread rises with wild yeast and needs a long fermentation.",
         "metadata": {"topic": "food", "year": 2023}},
        {"id": "empty.txt", "text": "   "},
    ]})
}

#[tokio::test]
async fn collections_ingest_search_answer_and_restart() {
    let Some(models) = models_dir() else { return };
    let data = data_dir("rag-api");
    let server = start(state(&models, &data, false, &[]).await).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let c = format!("{base}/v1/rag/collections");

    // Collections: create, validation, conflict.
    let (s, b) = post(
        &http,
        c.clone(),
        json!({"name": "handbook", "description": "Docs"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["id"], "handbook");
    assert_eq!(b["document_count"], 0);
    let (s, b) = post(&http, c.clone(), json!({"name": "handbook"})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("conflict")));
    for bad in [
        json!({"name": "Bad Name"}),
        json!({"name": ""}),
        json!({"name": "x", "extra": 1}),
        json!({"nom": "x"}),
    ] {
        let (s, b) = post(&http, c.clone(), bad.clone()).await;
        assert_eq!(s, 400, "{bad} -> {b}");
        assert_eq!(b["error"]["code"], "invalid_input");
    }
    let resp = http
        .post(c.clone())
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (s, b) = get(&http, format!("{c}/nope")).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));

    // JSON ingest: per-document results, a failed document does not fail the batch.
    let (s, b) = post(&http, format!("{c}/handbook/documents"), docs()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (
            b["indexed"].as_u64(),
            b["unchanged"].as_u64(),
            b["failed"].as_u64()
        ),
        (Some(2), Some(0), Some(1)),
        "{b}"
    );
    assert_eq!(b["results"][0]["status"], "indexed");
    assert!(b["results"][0]["chunks"].as_u64().unwrap() >= 1);
    assert_eq!(b["results"][2]["document_id"], "empty.txt");
    assert_eq!(b["results"][2]["status"], "failed");
    assert_eq!(b["results"][2]["error"]["failure"], "empty");
    assert_eq!(b["results"][2]["error"]["code"], "invalid_input");
    // Same content again: unchanged.
    let (_, b) = post(&http, format!("{c}/handbook/documents"), docs()).await;
    assert_eq!(
        (b["indexed"].as_u64(), b["unchanged"].as_u64()),
        (Some(0), Some(2)),
        "{b}"
    );
    // Nothing stored at all is no success: 400 naming the first failure, nothing registered.
    let only_failures = json!({"documents": [
        {"id": "empty-1", "text": "   "},
        {"id": "binary-1", "text": "\u{1}\u{2}\u{3}\u{4}"}
    ]});
    let (s, b) = post(&http, format!("{c}/handbook/documents"), only_failures).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["param"], "documents", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("all 2 documents failed"),
        "{b}"
    );
    let (s, _) = get(&http, format!("{c}/handbook/documents/empty-1")).await;
    assert_eq!(s, 404);
    // Request-level validation.
    for (bad, param) in [
        (json!({"documents": []}), "documents"),
        (
            json!({"documents": [{"id": "a", "text": "x", "metadata": {"title": "t"}}]}),
            "documents[0].metadata",
        ),
        (
            json!({"documents": [{"id": "a", "text": "x", "metadata": {"nested": {"a": 1}}}]}),
            "documents[0].metadata",
        ),
        (
            json!({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}),
            "documents[1].id",
        ),
        (
            json!({"documents": [{"id": "", "text": "x"}]}),
            "documents[0].id",
        ),
    ] {
        let (s, b) = post(&http, format!("{c}/handbook/documents"), bad.clone()).await;
        assert_eq!(s, 400, "{bad} -> {b}");
        assert_eq!(b["error"]["param"], param, "{b}");
    }
    let (s, _) = post(&http, format!("{c}/nope/documents"), docs()).await;
    assert_eq!(s, 404);

    // Multipart upload: markdown, HTML, a real PDF, a broken PDF; metadata for all.
    let form = Form::new()
        .part("file", Part::bytes(b"# Wind\n\nWind turbines convert moving air into electricity.".to_vec()).file_name("wind.md"))
        .part("file", Part::bytes(b"<html><head><title>Tides</title></head><body><h1>Tides</h1><p>Tidal power uses the moon's pull on the oceans.</p></body></html>".to_vec()).file_name("tides.html"))
        .part("file", Part::bytes(tiny_pdf("Geothermal plants tap heat from deep underground")).file_name("geo.pdf"))
        .part("file", Part::bytes(b"%PDF-1.4 garbage".to_vec()).file_name("broken.pdf"))
        .text("metadata", r#"{"topic": "energy", "source": "upload"}"#);
    let resp = http
        .post(format!("{c}/handbook/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(
        (b["indexed"].as_u64(), b["failed"].as_u64()),
        (Some(3), Some(1)),
        "{b}"
    );
    assert_eq!(b["results"][3]["error"]["failure"], "broken_pdf");
    // Multipart validation: no files, unknown field, bad metadata, not multipart.
    let form = Form::new().text("metadata", "{}");
    let resp = http
        .post(format!("{c}/handbook/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let form = Form::new().text("other", "x");
    let resp = http
        .post(format!("{c}/handbook/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let form = Form::new()
        .part("file", Part::bytes(b"x".to_vec()).file_name("a.txt"))
        .text("metadata", "[1]");
    let resp = http
        .post(format!("{c}/handbook/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["param"],
        "metadata"
    );
    let resp = http
        .post(format!("{c}/handbook/files"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Documents: list (paged), get, and the collection's counts.
    let (s, b) = get(&http, format!("{c}/handbook/documents?limit=2")).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    assert_eq!(b["has_more"], true);
    let last = b["data"][1]["id"].as_str().unwrap().to_owned();
    let (_, b) = get(
        &http,
        format!("{c}/handbook/documents?limit=10&after={last}"),
    )
    .await;
    assert_eq!(b["data"].as_array().unwrap().len(), 3, "{b}");
    assert_eq!(b["has_more"], false);
    let (s, b) = get(&http, format!("{c}/handbook/documents/geo.pdf")).await;
    assert_eq!(s, 200);
    assert_eq!(b["format"], "pdf");
    assert_eq!(b["metadata"]["source"], "upload");
    assert_eq!(b["content_hash"].as_str().unwrap().len(), 64);
    let (s, _) = get(&http, format!("{c}/handbook/documents?limit=0")).await;
    assert_eq!(s, 400);
    let (_, b) = get(&http, format!("{c}/handbook")).await;
    assert_eq!(b["document_count"], 5);
    assert!(b["chunk_count"].as_i64().unwrap() >= 5);

    // Search: hybrid (default), dense, keyword, with a metadata filter.
    let search = format!("{c}/handbook/search");
    let (s, b) = post(
        &http,
        search.clone(),
        json!({"query": "sunlight photovoltaic", "top_k": 2}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"][0]["document_id"], "solar.md", "{b}");
    let (_, b) = post(
        &http,
        search.clone(),
        json!({"query": "wild yeast fermentation", "mode": "dense", "top_k": 1}),
    )
    .await;
    assert_eq!(b["data"][0]["document_id"], "bread.txt", "{b}");
    let (_, b) = post(
        &http,
        search.clone(),
        json!({"query": "geothermal", "mode": "keyword"}),
    )
    .await;
    assert_eq!(b["data"][0]["document_id"], "geo.pdf", "{b}");
    let (_, b) = post(&http, search.clone(), json!({"query": "electricity", "top_k": 10, "filter": {"eq": {"key": "source", "value": "upload"}}})).await;
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["document_id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.is_empty()
            && ids
                .iter()
                .all(|i| ["wind.md", "tides.html", "geo.pdf"].contains(i)),
        "{ids:?}"
    );
    let (_, b) = post(&http, search.clone(), json!({"query": "bread", "top_k": 10, "filter": {"not": {"eq": {"key": "topic", "value": "food"}}}})).await;
    assert!(
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["document_id"] != "bread.txt"),
        "{b}"
    );
    let (s, b) = post(
        &http,
        search.clone(),
        json!({"query": "sunlight photovoltaic", "mode": "hybrid_weighted", "top_k": 2}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"][0]["document_id"], "solar.md", "{b}");

    // Diversity: two copies of one text crowd the top 2 unless MMR makes room for another.
    let (s, b) = post(
        &http,
        format!("{c}/handbook/documents"),
        json!({"documents": [
            {"id": "tidal-a.md", "text": "Tidal barrages hold back the sea at high tide and release it through turbines."},
            {"id": "tidal-b.md", "text": "Tidal barrages hold back the sea at high tide and release it through turbines."},
        ]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let top2 = |b: &Value| {
        let mut ids: Vec<String> = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["document_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let query = "tidal barrages release the sea through turbines";
    let (_, b) = post(
        &http,
        search.clone(),
        json!({"query": query, "mode": "dense", "top_k": 2}),
    )
    .await;
    assert_eq!(top2(&b), ["tidal-a.md", "tidal-b.md"], "{b}");
    let (s, b) = post(
        &http,
        search.clone(),
        json!({"query": query, "mode": "dense", "top_k": 2, "diversity": 0.5}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let ids = top2(&b);
    assert_eq!(ids.len(), 2, "{b}");
    assert!(
        ids.iter().filter(|i| i.starts_with("tidal-")).count() == 1,
        "one copy gives way: {b}"
    );
    for id in ["tidal-a.md", "tidal-b.md"] {
        let resp = http
            .delete(format!("{c}/handbook/documents/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    for bad in [
        json!({"query": "x", "diversity": 1.5}),
        json!({"query": "x", "diversity": -0.1}),
    ] {
        let (s, b) = post(&http, search.clone(), bad.clone()).await;
        assert_eq!(
            (s, b["error"]["param"].as_str()),
            (400, Some("diversity")),
            "{bad} -> {b}"
        );
    }
    for bad in [
        json!({"query": ""}),
        json!({"query": "x", "top_k": 0}),
        json!({"query": "x", "top_k": 101}),
        json!({"query": "x", "mode": "fuzzy"}),
        json!({"query": "x", "filter": {"like": 1}}),
        json!({"query": "x", "filter": {"eq": {"key": "bad key!", "value": 1}}}),
    ] {
        let (s, b) = post(&http, search.clone(), bad.clone()).await;
        assert_eq!(s, 400, "{bad} -> {b}");
    }

    // Answer (JSON): cited sources come from the collection; unknown model is 404.
    let answer = format!("{c}/handbook/answer");
    let (s, b) = post(
        &http,
        answer.clone(),
        json!({"question": "How do solar panels make electricity?", "top_k": 2, "max_tokens": 16}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["object"], "rag.answer");
    assert_eq!(b["model"], "smollm2-135m-instruct");
    assert!(!b["answer"].as_str().unwrap().is_empty());
    let sources = b["sources"].as_array().unwrap();
    assert!(!sources.is_empty() && sources.len() <= 2);
    assert_eq!(sources[0]["number"], 1);
    assert_eq!(sources[0]["document_id"], "solar.md", "{b}");
    for cited in b["citations"].as_array().unwrap() {
        assert!(sources.contains(cited), "a citation is one of the sources");
    }
    assert!(b["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let (s, b) = post(
        &http,
        answer.clone(),
        json!({"question": "x", "model": "no-such-model"}),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("model")));
    let (s, _) = post(&http, answer.clone(), json!({"question": " "})).await;
    assert_eq!(s, 400);

    // Answer (SSE): sources, deltas, done; the done text is the concatenated deltas (citation-checked).
    let resp = http.post(answer.clone()).json(&json!({"question": "What do wind turbines do?", "top_k": 1, "max_tokens": 12, "stream": true})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&resp.text().await.unwrap());
    assert_eq!(events[0].0, "sources");
    assert!(!events[0].1["sources"].as_array().unwrap().is_empty());
    let (last_name, done) = events.last().unwrap();
    assert_eq!(last_name, "done", "{events:?}");
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert!(events.iter().filter(|(n, _)| n == "delta").count() >= 1);
    if done["invalid_citations"].as_array().unwrap().is_empty() {
        assert_eq!(done["answer"].as_str().unwrap(), deltas);
    }
    assert_eq!(done["sources"], events[0].1["sources"]);

    // Delete a document: gone from the registry and from search.
    let resp = http
        .delete(format!("{c}/handbook/documents/bread.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let b: Value = resp.json().await.unwrap();
    assert!(b["chunks_removed"].as_u64().unwrap() >= 1);
    let (s, _) = get(&http, format!("{c}/handbook/documents/bread.txt")).await;
    assert_eq!(s, 404);
    let resp = http
        .delete(format!("{c}/handbook/documents/bread.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (_, b) = post(
        &http,
        search.clone(),
        json!({"query": "sourdough yeast", "mode": "keyword"}),
    )
    .await;
    assert!(b["data"].as_array().unwrap().is_empty(), "{b}");

    // Restart: a new server over the same data folder sees the collection, documents and index.
    drop(http);
    server.stop().await;
    let http = reqwest::Client::new();
    let base2 = serve(state(&models, &data, false, &[]).await).await;
    let c2 = format!("{base2}/v1/rag/collections");
    let (_, b) = get(&http, c2.clone()).await;
    assert_eq!(b["data"][0]["id"], "handbook");
    assert_eq!(b["data"][0]["document_count"], 4);
    let (_, b) = post(
        &http,
        format!("{c2}/handbook/search"),
        json!({"query": "tidal moon oceans", "top_k": 1}),
    )
    .await;
    assert_eq!(b["data"][0]["document_id"], "tides.html", "{b}");
    let (_, b) = post(&http, format!("{c2}/handbook/documents"), docs()).await;
    assert_eq!(
        (b["indexed"].as_u64(), b["unchanged"].as_u64()),
        (Some(1), Some(1)),
        "bread re-indexed, solar unchanged: {b}"
    );

    // Delete the collection: its data goes with it.
    let resp = http.delete(format!("{c2}/handbook")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (s, _) = get(&http, format!("{c2}/handbook")).await;
    assert_eq!(s, 404);
    assert!(!data.join("rag").join("t_default").join("handbook").exists());
    let _ = std::fs::remove_dir_all(&data);
}

/// A worker killed after storing a document's chunks but before recording the document left a
/// record with `chunks: 0` (or none) on redelivery, which re-ingesting never repaired. The record
/// now follows what is stored: the redelivered (unchanged) ingest repairs it.
#[tokio::test]
async fn a_record_a_crash_left_wrong_is_repaired_by_the_redelivery() {
    let Some(models) = models_dir() else { return };
    let data = data_dir("rag-repair");
    let server = start(state(&models, &data, false, &[]).await).await;
    let http = reqwest::Client::new();
    let c = format!("{}/v1/rag/collections", server.base);
    let (s, b) = post(&http, c.clone(), json!({"name": "kb"})).await;
    assert_eq!(s, 201, "{b}");
    let long: String = (0..60)
        .map(|i| format!("Paragraph {i} is about solar panels, inverters and batteries. "))
        .collect::<Vec<_>>()
        .join("\n\n");
    let body = json!({"documents": [
        {"id": "a.md", "text": long},
        {"id": "b.md", "text": "Sourdough needs a long fermentation."},
    ]});
    let (s, b) = post(&http, format!("{c}/kb/documents"), body.clone()).await;
    assert_eq!((s, b["indexed"].as_u64()), (200, Some(2)), "{b}");
    let stored = b["results"][0]["chunks"].as_i64().unwrap();
    assert!(stored > 1, "{b}");
    let (_, before) = get(&http, format!("{c}/kb")).await;

    // What the crash left: a.md recorded with no chunks, b.md not recorded at all.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("wattos.db").display()))
        .await
        .unwrap();
    sqlx::query("UPDATE wattos_rag_documents SET chunks = 0 WHERE id = 'a.md'")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM wattos_rag_documents WHERE id = 'b.md'")
        .execute(&db)
        .await
        .unwrap();
    let (_, broken) = get(&http, format!("{c}/kb/documents/a.md")).await;
    assert_eq!(broken["chunks"], 0);

    // The redelivery: the same content again, unchanged, and the records are repaired.
    let (s, b) = post(&http, format!("{c}/kb/documents"), body).await;
    assert_eq!((s, b["unchanged"].as_u64()), (200, Some(2)), "{b}");
    let (_, a) = get(&http, format!("{c}/kb/documents/a.md")).await;
    assert_eq!(a["chunks"].as_i64(), Some(stored), "{a}");
    let (s, _) = get(&http, format!("{c}/kb/documents/b.md")).await;
    assert_eq!(s, 200);
    let (_, after) = get(&http, format!("{c}/kb")).await;
    assert_eq!(after["chunk_count"], before["chunk_count"], "{after}");
    assert_eq!(after["document_count"], 2);
    db.close().await;
    server.stop().await;
}

#[tokio::test]
async fn tenants_cannot_see_each_others_collections_and_roles_apply() {
    let Some(models) = models_dir() else { return };
    let data = data_dir("rag-tenancy");
    let base = serve(
        state(
            &models,
            &data,
            true,
            &[("WATTOS_MODELS__LOCAL_CHAT", "false")],
        )
        .await,
    )
    .await;
    let http = reqwest::Client::new();
    let admin = jwt("platform", &["platform_admin"]);
    for t in ["acme", "globex"] {
        let resp = http
            .post(format!("{base}/v1/admin/tenants"))
            .bearer_auth(&admin)
            .json(&json!({"id": t, "name": t}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let acme = jwt("acme", &["developer"]);
    let globex = jwt("globex", &["developer"]);
    let c = format!("{base}/v1/rag/collections");

    // Without credentials: 401.
    assert_eq!(http.get(c.clone()).send().await.unwrap().status(), 401);

    let resp = http
        .post(c.clone())
        .bearer_auth(&acme)
        .json(&json!({"name": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = http.post(format!("{c}/secret/documents")).bearer_auth(&acme)
        .json(&json!({"documents": [{"id": "plan.txt", "text": "The acquisition target is Initech."}]})).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // globex sees nothing of acme's, and may create its own collection of the same name.
    let list: Value = http
        .get(c.clone())
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));
    for (method, url, body) in [
        ("GET", format!("{c}/secret"), None),
        ("GET", format!("{c}/secret/documents"), None),
        ("GET", format!("{c}/secret/documents/plan.txt"), None),
        (
            "POST",
            format!("{c}/secret/search"),
            Some(json!({"query": "acquisition"})),
        ),
        (
            "POST",
            format!("{c}/secret/documents"),
            Some(json!({"documents": [{"id": "x", "text": "y"}]})),
        ),
        ("DELETE", format!("{c}/secret/documents/plan.txt"), None),
        ("DELETE", format!("{c}/secret"), None),
    ] {
        let mut req = http
            .request(method.parse().unwrap(), &url)
            .bearer_auth(&globex);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404, "{method} {url}");
    }
    let resp = http
        .post(c.clone())
        .bearer_auth(&globex)
        .json(&json!({"name": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let b: Value = http
        .post(format!("{c}/secret/search"))
        .bearer_auth(&globex)
        .json(&json!({"query": "acquisition"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        b["data"],
        json!([]),
        "globex's own collection of the same name is empty"
    );
    let b: Value = http
        .post(format!("{c}/secret/search"))
        .bearer_auth(&acme)
        .json(&json!({"query": "acquisition"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["data"][0]["document_id"], "plan.txt");

    // A viewer may search but not ingest or create.
    let viewer = jwt("acme", &["viewer"]);
    let resp = http
        .post(format!("{c}/secret/search"))
        .bearer_auth(&viewer)
        .json(&json!({"query": "acquisition"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .post(c.clone())
        .bearer_auth(&viewer)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );
    let resp = http
        .delete(format!("{c}/secret"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Without a chat model the answer endpoint says so (503), it does not fail.
    let resp = http
        .post(format!("{c}/secret/answer"))
        .bearer_auth(&acme)
        .json(&json!({"question": "target?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let _ = std::fs::remove_dir_all(&data);
}
