CREATE TABLE IF NOT EXISTS usage_records (
    at_ms BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    streamed BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_records_tenant_time ON usage_records (tenant_id, at_ms);
