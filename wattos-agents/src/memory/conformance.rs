//! Behaviour every [`MemoryStore`] must have; call these from an implementation's tests.
//!
//! * [`check`]: round trip, replace, namespaces (users, paths, tenants), metadata filters, paging,
//!   forget, forget-user, TTL expiry and purge. Works with or without a semantic index.
//! * [`check_semantic`]: with a real embedding model behind a [`super::MemoryIndex`], paraphrases
//!   find their memory ahead of distractors that share the query's words.
//! * [`write_durable`] / [`check_durable`]: what one instance wrote, a reopened one reads.

use std::time::Duration;

use serde_json::json;
use wattos_core::vector_store::Filter;
use wattos_core::{Error, RequestContext, Result, TenantId};

use super::store::{MatchKind, MemoryQuery, MemoryStore, Namespace, NewMemory};

fn ensure(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::internal(format!("memory store conformance: {what}")))
    }
}

fn tenant(run: &str, which: &str) -> Result<RequestContext> {
    Ok(RequestContext::system(TenantId::new(format!(
        "memconf-{which}-{run}"
    ))?))
}

/// Checks the store's behaviour in tenants derived from `run` (use a fresh value per run, such as a
/// UUID, so runs against a shared database do not meet).
///
/// # Errors
/// The first violated expectation, or a storage error.
pub async fn check(store: &dyn MemoryStore, run: &str) -> Result<()> {
    let a = tenant(run, "a")?;
    let b = tenant(run, "b")?;
    let ann = Namespace::new("ann", ["prefs"])?;
    let ann_food = ann.child("food")?;
    let ann_root = Namespace::user("ann")?;
    let bob = Namespace::new("bob", ["prefs"])?;

    // Round trip.
    let tea = store
        .put(
            &a,
            &ann,
            NewMemory::new("Ann drinks green tea every morning").with_meta("kind", "drink"),
        )
        .await?;
    ensure(
        store.get(&a, &ann, &tea.id).await?.as_ref() == Some(&tea),
        "get returns what put stored",
    )?;
    ensure(tea.namespace == ann, "the memory records its namespace")?;
    let oslo = store
        .put(
            &a,
            &ann_food,
            NewMemory::new("Ann is allergic to peanuts")
                .with_id("allergy")
                .with_meta("kind", "health"),
        )
        .await?;
    ensure(oslo.id == "allergy", "a caller-chosen id is kept")?;
    store
        .put(&a, &bob, NewMemory::new("Bob drinks black coffee"))
        .await?;
    store
        .put(
            &b,
            &ann,
            NewMemory::new("Other tenant's Ann drinks tea too"),
        )
        .await?;

    // Replace by id keeps created_ms, updates text and metadata.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let replaced = store
        .put(
            &a,
            &ann_food,
            NewMemory::new("Ann is allergic to peanuts and shellfish")
                .with_id("allergy")
                .with_meta("kind", "health")
                .with_meta("severity", 3),
        )
        .await?;
    let got = store.get(&a, &ann_food, "allergy").await?;
    ensure(
        got.as_ref()
            .is_some_and(|m| m.text.ends_with("shellfish") && m.created_ms == oslo.created_ms),
        "replacing keeps created_ms and stores the new text",
    )?;
    ensure(
        replaced.updated_ms >= oslo.updated_ms,
        "replacing advances updated_ms",
    )?;
    ensure(
        store.get(&a, &ann, "allergy").await?.is_none(),
        "ids are per namespace",
    )?;

    // Listing: prefix semantics, newest first, never another user or tenant.
    let all = store.list(&a, &ann_root, &MemoryQuery::default()).await?;
    ensure(all.len() == 2, "the user's root lists every path below it")?;
    ensure(all[0].id == "allergy", "lists are newest first")?;
    let food = store.list(&a, &ann_food, &MemoryQuery::default()).await?;
    ensure(
        food.len() == 1 && food[0].id == "allergy",
        "a deeper prefix lists only below it",
    )?;
    let prefs_only = store.list(&a, &ann, &MemoryQuery::default()).await?;
    ensure(prefs_only.len() == 2, "a prefix includes its children")?;
    let sibling = Namespace::new("ann", ["pref"])?;
    ensure(
        store
            .list(&a, &sibling, &MemoryQuery::default())
            .await?
            .is_empty(),
        "a path prefix is a segment prefix, not a string prefix",
    )?;
    ensure(
        store
            .list(&a, &Namespace::user("bob")?, &MemoryQuery::default())
            .await?
            .len()
            == 1,
        "bob sees only his own",
    )?;
    let other = store.list(&b, &ann_root, &MemoryQuery::default()).await?;
    ensure(
        other.len() == 1 && other[0].text.starts_with("Other tenant"),
        "tenants are apart",
    )?;
    ensure(
        store.get(&b, &ann, &tea.id).await?.is_none(),
        "get does not cross tenants",
    )?;
    let page = store
        .list(&a, &ann_root, &MemoryQuery::top(1).with_offset(1))
        .await?;
    ensure(
        page.len() == 1 && page[0].id == tea.id,
        "offset and limit page",
    )?;

    // Metadata filters.
    let drinks = store
        .list(
            &a,
            &ann_root,
            &MemoryQuery::default().with_filter(Filter::eq("kind", "drink")),
        )
        .await?;
    ensure(
        drinks.len() == 1 && drinks[0].id == tea.id,
        "list filters by metadata",
    )?;
    let hits = store
        .search(
            &a,
            &ann_root,
            "what does Ann drink",
            &MemoryQuery::default().with_filter(Filter::eq("kind", "health")),
        )
        .await?;
    ensure(
        hits.iter().all(|h| h.memory.id == "allergy"),
        "search filters by metadata",
    )?;
    ensure(
        store
            .put(
                &a,
                &ann,
                NewMemory::new("x").with_meta("wattos_mem.user", "bob"),
            )
            .await
            .is_err(),
        "reserved metadata keys are rejected",
    )?;
    ensure(
        store.put(&a, &ann, NewMemory::new("  ")).await.is_err(),
        "empty text is rejected",
    )?;

    // Search stays inside the namespace and the tenant.
    let hits = store
        .search(&a, &ann_root, "green tea", &MemoryQuery::top(5))
        .await?;
    ensure(
        hits.first().is_some_and(|h| h.memory.id == tea.id),
        "search finds the matching memory first",
    )?;
    ensure(
        hits.iter()
            .all(|h| h.memory.namespace.user_id() == "ann" && !h.memory.text.contains("Other")),
        "search never returns another user's or tenant's memories",
    )?;
    let bob_hits = store
        .search(
            &a,
            &Namespace::user("bob")?,
            "green tea",
            &MemoryQuery::top(5),
        )
        .await?;
    ensure(
        bob_hits
            .iter()
            .all(|h| h.memory.namespace.user_id() == "bob"),
        "bob's search sees only bob's memories",
    )?;

    // TTL: expired memories vanish from get, list and search at once; purge reclaims them.
    let brief = store
        .put(
            &a,
            &ann,
            NewMemory::new("Ann's parking spot today is B12 green level")
                .with_ttl(Duration::from_millis(1000)),
        )
        .await?;
    ensure(brief.expires_ms.is_some(), "a TTL sets expires_ms")?;
    ensure(
        store.get(&a, &ann, &brief.id).await?.is_some(),
        "a memory is there before its TTL",
    )?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    ensure(
        store.get(&a, &ann, &brief.id).await?.is_none(),
        "an expired memory is gone from get",
    )?;
    ensure(
        store
            .list(&a, &ann_root, &MemoryQuery::default())
            .await?
            .iter()
            .all(|m| m.id != brief.id),
        "an expired memory is gone from list",
    )?;
    ensure(
        store
            .search(&a, &ann_root, "parking spot B12", &MemoryQuery::top(5))
            .await?
            .iter()
            .all(|h| h.memory.id != brief.id),
        "an expired memory is gone from search",
    )?;
    ensure(
        store.purge_expired(&a).await? >= 1,
        "purge deletes expired memories",
    )?;
    ensure(store.purge_expired(&a).await? == 0, "purge is idempotent")?;

    // Forget one, then a whole user.
    ensure(
        store.forget(&a, &ann, &tea.id).await?,
        "forget reports it existed",
    )?;
    ensure(
        !store.forget(&a, &ann, &tea.id).await?,
        "forget is idempotent",
    )?;
    ensure(
        store.get(&a, &ann, &tea.id).await?.is_none(),
        "a forgotten memory is gone",
    )?;
    ensure(
        store
            .search(&a, &ann_root, "green tea", &MemoryQuery::top(5))
            .await?
            .iter()
            .all(|h| h.memory.id != tea.id),
        "a forgotten memory is not found",
    )?;
    ensure(
        store.forget_user(&a, "ann").await? == 1,
        "forget_user deletes the user's memories",
    )?;
    ensure(
        store
            .list(&a, &ann_root, &MemoryQuery::default())
            .await?
            .is_empty(),
        "nothing of the user is left",
    )?;
    ensure(
        store
            .list(&a, &Namespace::user("bob")?, &MemoryQuery::default())
            .await?
            .len()
            == 1,
        "forget_user leaves other users alone",
    )?;
    ensure(
        store
            .list(&b, &ann_root, &MemoryQuery::default())
            .await?
            .len()
            == 1,
        "forget_user leaves other tenants alone",
    )?;
    store.forget_user(&a, "bob").await?;
    store.forget_user(&b, "ann").await?;
    Ok(())
}

