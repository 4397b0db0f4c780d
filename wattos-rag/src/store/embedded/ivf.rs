//! Inverted-file index over unit vectors: k-means centroids, one posting list per centroid.
//!
//! Each list keeps its slots together with int8 codes of their vectors (symmetric per-vector
//! scalar quantisation, a quarter of the f32 bytes, laid out contiguously per list). A query probes
//! the lists of the `nprobe` nearest centroids, ranks their members by the quantised dot product,
//! and re-scores the best `rescore` of them exactly on the stored f32 vectors. Recall therefore
//! depends on which lists are probed and, marginally, on `rescore` (measured in
//! `benches/search.rs` and `ann-compare/`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::distance::{dot, dot_i8, quantise};

/// One posting list: slots and their codes (`dims` codes per slot) and scales, in the same order.
#[derive(Debug, Clone, Default)]
struct List {
    slots: Vec<u32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl List {
    fn push(&mut self, slot: u32, v: &[f32]) {
        self.slots.push(slot);
        let s = quantise(v, &mut self.codes);
        self.scales.push(s);
    }

    fn swap_remove(&mut self, i: usize, dims: usize) {
        let last = self.slots.len() - 1;
        if i != last {
            self.codes
                .copy_within(last * dims..(last + 1) * dims, i * dims);
        }
        self.codes.truncate(last * dims);
        self.slots.swap_remove(i);
        self.scales.swap_remove(i);
    }
}

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
        if self.heap.len() < self.k {
            self.heap.push(Reverse(Candidate(score, slot)));
        } else if score > self.threshold() {
            self.heap.pop();
            self.heap.push(Reverse(Candidate(score, slot)));
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Candidate> {
        let mut v: Vec<Candidate> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// Coarse quantiser plus posting lists of slots with their int8 codes.
#[derive(Debug, Clone)]
pub(crate) struct Ivf {
    dims: usize,
    centroids: Vec<f32>,
    lists: Vec<List>,
    /// Live vectors when trained; retrain once the partition doubles.
    pub(crate) trained_at: usize,
}

impl Ivf {
    /// Trains `nlist` centroids on (a strided sample of) `live` slots of `vectors`, then assigns every
    /// live slot. Deterministic: the initial centroids are evenly strided samples.
    pub(crate) fn train(
        dims: usize,
        vectors: &[f32],
        live: &[u32],
        nlist: usize,
        iterations: usize,
    ) -> Self {
        let nlist = nlist.clamp(1, live.len().max(1));
        let sample_cap = (nlist * 40).max(nlist);
        let stride = (live.len() / sample_cap).max(1);
        let sample: Vec<u32> = live.iter().step_by(stride).copied().collect();
        let init_stride = (sample.len() / nlist).max(1);
        let mut centroids = Vec::with_capacity(nlist * dims);
        for i in 0..nlist {
            let s = sample[(i * init_stride).min(sample.len() - 1)] as usize;
            centroids.extend_from_slice(&vectors[s * dims..(s + 1) * dims]);
        }
        let mut ivf = Self {
            dims,
            centroids,
            lists: vec![List::default(); nlist],
            trained_at: live.len(),
        };
        for _ in 0..iterations {
            let mut sums = vec![0.0f32; nlist * dims];
            let mut counts = vec![0usize; nlist];
            for &s in &sample {
                let v = &vectors[s as usize * dims..(s as usize + 1) * dims];
                let c = ivf.nearest(v);
                counts[c] += 1;
                for (acc, x) in sums[c * dims..(c + 1) * dims].iter_mut().zip(v) {
                    *acc += x;
                }
            }
            for c in 0..nlist {
                if counts[c] == 0 {
                    continue; // keep the old centroid
                }
                let row = &mut sums[c * dims..(c + 1) * dims];
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    row.iter_mut().for_each(|x| *x /= norm);
                    ivf.centroids[c * dims..(c + 1) * dims].copy_from_slice(row);
                }
            }
        }
        for &s in live {
            ivf.insert(s, &vectors[s as usize * dims..(s as usize + 1) * dims]);
        }
        ivf
    }

    fn nearest(&self, v: &[f32]) -> usize {
        let mut best = (0, f32::NEG_INFINITY);
        for (i, c) in self.centroids.chunks_exact(self.dims).enumerate() {
            let s = dot(v, c);
            if s > best.1 {
                best = (i, s);
            }
        }
        best.0
    }

    pub(crate) fn insert(&mut self, slot: u32, v: &[f32]) {
        let c = self.nearest(v);
        self.lists[c].push(slot, v);
    }

    pub(crate) fn remove(&mut self, slot: u32, v: &[f32]) {
        let dims = self.dims;
        let c = self.nearest(v);
        if let Some(p) = self.lists[c].slots.iter().position(|s| *s == slot) {
            self.lists[c].swap_remove(p, dims);
            return;
        }
        // Centroid ties can differ after float noise: fall back to a full sweep.
        for list in &mut self.lists {
            if let Some(p) = list.slots.iter().position(|s| *s == slot) {
                list.swap_remove(p, dims);
                return;
            }
        }
    }

    /// Indexes of the `nprobe` lists nearest to `q`.
    fn probe(&self, q: &[f32], nprobe: usize) -> Vec<usize> {
        let mut scored: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(self.dims)
            .enumerate()
            .map(|(i, c)| (dot(q, c), i))
            .collect();
        let n = nprobe.clamp(1, scored.len());
        scored.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(n);
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// Slots in the `nprobe` lists nearest to `q` (the store uses [`Ivf::search`]; `ann-compare/`
    /// uses this to measure a plain f32 scan of the same lists).
    #[allow(dead_code)]
    pub(crate) fn candidates(&self, q: &[f32], nprobe: usize) -> impl Iterator<Item = u32> + '_ {
        self.probe(q, nprobe)
            .into_iter()
            .flat_map(move |i| self.lists[i].slots.iter().copied())
    }

    /// The `k` best slots (exact f32 scores, best first) among the probed lists' members that pass
    /// `keep`: members are ranked by the int8 dot product and the best `rescore` (at least `k`) are
    /// scored exactly on `vectors`.
    pub(crate) fn search(
        &self,
        vectors: &[f32],
        q: &[f32],
        k: usize,
        nprobe: usize,
        rescore: usize,
        keep: impl Fn(u32) -> bool,
    ) -> Vec<Candidate> {
        let dims = self.dims;
        let mut qc = Vec::with_capacity(dims);
        let qs = quantise(q, &mut qc);
        let mut approx = TopK::new(rescore.max(k));
        for li in self.probe(q, nprobe) {
            let list = &self.lists[li];
            for (i, (&slot, codes)) in list
                .slots
                .iter()
                .zip(list.codes.chunks_exact(dims))
                .enumerate()
            {
                if !keep(slot) {
                    continue;
                }
                let s = dot_i8(&qc, codes) as f32 * qs * list.scales[i];
                if s > approx.threshold() {
                    approx.push(s, slot);
                }
            }
        }
        let mut exact = TopK::new(k);
        for Candidate(_, slot) in approx.into_sorted() {
            let v = &vectors[slot as usize * dims..(slot as usize + 1) * dims];
            exact.push(dot(q, v), slot);
        }
        exact.into_sorted()
    }

    /// Bytes held by the index (centroids, slots, codes, scales).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.centroids.len() * 4
            + self
                .lists
                .iter()
                .map(|l| l.slots.len() * 4 + l.codes.len() + l.scales.len() * 4)
                .sum::<usize>()
    }
}
