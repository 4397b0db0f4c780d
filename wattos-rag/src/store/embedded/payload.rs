//! Payload index of a partition: for every metadata key and scalar value, the slots that hold it.
//!
//! It turns a [`Filter`] into the exact set of matching slots without reading any record (set
//! algebra over postings), which gives the query planner the filter's cardinality before it
//! chooses between an exact scan of the matches and the code index. Values that are not indexed
//! (arrays, objects, null, strings over [`MAX_INDEXED_LEN`] bytes) make a filter that names them
//! unresolvable; the store then evaluates such a filter record by record, as before.

use std::collections::HashMap;

use serde_json::{Map, Value};
use wattos_core::vector_store::{DOCUMENT_ID_KEY, Filter};

use super::codes::SlotSet;

/// Longest string value indexed (longer ones are rare filter targets: titles, texts).
pub(crate) const MAX_INDEXED_LEN: usize = 256;

/// Postings lists longer than this become bitsets.
const FEW: usize = 256;

/// A scalar value as a hash key; numbers compare by value (`1 == 1.0`) as in [`Filter::matches`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    Str(String),
    Num(u64),
    Bool(bool),
}

fn value_key(v: &Value) -> Option<ValueKey> {
    match v {
        Value::String(s) if s.len() <= MAX_INDEXED_LEN => Some(ValueKey::Str(s.clone())),
        Value::Number(n) => n.as_f64().map(|f| {
            // -0.0 == 0.0 as in the filter's comparison.
            ValueKey::Num(if f == 0.0 { 0 } else { f.to_bits() })
        }),
        Value::Bool(b) => Some(ValueKey::Bool(*b)),
        _ => None,
    }
}

/// The slots holding one value: a sorted list while few, a bitset beyond.
#[derive(Debug, Clone)]
enum Postings {
    Few(Vec<u32>),
    Many(SlotSet, usize),
}

impl Postings {
    fn insert(&mut self, slot: u32) {
        match self {
            Self::Few(v) => {
                if let Err(i) = v.binary_search(&slot) {
                    v.insert(i, slot);
                }
                if v.len() > FEW {
                    let mut set = SlotSet::default();
                    v.iter().for_each(|s| set.insert(*s));
                    *self = Self::Many(set, v.len());
                }
            }
            Self::Many(set, n) => {
                if !set.contains(slot) {
                    set.insert(slot);
                    *n += 1;
                }
            }
        }
    }

    /// Removes `slot`; true when the postings are now empty.
    fn remove(&mut self, slot: u32) -> bool {
        match self {
            Self::Few(v) => {
                if let Ok(i) = v.binary_search(&slot) {
                    v.remove(i);
                }
                v.is_empty()
            }
            Self::Many(set, n) => {
                if set.contains(slot) {
                    set.remove(slot);
                    *n -= 1;
                }
                *n == 0
            }
        }
    }

    fn add_to(&self, out: &mut SlotSet) {
        match self {
            Self::Few(v) => v.iter().for_each(|s| out.insert(*s)),
            Self::Many(set, _) => out.or(set),
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Self::Few(v) => v.capacity() * 4,
            Self::Many(set, _) => set.memory_bytes(),
        }
    }
}

/// Metadata key → value → slots, for one partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct PayloadIndex {
    keys: HashMap<String, HashMap<ValueKey, Postings>>,
}

impl PayloadIndex {
    pub(crate) fn insert(&mut self, slot: u32, metadata: &Map<String, Value>) {
        for (k, v) in metadata {
            if let Some(vk) = value_key(v) {
                self.keys
                    .entry(k.clone())
                    .or_default()
                    .entry(vk)
                    .or_insert_with(|| Postings::Few(Vec::new()))
                    .insert(slot);
            }
        }
    }

    pub(crate) fn remove(&mut self, slot: u32, metadata: &Map<String, Value>) {
        for (k, v) in metadata {
            let Some(vk) = value_key(v) else { continue };
            let Some(values) = self.keys.get_mut(k) else {
                continue;
            };
            if values.get_mut(&vk).is_some_and(|p| p.remove(slot)) {
                values.remove(&vk);
            }
            if values.is_empty() {
                self.keys.remove(k);
            }
        }
    }

