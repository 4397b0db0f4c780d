//! A flat index of 2-bit codes with per-vector error bounds (after RaBitQ and its extension to
//! more bits, Gao & Long, SIGMOD 2024 / 2025).
//!
//! Each vector `x` of a partition is stored, besides its f32 values, as a 2-bit scalar code of
//! `r = x − c` (`c`: the partition's mean when trained; levels `a − 1.5`, `a ∈ 0..4`, step
//! `‖r‖/√d`) plus three floats. For a query `q`, with `ℓ` the code's level vector, the code gives
//! an estimate of `⟨q, x⟩` *and* a bound on its error that depends on the vector (how well its
//! code describes it, `α = ⟨ℓ/‖ℓ‖, r/‖r‖⟩`) and on `‖q − c‖`:
//!
//! ```text
//! ⟨q, x⟩ = ⟨q − c, r⟩ + ⟨q − c, c⟩ + ⟨c, x⟩
//! ⟨q − c, r⟩ ≈ ‖q − c‖ · ‖r‖² / ⟨ℓ, r⟩ · ⟨q̂, ℓ⟩              q̂ = (q − c)/‖q − c‖
//! |error| ≤ ε · ‖q − c‖ · ‖r‖ · √((1 − α²) / (α² (d − 1)))      (all but a ~Φ(−ε) fraction)
//! ```
//!
//! A search scans every selected code (96 bytes per 384-d vector, in blocks of 32 vectors laid out
//! for `pshufb` table look-ups, the "fast scan" of FAISS), keeps `τ`, the k-th best exact score
//! of the vectors it has re-scored so far (a vector is re-scored in f32 as soon as its estimate
//! beats `τ`), and keeps as candidates the vectors whose upper bound still reaches `τ`. After the
//! scan the candidates that can still beat the final `τ` are re-scored too. No training step can
//! go wrong: the work adapts to the data (few re-scores on clustered embeddings, more on
//! structureless random vectors) and the recall depends on `ε`, not on how the data happens to be
//! distributed. Measured in `benches/search.rs`.

use super::distance::{dot, quantise_levels};
use super::topk::{Candidate, TopK};

/// Vectors per code block (one `pshufb` lane of nibbles covers 16, the high nibbles another 16).
const BLOCK: usize = 32;

/// Dimensions per nibble (2 bits each).
const DIMS_PER_NIBBLE: usize = 2;

/// Default bound multiplier: the estimate's error is close to normal with the standard deviation
/// above, so a true neighbour is lost with probability about `Φ(−3) ≈ 0.13 %`.
pub(crate) const DEFAULT_EPSILON: f32 = 3.0;

/// Per-vector factors of the estimator.
#[derive(Debug, Clone, Copy, Default)]
struct Factors {
    /// `‖r‖² / ⟨ℓ, r⟩`: multiplies `‖q − c‖ ⟨q̂, ℓ⟩`.
    scale: f32,
    /// `‖r‖ √((1 − α²) / (α² (d − 1)))`: one standard deviation of the estimate per unit of
    /// `‖q − c‖`.
    err: f32,
    /// `⟨c, x⟩`.
    cx: f32,
}

/// A set of slots of a partition (a bitset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlotSet {
    words: Vec<u64>,
}

impl SlotSet {
    pub(crate) fn insert(&mut self, slot: u32) {
        let w = slot as usize / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (slot % 64);
    }

    pub(crate) fn remove(&mut self, slot: u32) {
        if let Some(w) = self.words.get_mut(slot as usize / 64) {
            *w &= !(1 << (slot % 64));
        }
    }

    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.words
            .get(slot as usize / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// `self ∩ other`.
    pub(crate) fn and(&mut self, other: &SlotSet) {
        for (i, w) in self.words.iter_mut().enumerate() {
            *w &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    /// `self ∪ other`.
    pub(crate) fn or(&mut self, other: &SlotSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    /// `universe ∖ self`.
    pub(crate) fn complement_within(&mut self, universe: &SlotSet) {
        self.words.resize(universe.words.len(), 0);
        for (w, u) in self.words.iter_mut().zip(&universe.words) {
            *w = !*w & u;
        }
    }

    /// Code blocks (of 32 slots) holding at least one member.
    pub(crate) fn blocks_touched(&self) -> usize {
        self.words
            .iter()
            .map(|w| usize::from(*w as u32 != 0) + usize::from((w >> 32) != 0))
            .sum()
    }

    /// The 32 membership bits of code block `b`.
    #[inline(always)]
    fn block_mask(&self, b: usize) -> u32 {
        self.words
            .get(b / 2)
            .map_or(0, |w| (w >> ((b % 2) * 32)) as u32)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + b)
            })
        })
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// How far one search may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Budget {
    /// Bound multiplier (standard deviations of the estimate's error).
    pub(crate) epsilon: f32,
    /// Exact re-scores allowed (`usize::MAX`: as many as the bound asks for).
    pub(crate) rescore: usize,
}

