//! Greedy packing of pieces into token-bounded windows with overlap.

/// A contiguous byte range with its token count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) tokens: usize,
}

/// Packs ascending, non-overlapping pieces into windows of at most `max` tokens (a single larger
/// piece becomes its own window); each new window repeats trailing pieces worth at most `overlap`
/// tokens of the previous one. Returns byte ranges.
pub(crate) fn pack(pieces: &[Piece], max: usize, overlap: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        let mut sum = 0;
        while j < pieces.len() && (j == i || sum + pieces[j].tokens <= max) {
            sum += pieces[j].tokens;
            j += 1;
        }
        out.push((pieces[i].start, pieces[j - 1].end));
        if j >= pieces.len() {
            break;
        }
        // Step back over trailing pieces for overlap, always making progress.
        let mut k = j;
        let mut back = 0;
        while k > i + 1 && back + pieces[k - 1].tokens <= overlap {
            back += pieces[k - 1].tokens;
            k -= 1;
        }
        i = k;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(start: usize, tokens: usize) -> Piece {
        Piece {
            start,
            end: start + 1,
            tokens,
        }
    }

    #[test]
    fn packs_with_overlap_and_progress() {
        let pieces: Vec<Piece> = (0..10).map(|i| p(i, 1)).collect();
        assert_eq!(pack(&pieces, 4, 0), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(pack(&pieces, 4, 2), vec![(0, 4), (2, 6), (4, 8), (6, 10)]);
        // Overlap >= max still progresses.
        assert_eq!(pack(&pieces[..3], 2, 5).len(), 2);
        // An oversize piece stands alone.
        assert_eq!(pack(&[p(0, 9), p(1, 1)], 4, 0), vec![(0, 1), (1, 2)]);
        assert!(pack(&[], 4, 1).is_empty());
    }
}
