//! Metric names shared by every crate (the original platform's names where it had one).
//!
//! Crates record through the [`metrics`] facade; the server installs a Prometheus recorder.

/// Counter: HTTP requests by method, route and status.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// Histogram: HTTP request duration in milliseconds by method and route.
pub const HTTP_REQUEST_DURATION_MS: &str = "http_request_duration_ms";
/// Gauge: HTTP requests being served now.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
/// Counter: requests shed because of `MAX_CONCURRENT_REQUESTS`.
pub const HTTP_REQUESTS_SHED_TOTAL: &str = "http_requests_shed_total";
/// Counter: requests whose handler panicked (answered 500; the server keeps serving).
pub const HTTP_PANICS_TOTAL: &str = "http_panics_total";
/// Counter: requests answered 408 because their body did not arrive within the read timeout.
pub const HTTP_BODY_TIMEOUTS_TOTAL: &str = "http_body_timeouts_total";
/// Counter: LLM calls by provider, model and outcome.
pub const LLM_CALLS_TOTAL: &str = "llm_calls_total";
/// Counter: LLM tokens by provider, model and direction (input/output/cached).
pub const LLM_TOKENS_TOTAL: &str = "llm_tokens_total";
/// Counter: LLM cost in USD by provider and model.
pub const LLM_COST_USD: &str = "llm_cost_usd";
/// Histogram: LLM call latency in milliseconds.
pub const LLM_CALL_DURATION_MS: &str = "llm_call_duration_ms";
/// Counter: database queries by backend and operation.
pub const DB_QUERIES_TOTAL: &str = "db_queries_total";
/// Counter: cache operations by cache and result (hit/miss/set/evict).
pub const CACHE_OPERATIONS_TOTAL: &str = "cache_operations_total";
/// Gauge: circuit breaker state (0 closed, 1 half-open, 2 open) by breaker.
pub const BREAKER_STATE: &str = "circuit_breaker_state";
/// Counter: circuit breaker transitions by breaker and target state.
pub const BREAKER_TRANSITIONS: &str = "circuit_breaker_transitions_total";
/// Counter: calls rejected by an open breaker.
pub const BREAKER_REJECTIONS: &str = "circuit_breaker_rejections_total";
/// Counter: retries performed.
pub const RETRIES: &str = "retries_total";
/// Counter: calls rejected by a full bulkhead.
pub const BULKHEAD_REJECTIONS: &str = "bulkhead_rejections_total";
/// Counter: requests rejected by rate limits, by scope.
pub const RATE_LIMITED_TOTAL: &str = "rate_limited_total";
/// Gauge: the highest share of a budget's limit committed in its current period (1 = exhausted)
/// among the budgets of one kind, by `scope` (`tenant`, `key`, `model`) and `period` (`total`,
/// `daily`, `monthly`). No tenant id in labels.
pub const BUDGET_UTILIZATION_RATIO: &str = "llm_budget_utilization_ratio";
/// Histogram: time the gateway itself adds to a proxied LLM call, in microseconds.
pub const GATEWAY_OVERHEAD_US: &str = "gateway_overhead_us";

/// Registers units and descriptions with the installed recorder. Call once after installing it.
pub fn describe_all() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests served");
    describe_histogram!(
        HTTP_REQUEST_DURATION_MS,
        Unit::Milliseconds,
        "HTTP request duration"
    );
    describe_gauge!(HTTP_REQUESTS_IN_FLIGHT, "HTTP requests being served");
    describe_counter!(
        HTTP_REQUESTS_SHED_TOTAL,
        "HTTP requests shed by the concurrency limit"
    );
    describe_counter!(
        HTTP_PANICS_TOTAL,
        "HTTP requests whose handler panicked (answered 500)"
    );
    describe_counter!(
        HTTP_BODY_TIMEOUTS_TOTAL,
        "HTTP requests whose body did not arrive within the read timeout (answered 408)"
    );
    describe_counter!(LLM_CALLS_TOTAL, "LLM calls");
    describe_counter!(LLM_TOKENS_TOTAL, "LLM tokens");
    describe_counter!(LLM_COST_USD, "LLM cost in US dollars");
    describe_gauge!(
        BUDGET_UTILIZATION_RATIO,
        "Share of a budget's limit committed in its current period (1 = exhausted)"
    );
    describe_histogram!(LLM_CALL_DURATION_MS, Unit::Milliseconds, "LLM call latency");
    describe_counter!(DB_QUERIES_TOTAL, "Database queries");
    describe_counter!(CACHE_OPERATIONS_TOTAL, "Cache operations");
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(BREAKER_TRANSITIONS, "Circuit breaker state transitions");
    describe_counter!(
        BREAKER_REJECTIONS,
        "Calls rejected by an open circuit breaker"
    );
    describe_counter!(RETRIES, "Retries performed");
    describe_counter!(BULKHEAD_REJECTIONS, "Calls rejected by a full bulkhead");
    describe_counter!(RATE_LIMITED_TOTAL, "Requests rejected by rate limits");
    describe_histogram!(
        GATEWAY_OVERHEAD_US,
        Unit::Microseconds,
        "Latency added by the gateway"
    );
}
