-- 0008: usage charges reach the ledger as one entry per account, UTC day and
-- billing batch (the sum of the batch's newly billed generations of that
-- account and day), not one per generation: the per-generation record is
-- usage_events, idempotent on the generation id, and a ledger entry is made
-- only from events that insert committed in the same transaction, so each
-- generation is charged exactly once. `generations` says how many an entry
-- covers. Entries written before this stay as they are (one per generation).
ALTER TABLE ledger ADD COLUMN generations integer NOT NULL DEFAULT 0;
UPDATE ledger SET generations = 1 WHERE kind = 'usage' AND generation_id IS NOT NULL;