    /// The slots of `universe` that match `filter`, or `None` when the filter names a value the
    /// index does not hold (see the module docs). `documents` answers `document_id` conditions.
    pub(crate) fn resolve(
        &self,
        filter: &Filter,
        universe: &SlotSet,
        documents: &HashMap<String, Vec<u32>>,
    ) -> Option<SlotSet> {
        let eq = |key: &str, value: &Value, out: &mut SlotSet| -> Option<()> {
            if key == DOCUMENT_ID_KEY {
                if let Some(slots) = value.as_str().and_then(|d| documents.get(d)) {
                    slots.iter().for_each(|s| out.insert(*s));
                }
                return Some(());
            }
            let vk = value_key(value)?;
            if let Some(p) = self.keys.get(key).and_then(|values| values.get(&vk)) {
                p.add_to(out);
            }
            Some(())
        };
        let mut out = match filter {
            Filter::Eq { key, value } => {
                let mut out = SlotSet::default();
                eq(key, value, &mut out)?;
                out
            }
            Filter::In { key, values } => {
                let mut out = SlotSet::default();
                for v in values {
                    eq(key, v, &mut out)?;
                }
                out
            }
            Filter::And(fs) => {
                let mut out = universe.clone();
                for f in fs {
                    out.and(&self.resolve(f, universe, documents)?);
                }
                out
            }
            Filter::Or(fs) => {
                let mut out = SlotSet::default();
                for f in fs {
                    out.or(&self.resolve(f, universe, documents)?);
                }
                out
            }
            Filter::Not(f) => {
                let mut out = self.resolve(f, universe, documents)?;
                out.complement_within(universe);
                out
            }
            // `Filter` is non-exhaustive: conditions added later are evaluated record by record.
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        out.and(universe);
        Some(out)
    }

    /// Approximate bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.keys
            .iter()
            .map(|(k, values)| {
                k.len()
                    + 48
                    + values
                        .iter()
                        .map(|(v, p)| {
                            p.memory_bytes()
                                + 48
                                + match v {
                                    ValueKey::Str(s) => s.len(),
                                    _ => 0,
                                }
                        })
                        .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_filters_exactly_like_matching_records() {
        let mut index = PayloadIndex::default();
        let mut universe = SlotSet::default();
        let mut documents: HashMap<String, Vec<u32>> = HashMap::new();
        let mut records = Vec::new();
        for slot in 0..1000u32 {
            let meta = json!({
                "lang": if slot % 4 == 0 { "de" } else { "en" },
                "year": 2020 + slot % 5,
                "ok": slot % 2 == 0,
                "tags": ["x"],
                "long": "y".repeat(300),
            });
            let meta = meta.as_object().cloned().unwrap_or_default();
            let doc = format!("d{}", slot / 10);
            index.insert(slot, &meta);
            universe.insert(slot);
            documents.entry(doc.clone()).or_default().push(slot);
            records.push((doc, meta));
        }
        // Delete some: they must leave every postings list.
        for slot in (0..1000u32).filter(|s| s % 7 == 0) {
            index.remove(slot, &records[slot as usize].1);
            universe.remove(slot);
            if let Some(v) = documents.get_mut(&records[slot as usize].0) {
                v.retain(|s| *s != slot);
            }
        }
        let filters = [
            Filter::eq("lang", "de"),
            Filter::eq("year", 2022.0),
            Filter::eq("ok", true),
            Filter::eq("missing", "x"),
            Filter::any_of("year", [json!(2021), json!(2024)]),
            Filter::eq("lang", "en").and(Filter::eq("ok", false)),
            Filter::eq("lang", "de").or(Filter::eq("year", 2020)),
            Filter::eq("lang", "de").not(),
            Filter::And(vec![]),
            Filter::Or(vec![]),
            Filter::eq(DOCUMENT_ID_KEY, "d3"),
            Filter::eq(DOCUMENT_ID_KEY, "d3").and(Filter::eq("ok", true).not()),
        ];
        for f in &filters {
            let got = index.resolve(f, &universe, &documents).unwrap();
            let want: Vec<u32> = universe
                .iter()
                .filter(|s| {
                    let (d, m) = &records[*s as usize];
                    f.matches(d, m)
                })
                .collect();
            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{f:?}");
        }
        assert!(
            index
                .resolve(&Filter::eq("long", "y".repeat(300)), &universe, &documents)
                .is_none(),
            "long values are not indexed"
        );
        assert!(index.memory_bytes() > 0);
    }
}
