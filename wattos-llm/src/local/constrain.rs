//! Token masks from a [`Matcher`]: which vocabulary entries may come next.
//!
//! The vocabulary's byte strings are indexed once per model by their first byte. A step first tries
//! the model's [`TOP_K`] most likely tokens against the grammar (a handful of byte checks); only when
//! none of them fits is the whole vocabulary scanned, one first-byte bucket at a time, skipping every
//! bucket whose first byte the grammar refuses.

use super::gguf_tokenizer::GgufTokenizer;
use super::grammar::Matcher;

/// Most likely tokens tried before the whole vocabulary is scanned.
pub(crate) const TOP_K: usize = 32;

/// Token ids grouped by their first byte.
pub(crate) struct TokenIndex {
    by_first: Vec<Vec<u32>>,
}

impl std::fmt::Debug for TokenIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIndex").finish_non_exhaustive()
    }
}

impl TokenIndex {
    /// Indexes `tokenizer`'s vocabulary (control tokens, which have no bytes, are left out).
    pub(crate) fn new(tokenizer: &GgufTokenizer) -> Self {
        let mut by_first = vec![Vec::new(); 256];
        for id in 0..tokenizer.vocab_size() as u32 {
            if let Some(&b) = tokenizer.bytes_of(id).first() {
                by_first[b as usize].push(id);
            }
        }
        Self { by_first }
    }

    /// Every token `m` accepts next, plus the end-of-generation tokens when the output may end.
    pub(crate) fn allowed(&self, m: &Matcher<'_>, tokenizer: &GgufTokenizer) -> Vec<u32> {
        let mut out = Vec::new();
        if m.can_end() {
            out.extend_from_slice(tokenizer.end_of_generation());
        }
        for (b, ids) in self.by_first.iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let mut first = m.clone();
            if !first.push(b as u8) {
                continue;
            }
            out.extend(
                ids.iter()
                    .copied()
                    .filter(|&id| first.accepts(&tokenizer.bytes_of(id)[1..])),
            );
        }
        out
    }
}

/// Whether `id` may come next.
fn fits(m: &Matcher<'_>, tokenizer: &GgufTokenizer, id: u32) -> bool {
    if tokenizer.is_end_of_generation(id) {
        return m.can_end();
    }
    let bytes = tokenizer.bytes_of(id);
    !bytes.is_empty() && m.accepts(bytes)
}

/// Sets the logits of tokens that may not come next to negative infinity: the [`TOP_K`] most likely
/// tokens that fit, or every token that fits when none of those does. Returns `false` (logits
/// untouched) when no token fits, which a grammar whose prefixes can all be completed never causes.
pub(crate) fn mask_logits(
    logits: &mut [f32],
    m: &Matcher<'_>,
    tokenizer: &GgufTokenizer,
    index: &TokenIndex,
) -> bool {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let k = TOP_K.min(order.len());
    if k == 0 {
        return false;
    }
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, by_logit);
    }
    order.truncate(k);
    let mut keep: Vec<u32> = order
        .into_iter()
        .filter(|&id| fits(m, tokenizer, id))
        .collect();
    if keep.is_empty() {
        keep = index.allowed(m, tokenizer);
    }
    if keep.is_empty() {
        return false;
    }
    let kept: Vec<(u32, f32)> = keep.iter().map(|&id| (id, logits[id as usize])).collect();
    logits.fill(f32::NEG_INFINITY);
    for (id, v) in kept {
        logits[id as usize] = v;
    }
    true
}
