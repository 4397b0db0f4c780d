//! Inverted-file index over unit vectors (the embedded store's index until issue #21; kept here as
//! a comparison point): k-means centroids, one posting list per centroid.
//!
//! Each list keeps its slots together with int8 codes of their vectors (symmetric per-vector
//! scalar quantisation, a quarter of the f32 bytes, laid out contiguously per list) and the
//! smallest cosine between its centroid and any member, i.e. the spherical cap that holds the
//! list. For a unit query `q` at angle `φ` from a centroid and a cap of angular radius `θ`, no
//! member can score above `cos(max(φ − θ, 0))`: an upper bound per list.
//!
//! A query visits lists best bound first (adaptive probing). After at least `min_probe` lists it
//! stops as soon as the k-th best score found so far reaches the next list's bound: no unvisited
//! list can then contribute to the top k, whatever `k` is, so larger candidate requests (the
//! fusion stage asks for 40) automatically probe more lists. `max_probe` caps the work on data
//! whose caps overlap too much to prune (then recall depends on the cap). Members are ranked by
//! the quantised dot product and the best `rescore` (at least `2k`) are re-scored exactly on the
//! stored f32 vectors. Measured in `benches/search.rs` and `ann-compare/`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::distance::{WithSimd, dot, vectorized};

/// One posting list: slots and their codes (`dims` codes per slot) and scales, in the same order.
#[derive(Debug, Clone)]
struct List {
    slots: Vec<u32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// Smallest cosine between the centroid and a member ever inserted (removals keep it, so it
    /// stays a valid, if looser, bound until the next training).
    min_cos: f32,
}

impl Default for List {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            min_cos: 1.0,
        }
    }
}

impl List {
    fn push(&mut self, slot: u32, v: &[f32], cos: f32) {
        self.slots.push(slot);
        let s = quantise(v, &mut self.codes);
        self.scales.push(s);
        self.min_cos = self.min_cos.min(cos);
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

/// How many lists a query may visit: at least `min` (unless fewer exist), at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) min: usize,
    pub(crate) max: usize,
}

/// What one search did (for tests, benches and tuning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProbeStats {
    /// Lists visited.
    pub(crate) lists: usize,
    /// Members scanned (int8).
    pub(crate) scanned: usize,
    /// The scan ended because no unvisited list could beat the k-th score (not at `max`, nor by
    /// running out of lists).
    pub(crate) stopped_by_bound: bool,
}

/// One [`Ivf::search`], run under [`vectorized`] so the scans use the CPU's widest SIMD.
struct SearchOp<'a, F> {
    ivf: &'a Ivf,
    vectors: &'a [f32],
    q: &'a [f32],
    k: usize,
    probe: Probe,
    rescore: usize,
    keep: F,
}

impl<F: Fn(u32) -> bool> WithSimd for SearchOp<'_, F> {
    type Output = (Vec<Candidate>, ProbeStats);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let Self {
            ivf,
            vectors,
            q,
            k,
            probe,
            rescore,
            keep,
        } = self;
        let dims = ivf.dims;
        let mut qc = Vec::with_capacity(dims);
        let qs = quantise(q, &mut qc);
        let mut approx = TopK::new(rescore.max(2 * k));
        let mut kth = TopK::new(k);
        let mut stats = ProbeStats::default();
        for (bound, li) in ivf.bounds(q) {
            if stats.lists >= probe.max || stats.lists >= probe.min && kth.threshold() >= bound {
                stats.stopped_by_bound = stats.lists < probe.max;
                break;
            }
            stats.lists += 1;
            let list = &ivf.lists[li];
            for (i, (&slot, codes)) in list
                .slots
                .iter()
                .zip(list.codes.chunks_exact(dims))
                .enumerate()
            {
                let s = dot_i8(&qc, codes) as f32 * qs * list.scales[i];
                if s > approx.threshold() && keep(slot) {
                    approx.push(s, slot);
                    kth.push(s, slot);
                }
            }
            stats.scanned += list.slots.len();
        }
        let mut exact = TopK::new(k);
        for Candidate(_, slot) in approx.into_sorted() {
            let v = &vectors[slot as usize * dims..(slot as usize + 1) * dims];
            exact.push(dot(q, v), slot);
        }
        (exact.into_sorted(), stats)
    }
}

