-- 0001: the catalog (providers, models, endpoints), accounts, API keys and the
-- ledger's first shape. Applied by `agoractl migrate` inside one transaction and
-- recorded in schema_migrations. Money: prices are integer micro-USD per million
-- tokens, amounts are integer nano-USD (BIGINT); never floating point.

CREATE TABLE providers (
	id                  text PRIMARY KEY,               -- short slug, e.g. "deepinfra"
	name                text NOT NULL,
	api                 text NOT NULL CHECK (api IN ('openai', 'anthropic')),
	base_url            text NOT NULL,                  -- e.g. https://host/v1
	api_key_env         text,                           -- env var holding the provider's key
	region              text NOT NULL DEFAULT 'US',     -- data residency of its endpoints
	data_training       boolean NOT NULL DEFAULT false, -- trains on prompts?
	data_retention_days integer NOT NULL DEFAULT 0 CHECK (data_retention_days >= 0),
	status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
	updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE models (
	id                   text PRIMARY KEY,              -- "author/slug"
	name                 text NOT NULL,
	author               text NOT NULL,
	description          text NOT NULL DEFAULT '',
	origin               text,                          -- country/region of the lab, e.g. CN
	license              text,
	open_weights         boolean NOT NULL DEFAULT true,
	context_length       integer NOT NULL CHECK (context_length > 0),
	created              bigint NOT NULL DEFAULT extract(epoch FROM now())::bigint,
	input_modalities     text[] NOT NULL DEFAULT '{text}',
	output_modalities    text[] NOT NULL DEFAULT '{text}',
	tokenizer            text NOT NULL DEFAULT 'Other',
	supported_parameters text[] NOT NULL DEFAULT '{}',
	status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
	updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE endpoints (
	id                        bigserial PRIMARY KEY,
	model_id                  text NOT NULL REFERENCES models (id) ON DELETE CASCADE,
	provider_id               text NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
	upstream_model            text NOT NULL,            -- the model name the provider expects
	quantization              text NOT NULL DEFAULT 'unknown',
	context_length            integer NOT NULL CHECK (context_length > 0),
	max_output                integer NOT NULL CHECK (max_output > 0),
	prompt_uusd_per_mtok      bigint NOT NULL CHECK (prompt_uusd_per_mtok >= 0),
	completion_uusd_per_mtok  bigint NOT NULL CHECK (completion_uusd_per_mtok >= 0),
	supported_parameters      text[],                   -- NULL: the model's list
	status                    text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
	updated_at                timestamptz NOT NULL DEFAULT now(),
	UNIQUE (model_id, provider_id)
);
CREATE INDEX endpoints_provider_idx ON endpoints (provider_id);

-- One row; bumped by every catalog change so routers can poll cheaply.
CREATE TABLE catalog_version (
	id         integer PRIMARY KEY CHECK (id = 1),
	version    bigint NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);

CREATE TABLE accounts (
	id         bigserial PRIMARY KEY,
	name       text NOT NULL UNIQUE,
	status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
	created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored only as HMAC-SHA256(server secret, key). The clear key is
-- shown once, at creation. `prefix` is the first characters, for people to tell
-- keys apart. kind: 'inference' (chat completions) or 'operator' (provisioning,
-- analytics of every account).
CREATE TABLE api_keys (
	id          bigserial PRIMARY KEY,
	account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	hash        bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
	prefix      text NOT NULL,
	name        text NOT NULL DEFAULT '',
	kind        text NOT NULL DEFAULT 'inference' CHECK (kind IN ('inference', 'operator')),
	limit_nusd  bigint CHECK (limit_nusd IS NULL OR limit_nusd >= 0),
	usage_nusd  bigint NOT NULL DEFAULT 0,
	disabled    boolean NOT NULL DEFAULT false,
	revoked_at  timestamptz,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

-- Append-only money movements of an account; the balance is their sum.
CREATE TABLE ledger (
	id                 bigserial PRIMARY KEY,
	account_id         bigint NOT NULL REFERENCES accounts (id),
	kind               text NOT NULL CHECK (kind IN ('topup', 'usage', 'adjustment', 'refund')),
	amount_nusd        bigint NOT NULL,                 -- + credit, - charge
	provider_cost_nusd bigint NOT NULL DEFAULT 0,       -- what the provider bills us (usage)
	generation_id      text UNIQUE,                     -- usage entries: one per generation
	note               text NOT NULL DEFAULT '',
	created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_account_idx ON ledger (account_id, created_at);
