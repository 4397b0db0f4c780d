//! The k best scored slots, shared by the exact scan and the code index.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A score and a slot, ordered by score (ties: lower slot first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate(pub(crate) f32, pub(crate) u32);
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// Keeps the `k` best candidates seen.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Candidate>>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// The score a candidate must beat to enter (−∞ while not full).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |m| m.0.0)
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, score: f32, slot: u32) {
        if self.k == 0 {
            return;
        }
        let c = Candidate(score, slot);
        if self.heap.len() < self.k {
            self.heap.push(Reverse(c));
        } else if self.heap.peek().is_some_and(|worst| c > worst.0) {
            // Ties go to the lower slot whatever the order of the pushes (the code index re-scores
            // in two passes; an exact scan in slot order), so both paths keep the same k.
            self.heap.pop();
            self.heap.push(Reverse(c));
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Candidate> {
        let mut v: Vec<Candidate> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_keep_the_lowest_slots_in_any_order() {
        let mut a = TopK::new(2);
        let mut b = TopK::new(2);
        for s in [5, 1, 9, 3] {
            a.push(0.5, s);
        }
        for s in [3, 9, 1, 5] {
            b.push(0.5, s);
        }
        let slots = |t: TopK| t.into_sorted().iter().map(|c| c.1).collect::<Vec<_>>();
        assert_eq!(slots(a), vec![1, 3]);
        assert_eq!(slots(b), vec![1, 3]);
    }
}
