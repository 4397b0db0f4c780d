//! Inverted-file index over unit vectors: k-means centroids, one posting list per centroid.
//!
//! Search probes the lists of the nearest centroids and scores every vector there exactly, so the
//! only approximation is which lists are probed.

use super::dot;

/// Coarse quantiser plus posting lists of slots.
#[derive(Debug, Clone)]
pub(crate) struct Ivf {
    dims: usize,
    centroids: Vec<f32>,
    lists: Vec<Vec<u32>>,
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
            lists: vec![Vec::new(); nlist],
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
            let v = &vectors[s as usize * dims..(s as usize + 1) * dims];
            let c = ivf.nearest(v);
            ivf.lists[c].push(s);
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
        self.lists[c].push(slot);
    }

    pub(crate) fn remove(&mut self, slot: u32, v: &[f32]) {
        let c = self.nearest(v);
        if let Some(p) = self.lists[c].iter().position(|s| *s == slot) {
            self.lists[c].swap_remove(p);
            return;
        }
        // Centroid ties can differ after float noise: fall back to a full sweep.
        for list in &mut self.lists {
            if let Some(p) = list.iter().position(|s| *s == slot) {
                list.swap_remove(p);
                return;
            }
        }
    }

    /// Slots in the `nprobe` lists nearest to `q`.
    pub(crate) fn candidates(&self, q: &[f32], nprobe: usize) -> impl Iterator<Item = u32> + '_ {
        let mut scored: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(self.dims)
            .enumerate()
            .map(|(i, c)| (dot(q, c), i))
            .collect();
        let n = nprobe.clamp(1, scored.len());
        scored.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(n);
        scored
            .into_iter()
            .flat_map(move |(_, i)| self.lists[i].iter().copied())
    }
}
