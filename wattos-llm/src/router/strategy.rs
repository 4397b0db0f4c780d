//! Routing strategies: which of a group's eligible deployments to try next.
//!
//! The router decides *which deployments are eligible* (breaker not open, not cooling down, context
//! fits, limits allow) and acts on the outcome; a [`RoutingStrategy`] only picks one of the eligible
//! candidates. After a failure the router removes the failed candidate and asks again, so every
//! strategy also defines the fallback order inside its group.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a strategy sees about one eligible deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    /// Deployment id.
    pub id: &'a str,
    /// Configured weight.
    pub weight: u32,
    /// Configured priority (lower first).
    pub priority: u32,
    /// Calls in flight right now.
    pub in_flight: usize,
    /// Exponentially weighted moving average of successful call latency; `None` until measured.
    pub latency: Option<Duration>,
    /// Estimated cost of this request on this deployment, nano-dollars.
    pub estimated_cost_nanos: i64,
}

/// Picks one of the candidates. Object safe; implementations keep any state behind `&self`.
///
/// ```
/// use wattos_llm::router::{Candidate, RoutingStrategy};
///
/// /// Always the deployment with the longest id (a silly but valid policy).
/// #[derive(Debug)]
/// struct LongestId;
/// impl RoutingStrategy for LongestId {
///     fn name(&self) -> &str { "longest_id" }
///     fn pick(&self, c: &[Candidate<'_>], _rng: &mut fastrand::Rng) -> usize {
///         (0..c.len()).max_by_key(|&i| c[i].id.len()).unwrap_or(0)
///     }
/// }
/// let c = |id| Candidate { id, weight: 1, priority: 0, in_flight: 0, latency: None,
///     estimated_cost_nanos: 0 };
/// let picked = LongestId.pick(&[c("a"), c("bbb")], &mut fastrand::Rng::with_seed(1));
/// assert_eq!(picked, 1);
/// ```
pub trait RoutingStrategy: Send + Sync + fmt::Debug {
    /// Name for logs and docs.
    fn name(&self) -> &str;