/// What one search did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScanStats {
    /// Codes scanned.
    pub(crate) scanned: usize,
    /// Vectors re-scored exactly.
    pub(crate) rescored: usize,
    /// Every vector whose upper bound reached the k-th best exact score was re-scored: the result
    /// is the exact top k but for estimates outside their bound (probability `Φ(−ε)` each).
    pub(crate) bound_met: bool,
}

/// The query side of the estimator: one 16-entry u8 table per nibble (2 dimensions).
struct QueryTables {
    /// `pairs` × 32 bytes: the table of nibble `2p`, then of nibble `2p + 1`.
    luts: Vec<u8>,
    /// Table step and offset: `⟨q̂, ℓ⟩ ≈ delta · Σ tables + base`.
    delta: f32,
    base: f32,
    /// `‖q − c‖`.
    qnorm: f32,
    /// `⟨q − c, c⟩`.
    qc: f32,
    /// Rounding error of the u8 tables in `⟨q̂, ℓ⟩`, in standard deviations times ε.
    lut_err: f32,
}

/// The code-and-bound index of one partition.
#[derive(Debug, Clone)]
pub(crate) struct CodeIndex {
    dims: usize,
    /// Nibble pairs (32-byte table rows) per vector: `⌈dims / 4⌉`.
    pairs: usize,
    centre: Vec<f32>,
    /// Blocks of [`BLOCK`] slots, `pairs * 32` bytes each (see [`CodeIndex::set`]).
    pub(crate) codes: Vec<u8>,
    factors: Vec<Factors>,
    /// Live vectors when trained; re-centred once the partition doubles.
    pub(crate) trained_at: usize,
}

impl CodeIndex {
    /// Centres on the mean of the `live` slots of `vectors` and codes every one of them.
    pub(crate) fn train(dims: usize, vectors: &[f32], live: &[u32]) -> Self {
        let mut centre = vec![0.0f32; dims];
        for &s in live {
            let v = &vectors[s as usize * dims..(s as usize + 1) * dims];
            for (c, x) in centre.iter_mut().zip(v) {
                *c += x;
            }
        }
        let n = live.len().max(1) as f32;
        centre.iter_mut().for_each(|c| *c /= n);
        let mut index = Self {
            dims,
            pairs: dims.div_ceil(2 * DIMS_PER_NIBBLE),
            centre,
            codes: Vec::new(),
            factors: Vec::new(),
            trained_at: live.len(),
        };
        for &s in live {
            index.set(s, &vectors[s as usize * dims..(s as usize + 1) * dims]);
        }
        index
    }

    fn block_bytes(&self) -> usize {
        self.pairs * 32
    }

