-- 0007: hourly rollups per model and provider endpoint, written by billing in
-- the same transaction as the events, the ledger and the daily rollups. They
-- serve market share and provider health by the hour without reading events:
-- volume, money, failures and the sums that give mean latency, time to first
-- token and output speed (sum / requests). No account: these are the
-- marketplace's aggregates.
CREATE TABLE usage_hourly (
	hour               timestamptz NOT NULL,
	model_id           text NOT NULL,
	model_author       text NOT NULL,
	provider_id        text NOT NULL,
	endpoint_id        bigint NOT NULL,
	requests           bigint NOT NULL DEFAULT 0,
	failures           bigint NOT NULL DEFAULT 0,     -- status other than 200
	streamed           bigint NOT NULL DEFAULT 0,
	prompt_tokens      bigint NOT NULL DEFAULT 0,
	completion_tokens  bigint NOT NULL DEFAULT 0,
	cost_nusd          bigint NOT NULL DEFAULT 0,
	provider_cost_nusd bigint NOT NULL DEFAULT 0,
	latency_ms_sum     bigint NOT NULL DEFAULT 0,
	ttft_ms_sum        bigint NOT NULL DEFAULT 0,
	tps_milli_sum      bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (hour, model_id, provider_id, endpoint_id)
);
CREATE INDEX usage_hourly_provider_idx ON usage_hourly (provider_id, hour);