    /// Returns an index into `candidates` (never empty). Out-of-range answers are clamped.
    fn pick(&self, candidates: &[Candidate<'_>], rng: &mut fastrand::Rng) -> usize;
}

/// The built-in strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Lowest `priority` first, configuration order among equals.
    #[default]
    Priority,
    /// Random, proportional to `weight`.
    WeightedRandom,
    /// Each deployment in turn.
    RoundRobin,
    /// Fewest calls in flight (ties: configuration order).
    LeastInFlight,
    /// Power of two choices on the latency EWMA: sample two, take the faster. Unmeasured deployments
    /// are tried first so every deployment gets a measurement.
    LowestLatency,
    /// Lowest estimated cost for this request (ties: priority, then order).
    LowestCost,
}

impl Strategy {
    /// The policy object for this strategy.
    pub fn build(self) -> Arc<dyn RoutingStrategy> {
        match self {
            Self::Priority => Arc::new(PriorityOrder),
            Self::WeightedRandom => Arc::new(WeightedRandom),
            Self::RoundRobin => Arc::new(RoundRobin::default()),
            Self::LeastInFlight => Arc::new(LeastInFlight),
            Self::LowestLatency => Arc::new(LowestLatency),
            Self::LowestCost => Arc::new(LowestCost),
        }
    }
}

/// See [`Strategy::Priority`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PriorityOrder;

impl RoutingStrategy for PriorityOrder {
    fn name(&self) -> &str {
        "priority"
    }
    fn pick(&self, c: &[Candidate<'_>], _rng: &mut fastrand::Rng) -> usize {
        (0..c.len())
            .min_by_key(|&i| (c[i].priority, i))
            .unwrap_or(0)
    }
}

/// See [`Strategy::WeightedRandom`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedRandom;

impl RoutingStrategy for WeightedRandom {
    fn name(&self) -> &str {
        "weighted_random"
    }
    fn pick(&self, c: &[Candidate<'_>], rng: &mut fastrand::Rng) -> usize {
        let total: u64 = c.iter().map(|x| u64::from(x.weight)).sum();
        if total == 0 {
            return rng.usize(..c.len().max(1));
        }
        let mut roll = rng.u64(..total);
        for (i, x) in c.iter().enumerate() {
            let w = u64::from(x.weight);
            if roll < w {
                return i;
            }
            roll -= w;
        }
        c.len() - 1
    }
}

/// See [`Strategy::RoundRobin`].
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoutingStrategy for RoundRobin {
    fn name(&self) -> &str {
        "round_robin"
    }
    fn pick(&self, c: &[Candidate<'_>], _rng: &mut fastrand::Rng) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % c.len().max(1)
    }
}

/// See [`Strategy::LeastInFlight`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastInFlight;

impl RoutingStrategy for LeastInFlight {
    fn name(&self) -> &str {
        "least_in_flight"
    }
    fn pick(&self, c: &[Candidate<'_>], _rng: &mut fastrand::Rng) -> usize {
        (0..c.len())
            .min_by_key(|&i| (c[i].in_flight, c[i].priority, i))
            .unwrap_or(0)
    }
}

/// See [`Strategy::LowestLatency`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LowestLatency;

impl RoutingStrategy for LowestLatency {
    fn name(&self) -> &str {
        "lowest_latency"
    }
    fn pick(&self, c: &[Candidate<'_>], rng: &mut fastrand::Rng) -> usize {
        if let Some(i) = c.iter().position(|x| x.latency.is_none()) {
            return i;
        }
        if c.len() < 2 {
            return 0;
        }
        let a = rng.usize(..c.len());
        let mut b = rng.usize(..c.len() - 1);
        if b >= a {
            b += 1;
        }
        // Penalise load a little so one fast deployment is not swamped: latency * (1 + in_flight).
        let score = |i: usize| {
            c[i].latency.unwrap_or_default().as_secs_f64().mul_add(
                c[i].in_flight as f64,
                c[i].latency.unwrap_or_default().as_secs_f64(),
            )
        };
        if score(b) < score(a) { b } else { a }
    }
}

/// See [`Strategy::LowestCost`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LowestCost;

impl RoutingStrategy for LowestCost {
    fn name(&self) -> &str {
        "lowest_cost"
    }
    fn pick(&self, c: &[Candidate<'_>], _rng: &mut fastrand::Rng) -> usize {
        (0..c.len())
            .min_by_key(|&i| (c[i].estimated_cost_nanos, c[i].priority, i))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str) -> Candidate<'_> {
        Candidate {
            id,
            weight: 1,
            priority: 0,
            in_flight: 0,
            latency: None,
            estimated_cost_nanos: 0,
        }
    }

    #[allow(dead_code)]
    fn _object_safe(_: Box<dyn RoutingStrategy>) {}

    #[test]
    fn priority_then_order() {
        let mut c = vec![cand("a"), cand("b"), cand("c")];
        c[0].priority = 2;
        c[1].priority = 3;
        c[2].priority = 1;
        assert_eq!(PriorityOrder.pick(&c, &mut fastrand::Rng::new()), 2);
    }

    #[test]
    fn weighted_random_follows_weights() {
        let mut c = vec![cand("a"), cand("b"), cand("z")];
        c[0].weight = 1;
        c[1].weight = 3;
        c[2].weight = 0;
        let mut rng = fastrand::Rng::with_seed(42);
        let mut hits = [0u32; 3];
        for _ in 0..4000 {
            hits[WeightedRandom.pick(&c, &mut rng)] += 1;
        }
        assert_eq!(hits[2], 0);
        let ratio = f64::from(hits[1]) / f64::from(hits[0]);
        assert!((2.5..3.5).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn round_robin_cycles() {
        let rr = RoundRobin::default();
        let c = vec![cand("a"), cand("b"), cand("c")];
        let mut rng = fastrand::Rng::new();
        let picks: Vec<_> = (0..6).map(|_| rr.pick(&c, &mut rng)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_in_flight_and_lowest_cost() {
        let mut c = vec![cand("a"), cand("b")];
        c[0].in_flight = 3;
        c[1].in_flight = 1;
        c[0].estimated_cost_nanos = 10;
        c[1].estimated_cost_nanos = 20;
        let mut rng = fastrand::Rng::new();
        assert_eq!(LeastInFlight.pick(&c, &mut rng), 1);
        assert_eq!(LowestCost.pick(&c, &mut rng), 0);
    }

    #[test]
    fn lowest_latency_explores_then_prefers_fast() {
        let mut c = vec![cand("slow"), cand("fast"), cand("new")];
        c[0].latency = Some(Duration::from_millis(500));
        c[1].latency = Some(Duration::from_millis(50));
        let mut rng = fastrand::Rng::with_seed(3);
        assert_eq!(LowestLatency.pick(&c, &mut rng), 2, "unmeasured first");
        c[2].latency = Some(Duration::from_millis(300));
        let mut hits = [0u32; 3];
        for _ in 0..3000 {
            hits[LowestLatency.pick(&c, &mut rng)] += 1;
        }
        // Power of two choices: the fastest wins every pair it is in (2/3 of draws), the slowest never.
        assert_eq!(hits[0], 0);
        assert!(hits[1] > 1800, "{hits:?}");
    }
}
