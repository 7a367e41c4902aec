-- Rate limits counted once across replicas (issue #19): one token bucket
-- per agent, updated in one atomic statement by whichever replica takes
-- the call. Used on PostgreSQL only (an SQLite hub is one process and
-- keeps its buckets in memory). Same dialect rules as 0001: tokens in
-- thousandths of a call, times in Unix milliseconds of the database clock.
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens_milli BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
