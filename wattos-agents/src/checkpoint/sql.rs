//! Row encoding shared by the SQL checkpointers.

use serde::{Deserialize, Serialize};
use wattos_core::checkpoint::{
    Checkpoint, CheckpointId, CheckpointSource, StateBlob, TaskRecord, ThreadId,
};
use wattos_core::{Error, Result};

use crate::error::GraphError;

#[derive(Serialize)]
struct BodyRef<'a> {
    next: &'a [TaskRecord],
    source: CheckpointSource,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    metadata: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Body {
    next: Vec<TaskRecord>,
    source: CheckpointSource,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// Everything but the state, as one JSON blob.
pub(crate) fn encode_body(c: &Checkpoint) -> Result<Vec<u8>> {
    serde_json::to_vec(&BodyRef {
        next: &c.next,
        source: c.source,
        metadata: &c.metadata,
    })
    .map_err(|e| Error::internal(format!("cannot encode checkpoint: {e}")))
}

pub(crate) struct Row {
    pub(crate) id: uuid::Uuid,
    pub(crate) parent: Option<uuid::Uuid>,
    pub(crate) step: i64,
    pub(crate) full: bool,
    pub(crate) state: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn decode_row(thread: &ThreadId, row: Row) -> Result<Checkpoint> {
    let body: Body = serde_json::from_slice(&row.body)
        .map_err(|e| GraphError::Corrupt(format!("checkpoint body: {e}")))?;
    Ok(Checkpoint {
        id: CheckpointId(row.id),
        thread: thread.clone(),
        parent: row.parent.map(CheckpointId),
        step: u64::try_from(row.step).map_err(|_| GraphError::Corrupt("negative step".into()))?,
        state: if row.full {
            StateBlob::Full(row.state)
        } else {
            StateBlob::Delta(row.state)
        },
        next: body.next,
        source: body.source,
        metadata: body.metadata,
    })
}

pub(crate) fn step_i64(step: u64) -> Result<i64> {
    i64::try_from(step).map_err(|_| Error::invalid_input("step number too large"))
}

/// Storage failures: the database is a dependency, so callers may retry.
pub(crate) fn db_err(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::unavailable(format!("checkpointer {op} failed: {e}")).with_source(e)
}

/// A SQL identifier we splice into statements (schema or table prefix).
pub(crate) fn check_ident(what: &str, ident: &str) -> Result<()> {
    let ok = !ident.is_empty()
        && ident.len() <= 40
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !ident.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            what,
            "must be 1-40 lowercase letters, digits or underscores, not starting with a digit",
        ))
    }
}
