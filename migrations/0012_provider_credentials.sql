-- 0012: provider credentials encrypted at rest (lib/secretbox.h): the API
-- key a provider gave the marketplace, sealed with AES-256-GCM under the
-- master key (master_key / master_key_file, never stored here) with the
-- provider id as associated data. Set with `agoractl provider set-key`;
-- when NULL the router falls back to the environment variable api_key_env.
ALTER TABLE providers ADD COLUMN api_key_sealed text
	CHECK (api_key_sealed IS NULL OR api_key_sealed LIKE 'v1:%');
