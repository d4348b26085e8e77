-- 0009: monthly partitions of usage_events, made ahead of time. Billing calls
-- agora_ensure_event_partitions(2) at start and with every status check, so
-- the current month and the next two always have their own partition; the
-- default partition only catches what falls outside (clock skew, replays of
-- very old spools). A month that already has rows in the default partition is
-- left there (PostgreSQL would refuse the new partition). Returns how many
-- partitions it made.
CREATE OR REPLACE FUNCTION agora_ensure_event_partitions(months_ahead integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	first timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
	lo timestamptz;
	hi timestamptz;
	part text;
	made integer := 0;
BEGIN
	FOR i IN 0..months_ahead LOOP
		lo := (first + make_interval(months => i)) AT TIME ZONE 'UTC';
		hi := (first + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
		part := 'usage_events_' || to_char(first + make_interval(months => i), 'YYYYMM');
		CONTINUE WHEN to_regclass(part) IS NOT NULL;
		CONTINUE WHEN EXISTS (SELECT 1 FROM usage_events_default WHERE created_at >= lo AND created_at < hi);
		EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
		made := made + 1;
	END LOOP;
	RETURN made;
END $$;

SELECT agora_ensure_event_partitions(2);
