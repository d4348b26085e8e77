-- 0003: daily rollups billing maintains in the same transaction as the events
-- and the ledger, so events = ledger = rollups at every commit. Keyed by UTC
-- day, account, key, model, provider and app (empty string when none).
CREATE TABLE usage_daily (
	day                date NOT NULL,
	account_id         bigint NOT NULL,
	key_id             bigint NOT NULL,
	model_id           text NOT NULL,
	model_author       text NOT NULL,
	provider_id        text NOT NULL,
	app                text NOT NULL DEFAULT '',
	requests           bigint NOT NULL DEFAULT 0,
	prompt_tokens      bigint NOT NULL DEFAULT 0,
	completion_tokens  bigint NOT NULL DEFAULT 0,
	cost_nusd          bigint NOT NULL DEFAULT 0,
	provider_cost_nusd bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (day, account_id, key_id, model_id, provider_id, app)
);
CREATE INDEX usage_daily_model_idx ON usage_daily (day, model_id);
CREATE INDEX usage_daily_provider_idx ON usage_daily (day, provider_id);
