//! Behaviour every [`Checkpointer`] must have; call [`check`] from an implementation's tests.
//!
//! It covers [`Checkpointer::put_step`] too (pending writes of several checkpoints and new checkpoints
//! in one batch), whether an implementation overrides it or keeps the default.

use wattos_core::checkpoint::{
    Checkpoint, CheckpointSource, CheckpointWrites, Checkpointer, PendingWrite, StateBlob,
    StepBatch, TaskRecord, ThreadId, WriteKind,
};
use wattos_core::{Error, RequestContext, Result, TenantId};

fn ensure(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::internal(format!("checkpointer conformance: {what}")))
    }
}

/// Checks ordering, round trips, pending writes, history, deletion and tenant isolation, on a thread
/// named `thread` (use a fresh name per run; it is deleted first).
///
/// # Errors
/// The first violated expectation, or a storage error.
pub async fn check(cp: &dyn Checkpointer, thread: &str) -> Result<()> {
    let a = RequestContext::system(TenantId::new("conformance-a")?);
    let b = RequestContext::system(TenantId::new("conformance-b")?);
    let t = ThreadId::new(thread)?;
    cp.delete_thread(&a, &t).await?;
    cp.delete_thread(&b, &t).await?;
    ensure(
        cp.get(&a, &t, None).await?.is_none(),
        "unknown thread has no checkpoint",
    )?;

    let mut first = Checkpoint::new(t.clone(), None, 0, StateBlob::Full(br#"{"n":1}"#.to_vec()));
    first.source = CheckpointSource::Input;
    first.next = vec![TaskRecord {
        id: "0:0".into(),
        node: "a".into(),
        input: Some(serde_json::json!({"x": 1})),
    }];
    first.metadata.insert("k".into(), "v".into());
    let mut second = Checkpoint::new(
        t.clone(),
        Some(first.id),
        1,
        StateBlob::Delta(b"[]".to_vec()),
    );
    second.next = vec![];
    cp.put_batch(&a, vec![first.clone(), second.clone()])
        .await?;
    // A fork written last is the latest even with a lower step.
    let fork = Checkpoint::new(
        t.clone(),
        Some(first.id),
        0,
        StateBlob::Full(b"{}".to_vec()),
    );
    cp.put(&a, fork.clone()).await?;

    ensure(
        cp.get(&a, &t, None).await? == Some(fork.clone()),
        "latest is the last written",
    )?;
    ensure(
        cp.get(&a, &t, Some(first.id)).await? == Some(first.clone()),
        "round trip by id",
    )?;
    ensure(
        cp.get(&a, &t, Some(second.id)).await? == Some(second.clone()),
        "delta round trip",
    )?;
    let history = cp.list(&a, &t, 10).await?;
    ensure(
        history.iter().map(|c| c.id).collect::<Vec<_>>() == [fork.id, second.id, first.id],
        "history is newest first",
    )?;
    ensure(
        cp.list(&a, &t, 1).await?.len() == 1,
        "history honours the limit",
    )?;

    let writes = vec![
        PendingWrite {
            task_id: "0:0".into(),
            kind: WriteKind::Output,
            payload: b"{}".to_vec(),
        },
        PendingWrite {
            task_id: "0:1".into(),
            kind: WriteKind::Interrupt,
            payload: b"1".to_vec(),
        },
    ];
    cp.put_writes(&a, &t, first.id, writes.clone()).await?;
    cp.put_writes(
        &a,
        &t,
        first.id,
        vec![PendingWrite {
            task_id: "0:1".into(),
            kind: WriteKind::Resume,
            payload: b"2".to_vec(),
        }],
    )
    .await?;
    let got = cp.get_writes(&a, &t, first.id).await?;
    ensure(
        got.len() == 3 && got[..2] == writes[..] && got[2].kind == WriteKind::Resume,
        "writes keep insertion order",
    )?;
    ensure(
        cp.get_writes(&a, &t, second.id).await?.is_empty(),
        "writes belong to one checkpoint",
    )?;

    // A step batch: writes of an existing checkpoint, of one stored in the same batch, and checkpoints.
    let third = Checkpoint::new(
        t.clone(),
        Some(second.id),
        2,
        StateBlob::Delta(br#"[{"n":1}]"#.to_vec()),
    );
    let fourth = Checkpoint::new(
        t.clone(),
        Some(third.id),
        3,
        StateBlob::Full(br#"{"n":2}"#.to_vec()),
    );
    let branch = |task: &str| PendingWrite {
        task_id: task.into(),
        kind: WriteKind::Output,
        payload: format!(r#"{{"task":"{task}"}}"#).into_bytes(),
    };
    cp.put_step(
        &a,
        StepBatch {
            writes: vec![
                CheckpointWrites {
                    thread: t.clone(),
                    checkpoint: second.id,
                    writes: vec![branch("1:0"), branch("1:1")],
                },
                CheckpointWrites {
                    thread: t.clone(),
                    checkpoint: third.id,
                    writes: vec![branch("2:0")],
                },
            ],
            checkpoints: vec![third.clone(), fourth.clone()],
        },
    )
    .await?;
    ensure(
        cp.get(&a, &t, None).await? == Some(fourth.clone()),
        "put_step: the batch's last checkpoint is the latest",
    )?;
    ensure(
        cp.get(&a, &t, Some(third.id)).await? == Some(third.clone()),
        "put_step: every checkpoint of the batch is stored",
    )?;
    ensure(
        cp.get_writes(&a, &t, second.id).await? == vec![branch("1:0"), branch("1:1")],
        "put_step: writes of an earlier checkpoint, in order",
    )?;
    ensure(
        cp.get_writes(&a, &t, third.id).await? == vec![branch("2:0")],
        "put_step: writes of a checkpoint stored in the same batch",
    )?;
    cp.put_step(&a, StepBatch::default()).await?;
    ensure(
        cp.list(&a, &t, 10).await?.len() == 5,
        "put_step: an empty batch stores nothing",
    )?;

    // Tenant isolation.
    ensure(
        cp.get(&b, &t, None).await?.is_none(),
        "other tenant sees no checkpoint",
    )?;
    ensure(
        cp.get(&b, &t, Some(first.id)).await?.is_none(),
        "other tenant cannot read by id",
    )?;
    ensure(
        cp.list(&b, &t, 10).await?.is_empty(),
        "other tenant sees no history",
    )?;
    ensure(
        cp.get_writes(&b, &t, first.id).await?.is_empty(),
        "other tenant sees no writes",
    )?;
    cp.delete_thread(&b, &t).await?;
    ensure(
        cp.get(&a, &t, None).await?.is_some(),
        "other tenant cannot delete",
    )?;

    cp.delete_thread(&a, &t).await?;
    ensure(cp.get(&a, &t, None).await?.is_none(), "deleted")?;
    ensure(
        cp.get_writes(&a, &t, first.id).await?.is_empty()
            && cp.get_writes(&a, &t, second.id).await?.is_empty(),
        "writes deleted",
    )?;
    Ok(())
}
