-- 0002: metering. What the provider bills us per endpoint (so the margin is
-- visible; NULL means the same as the price we charge), and the usage events
-- billing writes, partitioned by month of the event's time. Idempotent on the
-- generation id: (generation_id, created_at) is unique because an event keeps
-- its time across redeliveries, and the ledger's generation_id is unique too.

ALTER TABLE endpoints
	ADD COLUMN cost_prompt_uusd_per_mtok bigint CHECK (cost_prompt_uusd_per_mtok >= 0),
	ADD COLUMN cost_completion_uusd_per_mtok bigint CHECK (cost_completion_uusd_per_mtok >= 0);

CREATE TABLE usage_events (
	generation_id      text NOT NULL,
	created_at         timestamptz NOT NULL,
	account_id         bigint NOT NULL,
	key_id             bigint NOT NULL,
	app_url            text,
	app_title          text,
	model_id           text NOT NULL,
	model_author       text NOT NULL,
	provider_id        text NOT NULL,
	endpoint_id        bigint NOT NULL,
	prompt_tokens      bigint NOT NULL,
	completion_tokens  bigint NOT NULL,
	cached_tokens      bigint NOT NULL DEFAULT 0,
	reasoning_tokens   bigint NOT NULL DEFAULT 0,
	cost_nusd          bigint NOT NULL,
	provider_cost_nusd bigint NOT NULL,
	latency_ms         integer NOT NULL,
	ttft_ms            integer NOT NULL,
	tps_milli          bigint NOT NULL,
	streamed           boolean NOT NULL,
	estimated          boolean NOT NULL,
	status             integer NOT NULL,
	attempts           integer NOT NULL,
	finish_reason      text,
	PRIMARY KEY (generation_id, created_at)
) PARTITION BY RANGE (created_at);

-- A catch-all so no event is ever refused; billing creates monthly partitions
-- ahead of time, and `agoractl` documents detaching old ones.
CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
CREATE INDEX usage_events_account_idx ON usage_events (account_id, created_at);
