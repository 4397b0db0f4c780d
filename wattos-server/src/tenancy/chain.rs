//! The audit hash chain: `hash(n) = SHA-256(prev_hash_hex || seq_be || canonical_bytes(event))`.

use sha2::{Digest, Sha256};
use wattos_core::tenancy::{AuditEvent, AuditRecord, ChainReport};

/// The `prev_hash` of a chain's first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of the record at `seq` holding `event` after `prev_hash`.
pub fn link_hash(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(event.canonical_bytes());
    hex::encode(h.finalize())
}

/// Incremental verifier: feed records in ascending `seq`, then [`ChainVerifier::finish`] with the
/// stored chain head.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    checked: u64,
    broken: Option<(i64, String)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
            broken: None,
        }
    }
}

impl ChainVerifier {
    /// Checks the next record; the first break is kept.
    pub fn push(&mut self, rec: &AuditRecord) {
        if self.broken.is_some() {
            return;
        }
        self.checked += 1;
        let fail = if rec.seq != self.expected_seq {
            Some(format!(
                "expected seq {} but found {} (a record was deleted)",
                self.expected_seq, rec.seq
            ))
        } else if rec.prev_hash != self.prev_hash {
            Some("prev_hash does not match the previous record".to_owned())
        } else if link_hash(&rec.prev_hash, rec.seq, &rec.event) != rec.hash {
            Some("record content does not match its hash (edited)".to_owned())
        } else {
            None
        };
        if let Some(reason) = fail {
            self.broken = Some((self.expected_seq.min(rec.seq), reason));
            return;
        }
        self.expected_seq += 1;
        self.prev_hash.clone_from(&rec.hash);
    }

    /// Records that the stored row after the last pushed one cannot be read as a record (a column
    /// edited to a value of the wrong type): the chain is broken there. `seq` is the row's sequence
    /// number when that much could be read.
    pub fn push_unreadable(&mut self, seq: Option<i64>, why: &str) {
        if self.broken.is_some() {
            return;
        }
        self.checked += 1;
        let at = seq.map_or(self.expected_seq, |s| s.min(self.expected_seq));
        self.broken = Some((
            at,
            format!(
                "stored record cannot be read ({}): edited",
                wattos_core::error::quote(why)
            ),
        ));
    }

    /// Whether a break has been found (nothing after it is checked).
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Compares the end of the chain with the stored head (`None` when the tenant has no head).
    pub fn finish(self, head: Option<(i64, String)>) -> ChainReport {
        let mut broken = self.broken;
        if broken.is_none() {
            let last_seq = self.expected_seq - 1;
            let (head_seq, head_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
            if head_seq != last_seq || head_hash != self.prev_hash {
                broken = Some((
                    last_seq + 1,
                    format!(
                        "chain ends at seq {last_seq} but its head is at {head_seq} (records were deleted from the end)"
                    ),
                ));
            }
        }
        ChainReport {
            valid: broken.is_none(),
            checked: self.checked,
            broken_at: broken.as_ref().map(|b| b.0),
            reason: broken.map(|b| b.1),
        }
    }
}
