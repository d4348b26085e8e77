-- 0013: scopes of operator keys. NULL: every scope (keys made before).
--   keys       the provisioning API (/api/v1/keys)
--   analytics  market-wide analytics (share, providers, live, check)
--   finance    every account's spend and statements, reconciliation
-- Inference keys have no scopes: they complete, and read their own account.
ALTER TABLE api_keys ADD COLUMN scopes text[]
	CHECK (scopes IS NULL OR scopes <@ ARRAY['keys', 'analytics', 'finance']::text[]);