    /// Codes `v` into `slot`, growing the arrays as needed.
    ///
    /// Layout: in block `slot / 32`, nibble `m` (dimensions `2m`, `2m + 1`: level of the first in
    /// bits 0-1, of the second in bits 2-3) of lane `l = slot % 32` sits in byte
    /// `(m / 2) * 32 + (m % 2) * 16 + l % 16`, low half for `l < 16`, high half otherwise.
    pub(crate) fn set(&mut self, slot: u32, v: &[f32]) {
        let slot = slot as usize;
        let (block, lane) = (slot / BLOCK, slot % BLOCK);
        let bb = self.block_bytes();
        if self.codes.len() < (block + 1) * bb {
            self.codes.resize((block + 1) * bb, 0);
        }
        if self.factors.len() <= slot {
            self.factors.resize(slot + 1, Factors::default());
        }
        let r: Vec<f32> = v.iter().zip(&self.centre).map(|(x, c)| x - c).collect();
        let cx: f32 = v.iter().zip(&self.centre).map(|(x, c)| x * c).sum();
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        let d = self.dims as f32;
        let mut levels = vec![0u8; self.pairs * 2 * DIMS_PER_NIBBLE];
        let (lr, ll) = quantise_levels(&r, norm / d.sqrt(), &mut levels[..self.dims]);
        let base = block * bb;
        let shift = if lane < 16 { 0 } else { 4 };
        for (m, two) in levels.chunks_exact(DIMS_PER_NIBBLE).enumerate() {
            let nibble = two[0] | (two[1] << 2);
            let byte = &mut self.codes[base + (m / 2) * 32 + (m % 2) * 16 + lane % 16];
            *byte = (*byte & !(0x0f << shift)) | (nibble << shift);
        }
        self.factors[slot] = if norm > 0.0 && lr > 0.0 {
            let alpha = (lr / (ll.sqrt() * norm)).min(1.0);
            Factors {
                scale: norm * norm / lr,
                err: norm * ((1.0 - alpha * alpha) / (alpha * alpha * (d - 1.0).max(1.0))).sqrt(),
                cx,
            }
        } else {
            // `x` is the centre (or a degenerate code): ⟨q, x⟩ = ⟨q − c, c⟩ + ⟨c, x⟩ exactly.
            Factors {
                scale: 0.0,
                err: norm,
                cx,
            }
        };
    }

    fn tables(&self, q: &[f32], epsilon: f32) -> QueryTables {
        let mut r: Vec<f32> = q.iter().zip(&self.centre).map(|(a, c)| a - c).collect();
        let qnorm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        let qc = r.iter().zip(&self.centre).map(|(a, c)| a * c).sum::<f32>();
        if qnorm > 0.0 {
            r.iter_mut().for_each(|x| *x /= qnorm);
        }
        let nibbles = self.pairs * 2;
        r.resize(nibbles * DIMS_PER_NIBBLE, 0.0);
        // Level a − 1.5 for a in 0..4: each dimension spans 3|q̂_j| from its minimum −1.5|q̂_j|.
        let range = r
            .chunks_exact(DIMS_PER_NIBBLE)
            .map(|w| 3.0 * (w[0].abs() + w[1].abs()))
            .fold(0.0f32, f32::max);
        let delta = if range > 0.0 { range / 255.0 } else { 1.0 };
        let mut base = 0.0f32;
        let mut luts = vec![0u8; self.pairs * 32];
        for (m, w) in r.chunks_exact(DIMS_PER_NIBBLE).enumerate() {
            let min = -1.5 * (w[0].abs() + w[1].abs());
            base += min;
            let row = &mut luts[(m / 2) * 32 + (m % 2) * 16..][..16];
            for (v, out) in row.iter_mut().enumerate() {
                let s = w[0] * ((v & 3) as f32 - 1.5) + w[1] * ((v >> 2) as f32 - 1.5);
                *out = ((s - min) / delta).round().clamp(0.0, 255.0) as u8;
            }
        }
        QueryTables {
            luts,
            delta,
            base,
            qnorm,
            qc,
            // Each table entry errs by at most δ/2 (uniform: sd δ/√12), one entry per nibble.
            lut_err: epsilon * delta * (nibbles as f32 / 12.0).sqrt(),
        }
    }

    /// The k best slots of `select` (exact f32 scores, best first) and what the search did.
    ///
    /// Scans every selected code. A vector whose estimate beats `τ` (the k-th best exact score so
    /// far) is re-scored at once, which keeps `τ` close to the final k-th score; one whose upper
    /// bound still reaches `τ` becomes a candidate. After the scan every candidate whose upper
    /// bound reaches the final `τ` is re-scored. With `budget.rescore` below the re-scores that
    /// needs, only the best estimates within budget are re-scored and the stats say the bound was
    /// not met.
    pub(crate) fn search(
        &self,
        vectors: &[f32],
        q: &[f32],
        k: usize,
        select: &SlotSet,
        budget: Budget,
    ) -> (Vec<Candidate>, ScanStats) {
        let t = self.tables(q, budget.epsilon);
        with_kernel(Search {
            index: self,
            vectors,
            q,
            t: &t,
            k,
            select,
            budget,
        })
    }

    /// Bytes held by the codes and factors.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.codes.len() + self.factors.len() * std::mem::size_of::<Factors>() + self.dims * 4
    }
}

