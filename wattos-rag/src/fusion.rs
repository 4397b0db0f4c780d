//! Fusing ranked lists: reciprocal rank fusion and weighted (min-max normalised) score fusion.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wattos_core::vector_store::{Hit, sort_hits};

/// How dense and keyword results are combined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fusion {
    /// Reciprocal rank fusion: `sum 1 / (k + rank)`, rank from 1. `k = 60` is the usual choice.
    Rrf {
        /// Damping constant.
        k: f32,
    },
    /// `w * norm(dense) + (1 - w) * norm(keyword)`, each list min-max normalised to 0..=1 (a single
    /// hit normalises to 1); missing from a list counts 0.
    Weighted {
        /// Weight of the dense list, 0..=1.
        dense_weight: f32,
    },
}

impl Default for Fusion {
    fn default() -> Self {
        Self::Rrf { k: 60.0 }
    }
}

/// Fuses ranked lists (each best first) into one, best first; each hit keeps the text and metadata
/// of its first occurrence and gets the fused score.
pub fn fuse(lists: &[Vec<Hit>], weights: &[f32], fusion: Fusion) -> Vec<Hit> {
    let mut scores: HashMap<&str, (f32, &Hit)> = HashMap::new();
    for (li, list) in lists.iter().enumerate() {
        let w = weights.get(li).copied().unwrap_or(1.0);
        let (min, max) = list
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| {
                (lo.min(h.score), hi.max(h.score))
            });
        for (rank, h) in list.iter().enumerate() {
            let s = match fusion {
                Fusion::Rrf { k } => w / (k + rank as f32 + 1.0),
                Fusion::Weighted { .. } => {
                    let norm = if max > min {
                        (h.score - min) / (max - min)
                    } else {
                        1.0
                    };
                    w * norm
                }
            };
            scores
                .entry(h.id.as_str())
                .and_modify(|e| e.0 += s)
                .or_insert((s, h));
        }
    }
    let mut out: Vec<Hit> = scores
        .into_values()
        .map(|(s, h)| Hit {
            score: s,
            ..h.clone()
        })
        .collect();
    sort_hits(&mut out);
    out
}

/// Weights for `[dense, keyword]` under `fusion`.
pub(crate) fn weights(fusion: Fusion) -> [f32; 2] {
    match fusion {
        Fusion::Rrf { .. } => [1.0, 1.0],
        Fusion::Weighted { dense_weight } => {
            let w = dense_weight.clamp(0.0, 1.0);
            [w, 1.0 - w]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, score: f32) -> Hit {
        Hit {
            id: id.into(),
            document_id: "d".into(),
            score,
            text: String::new(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn rrf_rewards_agreement() {
        let dense = vec![hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)];
        let kw = vec![hit("b", 12.0), hit("d", 10.0)];
        let fused = fuse(&[dense, kw], &[1.0, 1.0], Fusion::Rrf { k: 60.0 });
        assert_eq!(fused[0].id, "b");
        assert_eq!(fused.len(), 4);
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
    }

    #[test]
    fn weighted_fusion_normalises_scores() {
        let dense = vec![hit("a", 0.9), hit("b", 0.1)];
        let kw = vec![hit("b", 30.0), hit("a", 10.0)];
        let f = fuse(
            &[dense.clone(), kw.clone()],
            &weights(Fusion::Weighted { dense_weight: 0.8 }),
            Fusion::Weighted { dense_weight: 0.8 },
        );
        assert_eq!(f[0].id, "a");
        let f = fuse(
            &[dense, kw],
            &weights(Fusion::Weighted { dense_weight: 0.2 }),
            Fusion::Weighted { dense_weight: 0.2 },
        );
        assert_eq!(f[0].id, "b");
        assert!(fuse(&[], &[], Fusion::default()).is_empty());
    }
}
