-- 0014: retention of time-partitioned tables (deploy/postgres.md). `agoractl
-- partitions retain` exports each monthly partition of usage_events entirely
-- older than the window to a gzipped CSV with a manifest (rows, sha256),
-- checks it, detaches and drops the partition, and records it here in the
-- transaction that drops it (or, with --keep-detached, that detaches it).
-- The ledger and every rollup stay: statements, balances and dashboards are
-- unchanged by retention; GET /generation answers 404 "past retention" for a
-- generation older than the newest archived range_to.
CREATE TABLE partition_archives (
	partition    text PRIMARY KEY,		-- e.g. usage_events_202401
	parent       text NOT NULL,		-- e.g. usage_events
	range_from   timestamptz NOT NULL,
	range_to     timestamptz NOT NULL,
	rows         bigint NOT NULL CHECK (rows >= 0),
	sha256       text NOT NULL,		-- of the archive file as written
	file         text NOT NULL,		-- its name in the archive directory
	bytes        bigint NOT NULL,
	archived_at  timestamptz NOT NULL DEFAULT now(),
	dropped_at   timestamptz,		-- NULL: kept detached
	CHECK (range_from < range_to)
);
CREATE INDEX partition_archives_parent_idx ON partition_archives (parent, range_to);