/// One [`CodeIndex::search`], run by [`with_kernel`] so that all of it is compiled for the CPU's
/// SIMD level.
struct Search<'a> {
    index: &'a CodeIndex,
    vectors: &'a [f32],
    q: &'a [f32],
    t: &'a QueryTables,
    k: usize,
    select: &'a SlotSet,
    budget: Budget,
}

impl BlockBody<(Vec<Candidate>, ScanStats)> for Search<'_> {
    #[inline(always)]
    fn run(self, kernel: impl Fn(&[u8], &[u8], &mut [u32; BLOCK])) -> (Vec<Candidate>, ScanStats) {
        let Self {
            index,
            vectors,
            q,
            t,
            k,
            select,
            budget,
        } = self;
        let dims = index.dims;
        let mut stats = ScanStats::default();
        // (upper bound, estimate, slot) of vectors that may still enter the top k.
        let mut cands: Vec<(f32, f32, u32)> = Vec::new();
        let mut top = TopK::new(k);
        let mut tau = f32::NEG_INFINITY;
        let bb = index.block_bytes();
        let blocks = index.factors.len().div_ceil(BLOCK);
        let mut sums = [0u32; BLOCK];
        let (mut est, mut up) = ([0f32; BLOCK], [0f32; BLOCK]);
        let epsilon = budget.epsilon;
        for b in 0..blocks {
            let mask = select.block_mask(b);
            if mask == 0 {
                continue;
            }
            kernel(&index.codes[b * bb..(b + 1) * bb], &t.luts, &mut sums);
            let factors = &index.factors[b * BLOCK..((b + 1) * BLOCK).min(index.factors.len())];
            for (l, f) in factors.iter().enumerate() {
                let ip = t.delta * sums[l] as f32 + t.base;
                est[l] = t.qnorm * f.scale * ip + f.cx + t.qc;
                up[l] = est[l] + t.qnorm * (epsilon * f.err + f.scale * t.lut_err);
            }
            let mut m = mask & (u32::MAX >> (BLOCK - factors.len()));
            stats.scanned += m.count_ones() as usize;
            while m != 0 {
                let l = m.trailing_zeros() as usize;
                m &= m - 1;
                if up[l] < tau {
                    continue;
                }
                let slot = (b * BLOCK + l) as u32;
                if est[l] > tau && stats.rescored < budget.rescore {
                    let v = &vectors[slot as usize * dims..(slot as usize + 1) * dims];
                    top.push(dot(q, v), slot);
                    stats.rescored += 1;
                    tau = top.threshold();
                } else {
                    cands.push((up[l], est[l], slot));
                }
            }
        }
        cands.retain(|c| c.0 >= tau);
        stats.bound_met = stats.rescored + cands.len() <= budget.rescore;
        if !stats.bound_met {
            let room = budget.rescore.saturating_sub(stats.rescored);
            if room < cands.len() {
                if room > 0 {
                    cands.select_nth_unstable_by(room - 1, |a, b| b.1.total_cmp(&a.1));
                }
                cands.truncate(room);
            }
        }
        for &(u, _, slot) in &cands {
            if u >= top.threshold() {
                let v = &vectors[slot as usize * dims..(slot as usize + 1) * dims];
                top.push(dot(q, v), slot);
                stats.rescored += 1;
            }
        }
        (top.into_sorted(), stats)
    }
}

/// Runs `body` with a block kernel (`kernel(codes, luts, sums)` sets
/// `sums[l] = Σ_m lut_m[nibble m of lane l]` for the 32 vectors of one block): `pshufb` on CPUs
/// with AVX2 (one runtime check per call, the whole `body` compiled for AVX2), plain loops elsewhere.
#[inline]
pub(crate) fn with_kernel<R>(body: impl BlockBody<R>) -> R {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || {
                body.run(
                    #[inline(always)]
                    |c: &[u8], l: &[u8], s: &mut [u32; BLOCK]| avx2::scan_block(simd, c, l, s),
                )
            },
        );
    }
    body.run(scan_block_scalar)
}

/// A loop over code blocks, generic over the block kernel (see [`with_kernel`]).
pub(crate) trait BlockBody<R> {
    fn run(self, kernel: impl Fn(&[u8], &[u8], &mut [u32; BLOCK])) -> R;
}

