//! Dot products for the embedded store's exact scores and the 2-bit levels of its codes.
//!
//! The dot product uses fixed-size chunks with independent accumulators so the compiler vectorises
//! it. It is `#[inline(always)]` so that, called inside [`vectorized`], it is compiled for the best
//! instruction set the CPU offers (AVX2 on x86-64-v3 machines) with the CPU check done once per
//! call of [`vectorized`] by `pulp`.
//! No `unsafe` in this crate.

pub(crate) use pulp::WithSimd;

/// Runs `op` with the widest SIMD instruction set the CPU supports enabled (runtime dispatch).
/// Only code inlined into `op.with_simd` benefits: put whole loops inside it, not single calls.
#[inline(always)]
pub(crate) fn vectorized<Op: WithSimd>(op: Op) -> Op::Output {
    pulp::Arch::new().dispatch(op)
}

/// Dot product of two equally long f32 slices.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let (ra, rb) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        if let (Ok(x), Ok(y)) = (<&[f32; 8]>::try_from(x), <&[f32; 8]>::try_from(y)) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// 2-bit levels of `r` for step `step` (the uniform 4-level quantiser: thresholds `−step, 0,
/// step`, levels `(a − 1.5) · step` for `a ∈ 0..4`) written to `out`; returns `⟨ℓ, r⟩` and
/// `‖ℓ‖²` for the level vector `ℓ = a − 1.5`.
pub(crate) fn quantise_levels(r: &[f32], step: f32, out: &mut [u8]) -> (f32, f32) {
    let inv = if step > 0.0 { 1.0 / step } else { 0.0 };
    let (mut lr, mut ll) = (0.0f32, 0.0f32);
    for (x, o) in r.iter().zip(out.iter_mut()) {
        let a = (x * inv + 2.0).floor().clamp(0.0, 3.0);
        *o = a as u8;
        let l = a - 1.5;
        lr += l * x;
        ll += l * l;
    }
    (lr, ll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_bit_levels() {
        let mut levels = [9u8; 4];
        let (lr, ll) = quantise_levels(&[-2.5, -0.5, 0.2, 7.0], 1.0, &mut levels);
        assert_eq!(levels, [0, 1, 2, 3]);
        assert_eq!(ll, 2.0 * 1.5 * 1.5 + 2.0 * 0.25);
        assert!((lr - (3.75 + 0.25 + 0.1 + 10.5)).abs() < 1e-6);
    }
}
