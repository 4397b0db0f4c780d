//! Conversations on SQLite (embedded) and Postgres (shared, `PG_TEST_URL`): totals, ordering,
//! tenant and user isolation, rename/list/delete/export, retention, reopen, history trimming.
#![allow(clippy::unwrap_used)]
#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::sync::Arc;

use wattos_agents::conversation::{
    ConversationStore, Conversations, ListOptions, NewConversation, NewMessage,
    SqlConversationStore, window_for_model,
};
use wattos_agents::memory::ConversationWindow;
use wattos_core::llm::{Message, Usage};
use wattos_core::tenancy::Retention;
use wattos_core::{ErrorKind, Principal, RequestContext, TenantId};

fn user(tenant: &str, subject: &str) -> RequestContext {
    RequestContext::new(
        TenantId::new(tenant).unwrap(),
        Principal::user(subject, ["member"]),
    )
}

fn usage(i: u64, o: u64) -> Usage {
    Usage {
        input_tokens: i,
        output_tokens: o,
        cached_input_tokens: 0,
    }
}

async fn conformance(store: Arc<dyn ConversationStore>, tenant: &str) {
    let alice = user(tenant, "alice");
    let bob = user(tenant, "bob");
    let other_tenant = user(&format!("{tenant}-other"), "alice");

    let c = store
        .create(
            &alice,
            NewConversation {
                title: Some("  Heat pumps ".into()),
                model: Some("gpt-4o-mini".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.title, "Heat pumps");
    assert_eq!(c.owner, "alice");
    let c = store
        .append(
            &alice,
            &c.id,
            vec![
                NewMessage::plain(Message::system("Be brief.")),
                NewMessage::plain(Message::user("What is a heat pump?")),
                NewMessage::answer(
                    Message::assistant("It moves heat."),
                    "gpt-4o",
                    usage(20, 5),
                    0.001,
                )
                .with_request_id("req-1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(c.message_count, 3);
    assert_eq!((c.input_tokens, c.output_tokens), (20, 5));
    assert_eq!(c.model.as_deref(), Some("gpt-4o"));
    let c = store
        .append(
            &alice,
            &c.id,
            vec![
                NewMessage::plain(Message::user("And in winter?")),
                NewMessage::answer(
                    Message::assistant("Still works."),
                    "gpt-4o",
                    usage(30, 4),
                    0.002,
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(c.message_count, 5);
    assert_eq!((c.input_tokens, c.output_tokens), (50, 9));
    assert!((c.cost_usd - 0.003).abs() < 1e-9);
    let msgs = store.messages(&alice, &c.id).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(msgs[2].request_id.as_deref(), Some("req-1"));
    assert_eq!(msgs[4].message, Message::assistant("Still works."));

    // Isolation: neither another tenant nor another user of the tenant can tell the thread exists:
    // both get exactly what a missing id gets.
    let absent = store.get(&alice, "no-such-thread").await.unwrap_err();
    assert_eq!(absent.kind(), ErrorKind::NotFound);
    for (ctx, kind) in [
        (&other_tenant, ErrorKind::NotFound),
        (&bob, ErrorKind::NotFound),
    ] {
        let e = store.get(ctx, &c.id).await.unwrap_err();
        assert_eq!(e.kind(), kind);
        assert_eq!(
            e.message(),
            absent.message().replace("no-such-thread", &c.id),
            "same message as a missing id"
        );
        assert_eq!(store.messages(ctx, &c.id).await.unwrap_err().kind(), kind);
        let e = store
            .append(ctx, &c.id, vec![NewMessage::plain(Message::user("hi"))])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind);
        assert_eq!(
            store.rename(ctx, &c.id, "x").await.unwrap_err().kind(),
            kind
        );
        assert_eq!(store.delete(ctx, &c.id).await.unwrap_err().kind(), kind);
        assert!(
            store
                .list(ctx, ListOptions::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(
        store.messages(&alice, &c.id).await.unwrap().len(),
        5,
        "writes were refused"
    );
    assert_eq!(
        store.get(&alice, "no-such-id").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Bad input.
    assert_eq!(
        store.rename(&alice, &c.id, "   ").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        store
            .append(&alice, &c.id, vec![])
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );

    // Rename, list (newest first, paged), export, delete.
    let renamed = store
        .rename(&alice, &c.id, "Heat pumps in winter")
        .await
        .unwrap();
    assert_eq!(renamed.title, "Heat pumps in winter");
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let second = store
        .create(&alice, NewConversation::default())
        .await
        .unwrap();
    assert_eq!(second.title, "New conversation");
    let list = store.list(&alice, ListOptions::default()).await.unwrap();
    assert_eq!(
        list.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [second.id.as_str(), c.id.as_str()]
    );
    let page2 = store
        .list(
            &alice,
            ListOptions {
                limit: 1,
                before_ms: Some(list[0].updated_ms),
            },
        )
        .await
        .unwrap();
    assert_eq!(page2.len(), 1);
    assert_eq!(page2[0].id, c.id);
    let conv = Conversations::new(store.clone());
    let export = conv.export(&alice, &c.id).await.unwrap();
    assert_eq!(export.messages.len(), 5);
    let json = serde_json::to_string(&export).unwrap();
    assert!(json.contains("Heat pumps in winter") && json.contains("Still works."));
    store.delete(&alice, &second.id).await.unwrap();
    assert_eq!(
        store.get(&alice, &second.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Retention: users may not purge; the system purges only what is older than the cutoff.
    let sys = RequestContext::system(TenantId::new(tenant).unwrap());
    assert_eq!(
        store
            .purge_before(&alice, i64::MAX)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
    let kept = conv
        .apply_retention(
            &sys,
            &Retention {
                data_days: Some(1),
                ..Retention::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(kept, 0);
    assert_eq!(
        conv.apply_retention(&sys, &Retention::default())
            .await
            .unwrap(),
        0
    );
    // The other tenant's thread survives a purge of everything in this tenant.
    let foreign = store
        .create(&other_tenant, NewConversation::default())
        .await
        .unwrap();
    assert_eq!(store.purge_before(&sys, i64::MAX).await.unwrap(), 1);
    assert_eq!(
        store.get(&alice, &c.id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(store.get(&other_tenant, &foreign.id).await.is_ok());
}

#[tokio::test]
async fn sqlite_conformance_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv.db");
    let store = Arc::new(
        SqlConversationStore::open_sqlite(&path, "wattos_")
            .await
            .unwrap(),
    );
    conformance(store, "sq").await;

    // Survives a restart: a new store over the same file continues the thread.
    let alice = user("sq2", "alice");
    let id = {
        let s = SqlConversationStore::open_sqlite(&path, "wattos_")
            .await
            .unwrap();
        let c = s.create(&alice, NewConversation::default()).await.unwrap();
        s.append(
            &alice,
            &c.id,
            vec![NewMessage::plain(Message::user("remember me"))],
        )
        .await
        .unwrap();
        c.id
    };
    let s = SqlConversationStore::open_sqlite(&path, "wattos_")
        .await
        .unwrap();
    let c = s
        .append(
            &alice,
            &id,
            vec![NewMessage::plain(Message::assistant("I do."))],
        )
        .await
        .unwrap();
    assert_eq!(c.message_count, 2);
    let msgs = s.messages(&alice, &id).await.unwrap();
    assert_eq!(msgs[0].message, Message::user("remember me"));
    assert!(
        SqlConversationStore::open_sqlite(&path, "Bad-Prefix")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn postgres_conformance() {
    let Ok(url) = std::env::var("PG_TEST_URL") else {
        wattos_core::test_utils::skip::skip(
            "Postgres conversation store",
            "PG_TEST_URL is not set",
        );
        return;
    };
    let prefix = format!("conv_{}_", std::process::id());
    let store = SqlConversationStore::connect_postgres(&url, &prefix)
        .await
        .unwrap();
    conformance(Arc::new(store.clone()), "pg").await;
    // Concurrent appends get distinct, consecutive sequence numbers.
    let alice = user("pg-conc", "alice");
    let c = store
        .create(&alice, NewConversation::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, a, id) = (store.clone(), alice.clone(), c.id.clone());
        tasks.push(tokio::spawn(async move {
            s.append(
                &a,
                &id,
                vec![NewMessage::plain(Message::user(format!("m{i}")))],
            )
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let msgs = store.messages(&alice, &c.id).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(&format!(
        "DROP TABLE {prefix}conversation_messages; DROP TABLE {prefix}conversations;"
    ))
    .execute(&pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn history_is_trimmed_to_the_model_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqlConversationStore::open_sqlite(dir.path().join("c.db"), "wattos_")
            .await
            .unwrap(),
    );
    let conv = Conversations::new(store.clone());
    let alice = user("trim", "alice");
    let c = store
        .create(&alice, NewConversation::default())
        .await
        .unwrap();
    let mut batch = vec![NewMessage::plain(Message::system("You are terse."))];
    for i in 0..40 {
        batch.push(NewMessage::plain(Message::user(format!(
            "question {i}: tell me about heat pumps and tariffs in some detail please"
        ))));
        batch.push(NewMessage::plain(Message::assistant(format!("answer {i}"))));
    }
    store.append(&alice, &c.id, batch).await.unwrap();
    let window = window_for_model(400, 100);
    assert_eq!(window.max_tokens(), 300);
    let history = conv.history(&alice, &c.id, &window).await.unwrap();
    assert_eq!(history[0], Message::system("You are terse."));
    assert_eq!(history.last().unwrap(), &Message::assistant("answer 39"));
    assert!(history.len() < 81 && history.len() > 3, "{}", history.len());
    assert!(window.count(&history) <= 300);
    // A big window keeps everything.
    let all = conv
        .history(&alice, &c.id, &ConversationWindow::new(1_000_000))
        .await
        .unwrap();
    assert_eq!(all.len(), 81);
    // Trimming applies the caller's access rules too: another user's thread is not found.
    assert_eq!(
        conv.history(&user("trim", "bob"), &c.id, &window)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}
