//! Append-only log of store operations with per-frame CRC32, fsynced before a write is
//! acknowledged. The snapshot file uses the same framing. A torn tail (crash mid-append) is detected
//! by length/CRC and truncated on open.
//!
//! Frame: `u32 len | u32 crc32(payload) | payload`, payload: `u32 json_len | json | f32 LE vectors`.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wattos_core::vector_store::VectorRecord;
use wattos_core::{Error, Result};

/// One logged operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Upsert {
        tenant: String,
        records: Vec<VectorRecord>,
    },
    Delete {
        tenant: String,
        ids: Vec<String>,
    },
    ReplaceDocument {
        tenant: String,
        document_id: String,
        records: Vec<VectorRecord>,
    },
}

#[derive(Serialize, Deserialize)]
struct RecordHeader {
    id: String,
    document_id: String,
    text: String,
    metadata: Map<String, Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Header {
    Upsert {
        tenant: String,
        records: Vec<RecordHeader>,
    },
    Delete {
        tenant: String,
        ids: Vec<String>,
    },
    ReplaceDocument {
        tenant: String,
        document_id: String,
        records: Vec<RecordHeader>,
    },
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::unavailable(format!("embedded store: {what}: {e}")).with_source(e)
}

fn split(records: &[VectorRecord]) -> (Vec<RecordHeader>, Vec<f32>) {
    let headers = records
        .iter()
        .map(|r| RecordHeader {
            id: r.id.clone(),
            document_id: r.document_id.clone(),
            text: r.text.clone(),
            metadata: r.metadata.clone(),
        })
        .collect();
    let vectors = records
        .iter()
        .flat_map(|r| r.vector.iter().copied())
        .collect();
    (headers, vectors)
}

pub(crate) fn encode(op: &Op) -> Result<Vec<u8>> {
    let (header, vectors) = match op {
        Op::Upsert { tenant, records } => {
            let (h, v) = split(records);
            (
                Header::Upsert {
                    tenant: tenant.clone(),
                    records: h,
                },
                v,
            )
        }
        Op::Delete { tenant, ids } => (
            Header::Delete {
                tenant: tenant.clone(),
                ids: ids.clone(),
            },
            Vec::new(),
        ),
        Op::ReplaceDocument {
            tenant,
            document_id,
            records,
        } => {
            let (h, v) = split(records);
            (
                Header::ReplaceDocument {
                    tenant: tenant.clone(),
                    document_id: document_id.clone(),
                    records: h,
                },
                v,
            )
        }
    };
    let json =
        serde_json::to_vec(&header).map_err(|e| Error::internal(format!("wal encode: {e}")))?;
    let mut payload = Vec::with_capacity(4 + json.len() + vectors.len() * 4);
    payload.extend_from_slice(
        &u32::try_from(json.len())
            .map_err(|_| Error::invalid_input("wal entry too large"))?
            .to_le_bytes(),
    );
    payload.extend_from_slice(&json);
    for x in vectors {
        payload.extend_from_slice(&x.to_le_bytes());
    }
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .map_err(|_| Error::invalid_input("wal entry too large"))?
            .to_le_bytes(),
    );
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

fn join(headers: Vec<RecordHeader>, vectors: &[f32], dims: usize) -> Option<Vec<VectorRecord>> {
    if vectors.len() != headers.len() * dims {
        return None;
    }
    Some(
        headers
            .into_iter()
            .zip(vectors.chunks_exact(dims.max(1)))
            .map(|(h, v)| VectorRecord {
                id: h.id,
                document_id: h.document_id,
                vector: v.to_vec(),
                text: h.text,
                metadata: h.metadata,
            })
            .collect(),
    )
}

fn decode(payload: &[u8], dims: usize) -> Option<Op> {
    let json_len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let json = payload.get(4..4 + json_len)?;
    let rest = payload.get(4 + json_len..)?;
    if rest.len() % 4 != 0 {
        return None;
    }
    let vectors: Vec<f32> = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let header: Header = serde_json::from_slice(json).ok()?;
    Some(match header {
        Header::Upsert { tenant, records } => Op::Upsert {
            tenant,
            records: join(records, &vectors, dims)?,
        },
        Header::Delete { tenant, ids } => Op::Delete { tenant, ids },
        Header::ReplaceDocument {
            tenant,
            document_id,
            records,
        } => Op::ReplaceDocument {
            tenant,
            document_id,
            records: join(records, &vectors, dims)?,
        },
    })
}

/// Reads every intact frame of `path`; returns the ops and the byte length of the intact prefix.
pub(crate) fn read_all(path: &Path, dims: usize) -> Result<(Vec<Op>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err("open log", e)),
    };
    let mut r = BufReader::new(file);
    let mut ops = Vec::new();
    let mut good = 0u64;
    loop {
        let mut head = [0u8; 8];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io_err("read log", e)),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            tracing::warn!(path = %path.display(), offset = good, "torn or corrupt log tail dropped");
            break;
        }
        let Some(op) = decode(&payload, dims) else {
            tracing::warn!(path = %path.display(), offset = good, "undecodable log entry; tail dropped");
            break;
        };
        ops.push(op);
        good += 8 + len as u64;
    }
    Ok((ops, good))
}

