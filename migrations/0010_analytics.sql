-- 0010: the analytics read side. What billing adds for it, in the same
-- transaction as everything else (billing/consumer.c):
--  * usage_daily_endpoints (per UTC day and endpoint), usage_daily_keys (per
--    UTC day, account and key) and usage_monthly_keys (per UTC month,
--    account and key): the same sums as usage_hourly and usage_daily with
--    far fewer rows, so a month's rankings (share by model, author,
--    provider, origin) and spend (by account, key, model, provider, day)
--    read a few thousand rows whatever the traffic;
--  * usage_daily.reasoning_tokens, for OpenRouter's GET /activity shape;
--  * attempts_hourly: per hour and endpoint, the attempts that failed and were
--    moved on from (fail-overs), which usage_hourly cannot show (it counts the
--    generation where it was served). Provider health's uptime is
--    (served + failed over - failed) / (served + failed over).
-- And the indexes the read side's queries use: an account's days, a model's
-- hours. Existing rows are backfilled from the rollups and usage_events.
CREATE TABLE usage_daily_endpoints (
	day                date NOT NULL,
	model_id           text NOT NULL,
	model_author       text NOT NULL,
	provider_id        text NOT NULL,
	endpoint_id        bigint NOT NULL,
	requests           bigint NOT NULL DEFAULT 0,
	prompt_tokens      bigint NOT NULL DEFAULT 0,
	completion_tokens  bigint NOT NULL DEFAULT 0,
	cost_nusd          bigint NOT NULL DEFAULT 0,
	provider_cost_nusd bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (day, model_id, provider_id, endpoint_id)
);

CREATE TABLE usage_daily_keys (
	day                date NOT NULL,
	account_id         bigint NOT NULL,
	key_id             bigint NOT NULL,
	requests           bigint NOT NULL DEFAULT 0,
	prompt_tokens      bigint NOT NULL DEFAULT 0,
	completion_tokens  bigint NOT NULL DEFAULT 0,
	cost_nusd          bigint NOT NULL DEFAULT 0,
	provider_cost_nusd bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (day, account_id, key_id)
);
CREATE INDEX usage_daily_keys_account_idx ON usage_daily_keys (account_id, day);

CREATE TABLE usage_monthly_keys (
	month              date NOT NULL CHECK (extract(day FROM month) = 1),
	account_id         bigint NOT NULL,
	key_id             bigint NOT NULL,
	requests           bigint NOT NULL DEFAULT 0,
	prompt_tokens      bigint NOT NULL DEFAULT 0,
	completion_tokens  bigint NOT NULL DEFAULT 0,
	cost_nusd          bigint NOT NULL DEFAULT 0,
	provider_cost_nusd bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (month, account_id, key_id)
);
CREATE INDEX usage_monthly_keys_account_idx ON usage_monthly_keys (account_id, month);

INSERT INTO usage_daily_endpoints (day, model_id, model_author, provider_id, endpoint_id, requests, prompt_tokens,
                                   completion_tokens, cost_nusd, provider_cost_nusd)
SELECT (hour AT TIME ZONE 'UTC')::date, model_id, min(model_author), provider_id, endpoint_id, sum(requests),
       sum(prompt_tokens), sum(completion_tokens), sum(cost_nusd), sum(provider_cost_nusd)
FROM usage_hourly GROUP BY 1, 2, 4, 5;

INSERT INTO usage_daily_keys (day, account_id, key_id, requests, prompt_tokens, completion_tokens, cost_nusd,
                              provider_cost_nusd)
SELECT day, account_id, key_id, sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost_nusd),
       sum(provider_cost_nusd)
FROM usage_daily GROUP BY 1, 2, 3;

INSERT INTO usage_monthly_keys (month, account_id, key_id, requests, prompt_tokens, completion_tokens, cost_nusd,
                                provider_cost_nusd)
SELECT date_trunc('month', day::timestamp)::date, account_id, key_id, sum(requests), sum(prompt_tokens),
       sum(completion_tokens), sum(cost_nusd), sum(provider_cost_nusd)
FROM usage_daily_keys GROUP BY 1, 2, 3;

ALTER TABLE usage_daily ADD COLUMN reasoning_tokens bigint NOT NULL DEFAULT 0;

CREATE TABLE attempts_hourly (
	hour        timestamptz NOT NULL,
	model_id    text NOT NULL,
	provider_id text NOT NULL,
	endpoint_id bigint NOT NULL,
	failures    bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (hour, model_id, provider_id, endpoint_id)
);

CREATE INDEX usage_daily_account_idx ON usage_daily (account_id, day);
CREATE INDEX usage_hourly_model_idx ON usage_hourly (model_id, hour);

UPDATE usage_daily d SET reasoning_tokens = s.r
FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, account_id, key_id, model_id, provider_id,
             coalesce(app_title, app_url, '') AS app, sum(reasoning_tokens) AS r
      FROM usage_events WHERE reasoning_tokens <> 0 GROUP BY 1, 2, 3, 4, 5, 6) s
WHERE d.day = s.day AND d.account_id = s.account_id AND d.key_id = s.key_id
  AND d.model_id = s.model_id AND d.provider_id = s.provider_id AND d.app = s.app;

INSERT INTO attempts_hourly (hour, model_id, provider_id, endpoint_id, failures)
SELECT date_trunc('hour', e.created_at), t.e ->> 'model', t.e ->> 'provider',
       (t.e ->> 'endpoint_id')::numeric::bigint, count(*)
FROM usage_events e
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(e.provider_responses) = 'array'
                                        THEN e.provider_responses END) WITH ORDINALITY AS t(e, n)
WHERE t.n < jsonb_array_length(e.provider_responses)
  AND jsonb_typeof(t.e -> 'model') = 'string' AND jsonb_typeof(t.e -> 'provider') = 'string'
  AND jsonb_typeof(t.e -> 'endpoint_id') = 'number'
GROUP BY 1, 2, 3, 4;

-- Monthly partitions of usage_events for the months of [lo, hi] (UTC) that
-- have none yet, as agora_ensure_event_partitions does ahead of time (same
-- names and bounds; a month with rows in the default partition is left
-- there). `agoractl simulate` makes the past months it fills.
CREATE OR REPLACE FUNCTION agora_event_partitions_between(lo date, hi date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	m timestamp := date_trunc('month', lo::timestamp);
	a timestamptz;
	b timestamptz;
	part text;
	made integer := 0;
BEGIN
	WHILE m <= hi::timestamp LOOP
		a := m AT TIME ZONE 'UTC';
		b := (m + interval '1 month') AT TIME ZONE 'UTC';
		part := 'usage_events_' || to_char(m, 'YYYYMM');
		IF to_regclass(part) IS NULL
		   AND NOT EXISTS (SELECT 1 FROM usage_events_default WHERE created_at >= a AND created_at < b) THEN
			EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)', part, a, b);
			made := made + 1;
		END IF;
		m := m + interval '1 month';
	END LOOP;
	RETURN made;
END $$;
