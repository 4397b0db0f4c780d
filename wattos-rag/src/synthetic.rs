//! Deterministic synthetic data for benchmarks and recall tests.

/// `n` unit vectors of `dims` drawn around `clusters` random centres (a realistic shape for
/// embeddings; uniform noise would make every ANN index look bad). Same `seed`, same data.
pub fn clustered_vectors(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix(seed ^ 0x9e37_79b9_7f4a_7c15);
    // Centres depend only on `clusters` and `dims`, so queries share them with the corpus.
    let mut centre_rng = SplitMix(0xC0FF_EE00 ^ clusters as u64);
    let centres: Vec<Vec<f32>> = (0..clusters.max(1))
        .map(|_| (0..dims).map(|_| centre_rng.gauss()).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centres[(rng.next() % centres.len() as u64) as usize];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.6 * rng.gauss()).collect();
            let norm = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::EPSILON);
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

/// `n` random unit vectors of `dims` (standard normal, L2-normalised): no cluster structure at all,
/// the hard case for an ANN index (issue #21). Same `seed`, same data.
pub fn uniform_vectors(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix::new(seed);
    (0..n)
        .map(|_| normalise((0..dims).map(|_| rng.gauss()).collect()))
        .collect()
}

/// `v` plus Gaussian noise of norm `noise`, renormalised: a query near a stored vector.
pub fn near(v: &[f32], noise: f32, rng: &mut SplitMix) -> Vec<f32> {
    let n = normalise(v.iter().map(|_| rng.gauss()).collect());
    normalise(v.iter().zip(&n).map(|(a, b)| a + noise * b).collect())
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// A small seeded generator (SplitMix64) for benchmarks and tests.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5151_7eed_0000_0021)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.next()
    }

    /// A uniform index in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// A standard normal sample.
    pub fn gauss(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}
