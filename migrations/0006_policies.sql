-- 0006: operator routing policy per account and per key (lib/policy.h):
-- a JSON object of allowed/denied providers, regions, model origins and
-- licenses, open weights only, price ceilings and a data-policy floor.
-- NULL: no restriction. Set with `agoractl policy set`; a request can only
-- narrow it.
ALTER TABLE accounts ADD COLUMN policy jsonb CHECK (policy IS NULL OR jsonb_typeof(policy) = 'object');
ALTER TABLE api_keys ADD COLUMN policy jsonb CHECK (policy IS NULL OR jsonb_typeof(policy) = 'object');

-- Each attempt of a generation: [{"provider", "endpoint", "status", "latency_ms"}, ...]
ALTER TABLE usage_events ADD COLUMN provider_responses jsonb;