/// The memories [`check_semantic`] stores, each with a paraphrased query that shares no content
/// word with it, and distractors that share the query's words but mean something else.
pub const SEMANTIC_CASES: &[(&str, &str, &[&str])] = &[
    (
        "The user is vegetarian and never eats meat.",
        "what diet does she follow",
        &[
            "She does follow the news every morning.",
            "What she does on weekends is follow hiking trails.",
        ],
    ),
    (
        "My daughter starts primary school in September.",
        "when does my kid begin class",
        &[
            "When does the class begin? My class begins when the bell rings.",
            "My kid brother does not begin anything on time.",
        ],
    ),
    (
        "I am allergic to penicillin.",
        "which medicines should doctors avoid giving me",
        &[
            "Doctors should avoid giving me long waits.",
            "Which doctors are giving talks is something I avoid.",
        ],
    ),
];

/// Checks that each paraphrase of [`SEMANTIC_CASES`] finds its memory first, ahead of distractors
/// that share its words (which keyword ranking puts first), using tenant `run`.
///
/// # Errors
/// The first case ranked wrongly, a hit not marked [`MatchKind::Semantic`], or a storage error.
pub async fn check_semantic(store: &dyn MemoryStore, run: &str) -> Result<()> {
    let ctx = tenant(run, "sem")?;
    let ns = Namespace::new("carol", ["facts"])?;
    for (fact, _, distractors) in SEMANTIC_CASES {
        store.put(&ctx, &ns, NewMemory::new(*fact)).await?;
        for d in *distractors {
            store.put(&ctx, &ns, NewMemory::new(*d)).await?;
        }
    }
    for (fact, query, _) in SEMANTIC_CASES {
        let hits = store
            .search(
                &ctx,
                &Namespace::user("carol")?,
                query,
                &MemoryQuery::top(3),
            )
            .await?;
        let top = hits.first().map(|h| h.memory.text.as_str());
        ensure(
            top == Some(*fact),
            &format!("{query:?} should find {fact:?} first, got {top:?}"),
        )?;
        ensure(
            hits.iter().all(|h| h.matched_by == MatchKind::Semantic),
            "hits come from the semantic index",
        )?;
    }
    store.forget_user(&ctx, "carol").await?;
    Ok(())
}

