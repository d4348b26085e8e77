-- 0005: per-key rate limits (requests and tokens per minute); NULL means the
-- configured defaults (key_rpm_default, key_tpm_default; 0 = unlimited).
ALTER TABLE api_keys
	ADD COLUMN rpm_limit integer CHECK (rpm_limit IS NULL OR rpm_limit >= 0),
	ADD COLUMN tpm_limit bigint CHECK (tpm_limit IS NULL OR tpm_limit >= 0);
