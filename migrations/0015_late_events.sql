-- 0015: exactly-once across retention. Once a month of usage_events is
-- archived and dropped (0014), an event of that month would be routed to
-- usage_events_default, where ON CONFLICT cannot see the archived copy: a
-- redelivery (billing crashed between commit and XACK, a spool replayed
-- after a long Redis outage) would be billed a second time. So an event
-- older than the newest archived range_to is not inserted (the row trigger
-- returns NULL: billing's INSERT ... RETURNING does not return it, so it is
-- charged to no ledger, key or rollup) and is kept here instead, without
-- text, for an operator to look up in the archive (deploy/postgres.md,
-- "Late events"). Only rows routed to the default partition pay the check.
CREATE TABLE late_events (
	generation_id text NOT NULL,
	created_at    timestamptz NOT NULL,
	account_id    bigint NOT NULL,
	key_id        bigint NOT NULL,
	cost_nusd     bigint NOT NULL,
	seen_at       timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (generation_id, created_at)
);

CREATE FUNCTION agora_refuse_archived_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.created_at < (SELECT max(range_to) FROM partition_archives WHERE parent = 'usage_events') THEN
		INSERT INTO late_events (generation_id, created_at, account_id, key_id, cost_nusd)
		VALUES (NEW.generation_id, NEW.created_at, NEW.account_id, NEW.key_id, NEW.cost_nusd)
		ON CONFLICT DO NOTHING;
		RETURN NULL;
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER usage_events_default_archived BEFORE INSERT ON usage_events_default
	FOR EACH ROW EXECUTE FUNCTION agora_refuse_archived_events();