/// Writes memories for [`check_durable`] in tenant `run`.
///
/// # Errors
/// Storage errors.
pub async fn write_durable(store: &dyn MemoryStore, run: &str) -> Result<()> {
    let ctx = tenant(run, "dur")?;
    let ns = Namespace::new("dave", ["notes"])?;
    store
        .put(
            &ctx,
            &ns,
            NewMemory::new("Dave's cat is called Miso")
                .with_id("cat")
                .with_meta("pet", true),
        )
        .await?;
    store
        .put(
            &ctx,
            &ns,
            NewMemory::new("Dave prefers window seats on trains"),
        )
        .await?;
    Ok(())
}

/// Checks, on a reopened store, what [`write_durable`] wrote (get, list, search, filter), then
/// deletes it.
///
/// # Errors
/// The first violated expectation, or a storage error.
pub async fn check_durable(store: &dyn MemoryStore, run: &str) -> Result<()> {
    let ctx = tenant(run, "dur")?;
    let ns = Namespace::new("dave", ["notes"])?;
    let cat = store.get(&ctx, &ns, "cat").await?;
    ensure(
        cat.as_ref().is_some_and(|m| {
            m.text == "Dave's cat is called Miso" && m.metadata["pet"] == json!(true)
        }),
        "a reopened store reads what was written",
    )?;
    ensure(
        store
            .list(&ctx, &Namespace::user("dave")?, &MemoryQuery::default())
            .await?
            .len()
            == 2,
        "a reopened store lists what was written",
    )?;
    let hits = store
        .search(
            &ctx,
            &Namespace::user("dave")?,
            "what is the name of Dave's cat",
            &MemoryQuery::top(1),
        )
        .await?;
    ensure(
        hits.first().is_some_and(|h| h.memory.id == "cat"),
        "a reopened store searches what was written",
    )?;
    store.forget_user(&ctx, "dave").await?;
    Ok(())
}