fn scan_block_scalar(codes: &[u8], luts: &[u8], sums: &mut [u32; BLOCK]) {
    *sums = [0; BLOCK];
    for (c, l) in codes.chunks_exact(32).zip(luts.chunks_exact(32)) {
        for (codes, lut) in c.chunks_exact(16).zip(l.chunks_exact(16)) {
            for (i, &byte) in codes.iter().enumerate() {
                sums[i] += u32::from(lut[usize::from(byte & 0x0f)]);
                sums[i + 16] += u32::from(lut[usize::from(byte >> 4)]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use pulp::x86::V3;
    use std::arch::x86_64::__m256i;

    use super::BLOCK;

    /// Pairs accumulated in u16 before widening (255 · 2 · 128 < 65 536).
    const CHUNK: usize = 128;

    #[inline(always)]
    fn load(simd: V3, b: &[u8]) -> __m256i {
        let _ = simd;
        let mut a = [0u8; 32];
        a.copy_from_slice(&b[..32]);
        pulp::cast(a)
    }

    /// [`super::scan_block_scalar`] with `pshufb`: per 32 code bytes (two nibbles of 32
    /// vectors), two table look-ups of 32 lanes each; u8 results summed pairwise into u16.
    #[inline(always)]
    pub(super) fn scan_block(simd: V3, codes: &[u8], luts: &[u8], sums: &mut [u32; BLOCK]) {
        *sums = [0; BLOCK];
        let low = simd.avx._mm256_set1_epi8(0x0f);
        for (cc, lc) in codes.chunks(32 * CHUNK).zip(luts.chunks(32 * CHUNK)) {
            let zero = simd.avx._mm256_setzero_si256();
            let (mut lo_a, mut lo_b, mut hi_a, mut hi_b) = (zero, zero, zero, zero);
            for (c, l) in cc.chunks_exact(32).zip(lc.chunks_exact(32)) {
                let c = load(simd, c);
                let l = load(simd, l);
                let lo = simd.avx2._mm256_and_si256(c, low);
                let hi = simd
                    .avx2
                    ._mm256_and_si256(simd.avx2._mm256_srli_epi16::<4>(c), low);
                let rl = simd.avx2._mm256_shuffle_epi8(l, lo);
                let rh = simd.avx2._mm256_shuffle_epi8(l, hi);
                lo_a = simd.avx2._mm256_add_epi16(lo_a, rl);
                lo_b = simd
                    .avx2
                    ._mm256_add_epi16(lo_b, simd.avx2._mm256_srli_epi16::<8>(rl));
                hi_a = simd.avx2._mm256_add_epi16(hi_a, rh);
                hi_b = simd
                    .avx2
                    ._mm256_add_epi16(hi_b, simd.avx2._mm256_srli_epi16::<8>(rh));
            }
            // Word w of a lane holds (even byte) + 256·(odd byte) summed: recover both sums.
            for (a, b, off) in [(lo_a, lo_b, 0), (hi_a, hi_b, 16)] {
                let a: [u16; 16] = pulp::cast(a);
                let b: [u16; 16] = pulp::cast(b);
                for w in 0..8 {
                    let even = |x: usize| u32::from(a[x].wrapping_sub(b[x] << 8));
                    sums[off + 2 * w] += even(w) + even(w + 8);
                    sums[off + 2 * w + 1] += u32::from(b[w]) + u32::from(b[w + 8]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One block through the dispatched kernel.
    struct One<'a>(&'a [u8], &'a [u8]);
    impl BlockBody<[u32; BLOCK]> for One<'_> {
        fn run(self, kernel: impl Fn(&[u8], &[u8], &mut [u32; BLOCK])) -> [u32; BLOCK] {
            let mut s = [0; BLOCK];
            kernel(self.0, self.1, &mut s);
            s
        }
    }

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut v: Vec<f32> = (0..dims)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 20_001) as f32 / 10_000.0 - 1.0
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= n);
        v
    }

    fn index_of(n: usize, dims: usize, seed: u64) -> (Vec<f32>, CodeIndex) {
        let flat: Vec<f32> = (0..n).flat_map(|i| unit(seed + i as u64, dims)).collect();
        let live: Vec<u32> = (0..n as u32).collect();
        let index = CodeIndex::train(dims, &flat, &live);
        (flat, index)
    }

    #[test]
    fn simd_and_scalar_block_scans_agree() {
        for dims in [3, 16, 37, 384, 2100] {
            let (_, index) = index_of(70, dims, 1);
            let t = index.tables(&unit(999, dims), DEFAULT_EPSILON);
            let bb = index.block_bytes();
            for b in 0..70usize.div_ceil(BLOCK) {
                let codes = &index.codes[b * bb..(b + 1) * bb];
                let mut s = [0u32; BLOCK];
                scan_block_scalar(codes, &t.luts, &mut s);
                assert_eq!(with_kernel(One(codes, &t.luts)), s, "dims {dims} block {b}");
            }
        }
    }

    #[test]
    fn estimates_stay_within_their_bounds() {
        let (dims, n) = (96, 2000);
        let (flat, index) = index_of(n, dims, 7);
        let (mut outside, mut width) = (0, 0.0f32);
        for qi in 0..20 {
            let q = unit(50_000 + qi, dims);
            let t = index.tables(&q, DEFAULT_EPSILON);
            let bb = index.block_bytes();
            for b in 0..n / BLOCK {
                let sums = with_kernel(One(&index.codes[b * bb..(b + 1) * bb], &t.luts));
                for (l, s) in sums.iter().enumerate() {
                    let slot = b * BLOCK + l;
                    let f = index.factors[slot];
                    let est = t.qnorm * f.scale * (t.delta * *s as f32 + t.base) + f.cx + t.qc;
                    let err = t.qnorm * (DEFAULT_EPSILON * f.err + f.scale * t.lut_err);
                    let exact = dot(&q, &flat[slot * dims..(slot + 1) * dims]);
                    outside += usize::from((est - exact).abs() > err);
                    width = width.max(err);
                }
            }
        }
        // Φ(−3) two-sided is 0.27 %: 107 of 40 000 expected.
        assert!(
            outside < 200,
            "{outside} of 40000 estimates outside their bound"
        );
        assert!(width < 0.2, "bound {width} too loose to prune anything");
    }

    #[test]
    fn search_returns_the_exact_top_k_of_the_selection() {
        let (dims, n) = (64, 3000);
        let (flat, index) = index_of(n, dims, 3);
        let mut select = SlotSet::default();
        (0..n as u32)
            .filter(|s| s % 3 == 0)
            .for_each(|s| select.insert(s));
        let unlimited = Budget {
            epsilon: DEFAULT_EPSILON,
            rescore: usize::MAX,
        };
        let (mut found, mut rescored) = (0, 0);
        for qi in 0..30 {
            let q = unit(90_000 + qi, dims);
            let (got, stats) = index.search(&flat, &q, 10, &select, unlimited);
            assert!(stats.bound_met && stats.scanned == 1000, "{stats:?}");
            assert!(got.iter().all(|c| c.1 % 3 == 0));
            rescored += stats.rescored;
            let mut truth = TopK::new(10);
            for s in select.iter() {
                truth.push(
                    dot(&q, &flat[s as usize * dims..(s as usize + 1) * dims]),
                    s,
                );
            }
            let truth: Vec<u32> = truth.into_sorted().iter().map(|c| c.1).collect();
            found += got.iter().filter(|c| truth.contains(&c.1)).count();
            let budget = Budget {
                rescore: 12,
                ..unlimited
            };
            let (few, stats) = index.search(&flat, &q, 10, &select, budget);
            assert_eq!(few.len(), 10);
            assert!(!stats.bound_met && stats.rescored <= 12, "{stats:?}");
        }
        assert!(found >= 298, "recall {found}/300");
        assert!(rescored < 30 * 1000 / 2, "re-scored {rescored} of 30000");
    }

    #[test]
    fn slot_sets_combine() {
        let mut a = SlotSet::default();
        [1, 64, 200].into_iter().for_each(|s| a.insert(s));
        let mut b = SlotSet::default();
        [64, 5].into_iter().for_each(|s| b.insert(s));
        let mut i = a.clone();
        i.and(&b);
        assert_eq!(i.iter().collect::<Vec<_>>(), vec![64]);
        let mut u = a.clone();
        u.or(&b);
        assert_eq!(u.iter().collect::<Vec<_>>(), vec![1, 5, 64, 200]);
        let mut n = b.clone();
        n.complement_within(&a);
        assert_eq!(n.iter().collect::<Vec<_>>(), vec![1, 200]);
        assert_eq!(a.len(), 3);
        assert_eq!(a.blocks_touched(), 3);
        assert!(a.contains(200) && !a.contains(2));
        a.remove(200);
        assert_eq!(a.block_mask(0), 0b10);
        assert_eq!(a.block_mask(2), 1);
    }
}