/// Dot product of two equally long i8 code slices, exact in i32. The product of two i8 always
/// fits an i16 (which lets the compiler use `pmaddwd`-style instructions); the sums are i32.
#[inline(always)]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 32];
    let chunks_a = a.chunks_exact(32);
    let chunks_b = b.chunks_exact(32);
    let (ra, rb) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        if let (Ok(x), Ok(y)) = (<&[i8; 32]>::try_from(x), <&[i8; 32]>::try_from(y)) {
            for i in 0..32 {
                acc[i] += i32::from(i16::from(x[i]) * i16::from(y[i]));
            }
        }
    }
    let mut s: i32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += i32::from(*x) * i32::from(*y);
    }
    s
}

/// Symmetric scalar quantisation of `v` to i8 codes appended to `out`; returns the scale that maps
/// codes back (`x ≈ code * scale`). A zero vector gets zero codes and scale 0.
pub(crate) fn quantise(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        out.extend(std::iter::repeat_n(0i8, v.len()));
        return 0.0;
    }
    let inv = 127.0 / max;
    out.extend(
        v.iter()
            .map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8),
    );
    max / 127.0
}

/// Upper bound of `q · x` over unit vectors `x` with `c · x >= min_cos`, given `cq = q · c` for unit
/// `q` and `c`: `cos(max(φ − θ, 0))` with `φ = acos(cq)`, `θ = acos(min_cos)`.
pub(crate) fn cap_bound(cq: f32, min_cos: f32) -> f32 {
    let (cq, a) = (cq.clamp(-1.0, 1.0), min_cos.clamp(-1.0, 1.0));
    if cq >= a {
        return 1.0;
    }
    // cos(φ − θ) = cos φ cos θ + sin φ sin θ; a small margin absorbs float rounding.
    (cq * a + ((1.0 - cq * cq) * (1.0 - a * a)).sqrt() + 1e-4).min(1.0)
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
                let (c, _) = ivf.nearest(v);
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

    /// The nearest centroid and its cosine with `v`.
    fn nearest(&self, v: &[f32]) -> (usize, f32) {
        let mut best = (0, f32::NEG_INFINITY);
        for (i, c) in self.centroids.chunks_exact(self.dims).enumerate() {
            let s = dot(v, c);
            if s > best.1 {
                best = (i, s);
            }
        }
        best
    }

    pub(crate) fn insert(&mut self, slot: u32, v: &[f32]) {
        let (c, cos) = self.nearest(v);
        self.lists[c].push(slot, v, cos);
    }

    pub(crate) fn remove(&mut self, slot: u32, v: &[f32]) {
        let dims = self.dims;
        let (c, _) = self.nearest(v);
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

    /// Non-empty lists with the upper bound of any member's score against `q`, best bound first.
    #[inline(always)]
    fn bounds(&self, q: &[f32]) -> Vec<(f32, usize)> {
        let mut order: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(self.dims)
            .zip(&self.lists)
            .enumerate()
            .filter(|(_, (_, list))| !list.slots.is_empty())
            .map(|(i, (c, list))| (cap_bound(dot(q, c), list.min_cos), i))
            .collect();
        order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        order
    }

    /// The `k` best slots (exact f32 scores, best first) among the members that pass `keep`, with
    /// the statistics of the probe.
    ///
    /// Lists are visited best bound first; after `probe.min` lists the scan stops once the k-th
    /// best quantised score reaches the next bound, and it never visits more than `probe.max`.
    /// Members are ranked by the int8 dot product; the best `max(rescore, 2k)` are scored exactly
    /// on `vectors`.
    pub(crate) fn search<F: Fn(u32) -> bool>(
        &self,
        vectors: &[f32],
        q: &[f32],
        k: usize,
        probe: Probe,
        rescore: usize,
        keep: F,
    ) -> (Vec<Candidate>, ProbeStats) {
        vectorized(SearchOp {
            ivf: self,
            vectors,
            q,
            k,
            probe,
            rescore,
            keep,
        })
    }

    /// Number of lists.
    pub(crate) fn nlist(&self) -> usize {
        self.lists.len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::clustered_vectors;

    #[test]
    fn quantised_dot_tracks_exact_dot() {
        let a: Vec<f32> = (0..384)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let b: Vec<f32> = (0..384)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
            .collect();
        let (mut ca, mut cb) = (Vec::new(), Vec::new());
        let (sa, sb) = (quantise(&a, &mut ca), quantise(&b, &mut cb));
        let approx = dot_i8(&ca, &cb) as f32 * sa * sb;
        let exact = dot(&a, &b);
        let scale = (dot(&a, &a) * dot(&b, &b)).sqrt();
        assert!((approx - exact).abs() / scale < 0.01, "{approx} vs {exact}");
        let mut z = Vec::new();
        assert_eq!(quantise(&[0.0; 3], &mut z), 0.0);
        assert_eq!(z, vec![0, 0, 0]);
    #[test]
    fn cap_bound_is_never_exceeded() {
        let dims = 16;
        let data = clustered_vectors(2000, dims, 4, 5);
        let queries = clustered_vectors(50, dims, 9, 6);
        let flat: Vec<f32> = data.iter().flatten().copied().collect();
        let live: Vec<u32> = (0..data.len() as u32).collect();
        let ivf = Ivf::train(dims, &flat, &live, 12, 4);
        for q in &queries {
            for (bound, li) in ivf.bounds(q) {
                for &slot in &ivf.lists[li].slots {
                    let s = dot(q, &data[slot as usize]);
                    assert!(
                        s <= bound,
                        "member scores {s} above its list's bound {bound}"
                    );
                }
            }
        }
        assert_eq!(cap_bound(0.9, 0.8), 1.0, "query inside the cap");
        assert!((cap_bound(0.0, 0.0) - 1.0).abs() < 1e-3, "hemisphere cap");
        assert!(
            cap_bound(-1.0, 1.0) < -0.99,
            "opposite direction, zero radius"
        );
    }

    #[test]
    fn adaptive_probing_finds_the_exact_top_k_and_scales_with_k() {
        let dims = 32;
        let data = clustered_vectors(6000, dims, 40, 11);
        let flat: Vec<f32> = data.iter().flatten().copied().collect();
        let live: Vec<u32> = (0..data.len() as u32).collect();
        let ivf = Ivf::train(dims, &flat, &live, 77, 6);
        let queries = clustered_vectors(40, dims, 40, 12);
        let probe = Probe { min: 1, max: 77 };
        let (mut lists10, mut lists40) = (0, 0);
        for q in &queries {
            for k in [10, 40] {
                let (got, stats) = ivf.search(&flat, q, k, probe, 0, |_| true);
                assert!(stats.stopped_by_bound || stats.lists == 77);
                let mut truth = TopK::new(k);
                for (i, v) in data.iter().enumerate() {
                    truth.push(dot(q, v), i as u32);
                }
                let truth: Vec<u32> = truth.into_sorted().into_iter().map(|c| c.1).collect();
                let found = got.iter().filter(|c| truth.contains(&c.1)).count();
                assert!(found + 1 >= k, "k={k}: {found} of the exact top-{k}");
                if k == 10 {
                    lists10 += stats.lists;
                } else {
                    lists40 += stats.lists;
                }
            }
            let capped = ivf
                .search(&flat, q, 40, Probe { min: 1, max: 3 }, 0, |_| true)
                .1;
            assert!(capped.lists <= 3 && !capped.stopped_by_bound);
            let min = ivf
                .search(&flat, q, 1, Probe { min: 20, max: 77 }, 0, |_| true)
                .1;
            assert!(min.lists >= 20);
        }
        assert!(
            lists40 > lists10,
            "k=40 probed {lists40} lists, k=10 {lists10}"
        );
        assert!(
            lists40 < 77 * queries.len(),
            "the bound never stopped a scan"
        );
    }

    #[test]
    fn filtered_members_do_not_count_towards_the_stop() {
        let dims = 16;
        let data = clustered_vectors(3000, dims, 20, 21);
        let flat: Vec<f32> = data.iter().flatten().copied().collect();
        let live: Vec<u32> = (0..data.len() as u32).collect();
        let ivf = Ivf::train(dims, &flat, &live, 50, 4);
        let q = &clustered_vectors(1, dims, 20, 22)[0];
        let (got, _) = ivf.search(&flat, q, 10, Probe { min: 1, max: 50 }, 0, |s| s % 7 == 0);
        let mut truth = TopK::new(10);
        for (i, v) in data.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
            truth.push(dot(q, v), i as u32);
        }
        let truth: Vec<u32> = truth.into_sorted().into_iter().map(|c| c.1).collect();
        assert!(got.iter().all(|c| c.1 % 7 == 0));
        assert!(got.iter().filter(|c| truth.contains(&c.1)).count() >= 9);
    }
}