/// The open log file.
pub(crate) struct Wal {
    file: File,
    pub(crate) len: u64,
}

impl Wal {
    /// Opens (creating) the log and truncates it to `good_len` bytes.
    pub(crate) fn open(path: &Path, good_len: u64) -> Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err("open log", e))?;
        file.set_len(good_len)
            .map_err(|e| io_err("truncate log", e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| io_err("seek log", e))?;
        file.sync_all().map_err(|e| io_err("sync log", e))?;
        Ok(Self {
            file,
            len: good_len,
        })
    }

    /// Appends one frame and fsyncs it.
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<()> {
        self.file
            .write_all(frame)
            .map_err(|e| io_err("append log", e))?;
        self.file.sync_data().map_err(|e| io_err("sync log", e))?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Empties the log (after a snapshot made it redundant).
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(|e| io_err("truncate log", e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| io_err("seek log", e))?;
        self.file.sync_all().map_err(|e| io_err("sync log", e))?;
        self.len = 0;
        Ok(())
    }
}

/// Writes `frames` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(
    path: &Path,
    frames: impl Iterator<Item = Result<Vec<u8>>>,
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let file = File::create(&tmp).map_err(|e| io_err("create snapshot", e))?;
        let mut w = BufWriter::new(file);
        for frame in frames {
            w.write_all(&frame?)
                .map_err(|e| io_err("write snapshot", e))?;
        }
        let file = w
            .into_inner()
            .map_err(|e| io_err("flush snapshot", e.into_error()))?;
        file.sync_all().map_err(|e| io_err("sync snapshot", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_err("rename snapshot", e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("sync directory", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let ops = vec![
            Op::Upsert {
                tenant: "a".into(),
                records: vec![VectorRecord::new("x", "d", vec![1.0, 2.0], "t").with_meta("k", 1)],
            },
            Op::Delete {
                tenant: "a".into(),
                ids: vec!["x".into()],
            },
            Op::ReplaceDocument {
                tenant: "b".into(),
                document_id: "d".into(),
                records: vec![],
            },
        ];
        let mut wal = Wal::open(&path, 0).unwrap();
        for op in &ops {
            wal.append(&encode(op).unwrap()).unwrap();
        }
        let full = wal.len;
        // A torn append: half a frame.
        let frame = encode(&ops[0]).unwrap();
        wal.file.write_all(&frame[..frame.len() / 2]).unwrap();
        let (read, good) = read_all(&path, 2).unwrap();
        assert_eq!(read, ops);
        assert_eq!(good, full);
        // Reopening truncates the torn tail.
        let wal = Wal::open(&path, good).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), wal.len);
    }
}
