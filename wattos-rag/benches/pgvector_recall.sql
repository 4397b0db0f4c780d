-- Recall and latency of pgvector's HNSW under the store's tenant and metadata filters (issue #21).
--
--   scripts/pgvector.sh start
--   psql "$(scripts/pgvector.sh url)" -v n=10000 -f wattos-rag/benches/pgvector_recall.sql
--
-- The table and index are the ones PgVectorStore creates (one table, mandatory tenant column,
-- HNSW vector_cosine_ops with pgvector's defaults m = 16, ef_construction = 64), and the filters
-- are the SQL PgVectorStore generates (`tenant = $1 AND COALESCE((metadata -> key) IN (value),
-- FALSE)`). Data as in benches/search.rs, generated in SQL (seeded): :n random 384-d unit vectors
-- as 10 tenants of 50 % .. 0.5 % of the rows, and the same number again as tenant `one` with
-- metadata selecting 50 %, 5 % and 0.5 %. Queries: a stored vector of the case plus Gaussian noise
-- of norm ~0.5, renormalised. Recall@10 against the exact top 10 (sequential scan, index off);
-- latency is the server-side execution time of the ORDER BY ... LIMIT 10 statement.
\set ON_ERROR_STOP on
\if :{?n}
\else
  \set n 10000
\endif
\timing off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS vector;
DROP TABLE IF EXISTS i21_vectors;
CREATE TABLE i21_vectors (tenant text NOT NULL, id text NOT NULL, document_id text NOT NULL,
  text text NOT NULL, metadata jsonb NOT NULL DEFAULT '{}', embedding vector(384) NOT NULL,
  PRIMARY KEY (tenant, id));
SELECT setseed(0.21);
CREATE TEMP TABLE i21_shares AS
  SELECT * FROM (VALUES (0, 0, 500), (1, 500, 700), (2, 700, 800), (3, 800, 880), (4, 880, 930),
    (5, 930, 960), (6, 960, 980), (7, 980, 990), (8, 990, 995), (9, 995, 1000)) v(t, lo, hi);
INSERT INTO i21_vectors
SELECT 't' || sh.t, 'r' || i, 'd' || (i / 8), 'x', '{}',
  l2_normalize((SELECT array_agg(sqrt(-2 * ln(random())) * cos(2 * pi() * random()))
                FROM generate_series(1, 384 + 0 * i))::vector)
FROM generate_series(0, :n - 1) i
JOIN i21_shares sh ON ((hashint4(i) & 2147483647) % 1000) >= sh.lo
                  AND ((hashint4(i) & 2147483647) % 1000) < sh.hi;
INSERT INTO i21_vectors
SELECT 'one', 'r' || i, 'd' || (i / 8), 'x',
  jsonb_build_object('half', h % 2 = 0, 'twentieth', h % 20 = 0, 'rare', h % 200 = 0),
  l2_normalize((SELECT array_agg(sqrt(-2 * ln(random())) * cos(2 * pi() * random()))
                FROM generate_series(1, 384 + 0 * i))::vector)
FROM (SELECT i, hashint4(i + 7777777) & 2147483647 AS h FROM generate_series(0, :n - 1) i) s;
CREATE INDEX i21_vectors_tenant_doc ON i21_vectors (tenant, document_id);
SET maintenance_work_mem = '1GB';
\timing on
CREATE INDEX i21_vectors_hnsw ON i21_vectors USING hnsw (embedding vector_cosine_ops);
\timing off
ANALYZE i21_vectors;
SELECT pg_size_pretty(pg_relation_size('i21_vectors_hnsw')) AS hnsw_index_size,
       pg_size_pretty(pg_total_relation_size('i21_vectors')) AS table_total_size;

CREATE OR REPLACE FUNCTION i21_case(p_tenant text, p_key text, p_ef int, p_mode text, p_queries int)
RETURNS TABLE(rows bigint, recall float8, p50_ms float8, p99_ms float8) LANGUAGE plpgsql AS $$
DECLARE
  cond text := CASE WHEN p_key IS NULL THEN 'TRUE'
                    ELSE format('COALESCE((metadata -> %L) IN (''true''::jsonb), FALSE)', p_key) END;
  sql text := format('SELECT array_agg(id) FROM (SELECT id FROM i21_vectors WHERE tenant = $1 AND %s
                      ORDER BY embedding <=> $2, id LIMIT 10) s', cond);
  src record; q vector; got text[]; want text[]; t0 timestamptz; lat float8[] := '{}';
  found int := 0; total int := 0;
BEGIN
  EXECUTE format('SELECT count(*) FROM i21_vectors WHERE tenant = $1 AND %s', cond) INTO rows USING p_tenant;
  PERFORM set_config('hnsw.ef_search', p_ef::text, true);
  PERFORM set_config('hnsw.iterative_scan', p_mode, true);
  FOR src IN EXECUTE format('SELECT embedding FROM i21_vectors WHERE tenant = $1 AND %s
                             ORDER BY hashtext(id) LIMIT $2', cond) USING p_tenant, p_queries LOOP
    q := l2_normalize(src.embedding + (SELECT array_agg(0.5 / sqrt(384) * sqrt(-2 * ln(random()))
                                                        * cos(2 * pi() * random()))
                                       FROM generate_series(1, 384))::vector);
    PERFORM set_config('enable_indexscan', 'on', true);
    t0 := clock_timestamp();
    EXECUTE sql INTO got USING p_tenant, q;
    lat := lat || extract(epoch FROM clock_timestamp() - t0) * 1000;
    PERFORM set_config('enable_indexscan', 'off', true);
    EXECUTE sql INTO want USING p_tenant, q;
    found := found + (SELECT count(*) FROM unnest(coalesce(got, '{}')) g WHERE g = ANY (want));
    total := total + coalesce(array_length(want, 1), 0);
  END LOOP;
  recall := found::float8 / greatest(total, 1);
  SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x), percentile_disc(0.99) WITHIN GROUP (ORDER BY x)
    INTO p50_ms, p99_ms FROM unnest(lat) x;
  RETURN NEXT;
END $$;

SELECT c.name AS "case", m.mode, e.ef, r.rows, round(r.recall::numeric, 3) AS recall_at_10,
       round(r.p50_ms::numeric, 2) AS p50_ms, round(r.p99_ms::numeric, 2) AS p99_ms
FROM (VALUES (1, 'tenant 50%', 't0', NULL), (2, 'tenant 5%', 't4', NULL), (3, 'tenant 0.5%', 't8', NULL),
             (4, 'unfiltered', 'one', NULL), (5, 'filter 50%', 'one', 'half'),
             (6, 'filter 5%', 'one', 'twentieth'), (7, 'filter 0.5%', 'one', 'rare'))
       c(ord, name, tenant, key)
CROSS JOIN (VALUES ('strict_order'), ('relaxed_order')) m(mode)
CROSS JOIN (VALUES (40), (100), (200), (400), (800)) e(ef)
CROSS JOIN LATERAL i21_case(c.tenant, c.key, e.ef, m.mode, 100) r
ORDER BY c.ord, m.mode DESC, e.ef;
