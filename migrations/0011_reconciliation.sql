-- 0011: provider-invoice reconciliation. A provider's usage/invoice CSV
-- (read and checked by lib/invoice.c) is imported by agora_recon_import() in
-- one statement: every model is resolved against the provider's endpoints
-- (Agora's model id, or the provider's upstream_model), the import is
-- recorded, and its rows replace whatever earlier imports of the same
-- provider held for the days from the file's first date to its last. Any
-- problem raises an exception (SQLSTATE P0001, "line N: ...") and nothing is
-- written. agora_recon_report() sets the imported rows against our own
-- usage (usage_daily, which billing writes in the same transaction as
-- usage_events) per UTC day, provider and model. Money: integer nano-USD.

CREATE TABLE recon_imports (
	id            bigserial PRIMARY KEY,
	provider_id   text NOT NULL REFERENCES providers (id),
	label         text NOT NULL DEFAULT '',          -- file name or the caller's label
	rows          integer NOT NULL,                  -- as the file held them
	first_day     date NOT NULL,
	last_day      date NOT NULL,
	input_tokens  bigint NOT NULL,
	output_tokens bigint NOT NULL,
	amount_nusd   bigint NOT NULL,
	replaced_rows integer NOT NULL DEFAULT 0,        -- rows of earlier imports it replaced
	imported_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_imports_provider_idx ON recon_imports (provider_id, imported_at);

-- The provider's side, one row per CSV line (lines of the same day and model
-- add up in the report).
CREATE TABLE recon_rows (
	import_id     bigint NOT NULL REFERENCES recon_imports (id) ON DELETE CASCADE,
	line          integer NOT NULL,                  -- in the imported file
	day           date NOT NULL,
	provider_id   text NOT NULL,
	model_id      text NOT NULL,                     -- Agora's model id
	model_name    text NOT NULL,                     -- as the file wrote it
	input_tokens  bigint NOT NULL CHECK (input_tokens >= 0),
	output_tokens bigint NOT NULL CHECK (output_tokens >= 0),
	amount_nusd   bigint NOT NULL CHECK (amount_nusd >= 0),
	PRIMARY KEY (import_id, line)
);
CREATE INDEX recon_rows_provider_day_idx ON recon_rows (provider_id, day);

-- The file's rows: [[line, "YYYY-MM-DD", "model", "input_tokens", "output_tokens",
-- "amount_nusd"], ...] (numbers as strings, exact).
CREATE FUNCTION agora_recon_rows(p_rows jsonb)
RETURNS TABLE (line integer, day date, model_name text, input_tokens bigint, output_tokens bigint,
	       amount_nusd bigint)
LANGUAGE sql IMMUTABLE AS $$
	SELECT (e->>0)::integer, (e->>1)::date, e->>2, (e->>3)::bigint, (e->>4)::bigint, (e->>5)::bigint
	FROM jsonb_array_elements(p_rows) AS e
$$;

-- Each distinct model name of the rows, at its first line, with the model ids
-- of the provider's endpoints it names (NULL: none) and the one it resolves
-- to: Agora's model id when it is one, else the single model whose
-- upstream_model it is (NULL when several). Disabled endpoints count: an
-- invoice may cover a model since withdrawn.
CREATE FUNCTION agora_recon_models(p_provider text, p_rows jsonb)
RETURNS TABLE (model_name text, line integer, ids text[], model_id text)
LANGUAGE sql STABLE AS $$
	SELECT n.model_name, n.line, x.ids,
	       CASE WHEN x.ids @> ARRAY[n.model_name] THEN n.model_name
		    WHEN cardinality(x.ids) = 1 THEN x.ids[1] END
	FROM (SELECT r.model_name, min(r.line) AS line FROM agora_recon_rows(p_rows) r GROUP BY 1) n
	CROSS JOIN LATERAL (
		SELECT array_agg(DISTINCT e.model_id ORDER BY e.model_id) AS ids FROM endpoints e
		WHERE e.provider_id = p_provider AND (e.model_id = n.model_name OR e.upstream_model = n.model_name)) x
$$;

-- Imports the rows of one provider's file (see above); returns the import.
CREATE FUNCTION agora_recon_import(p_provider text, p_label text, p_rows jsonb)
RETURNS TABLE (import_id bigint, row_count integer, first_day date, last_day date, input_tokens bigint,
	       output_tokens bigint, amount_nusd bigint, replaced_rows integer)
LANGUAGE plpgsql AS $$
DECLARE
	v_bad record;
	v_id bigint;
	v_lo date;
	v_hi date;
	v_replaced integer;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM providers p WHERE p.id = p_provider) THEN
		RAISE EXCEPTION 'unknown provider ''%''', p_provider;
	END IF;
	IF jsonb_typeof(p_rows) IS DISTINCT FROM 'array' OR jsonb_array_length(p_rows) = 0 THEN
		RAISE EXCEPTION 'no rows to import';
	END IF;
	SELECT * INTO v_bad FROM agora_recon_models(p_provider, p_rows) m
	WHERE m.model_id IS NULL ORDER BY m.line LIMIT 1;
	IF FOUND AND v_bad.ids IS NULL THEN
		RAISE EXCEPTION 'line %: unknown model ''%'' for provider ''%'' (neither a model id nor an upstream model of its endpoints)',
			v_bad.line, v_bad.model_name, p_provider;
	ELSIF FOUND THEN
		RAISE EXCEPTION 'line %: model ''%'' of provider ''%'' is the upstream model of % (write Agora''s model id)',
			v_bad.line, v_bad.model_name, p_provider, array_to_string(v_bad.ids, ', ');
	END IF;
	-- one import of a provider at a time: the days replaced are then well defined
	PERFORM pg_advisory_xact_lock(hashtext('agora_recon_import'), hashtext(p_provider));

	SELECT min(r.day), max(r.day) INTO v_lo, v_hi FROM agora_recon_rows(p_rows) r;
	DELETE FROM recon_rows d WHERE d.provider_id = p_provider AND d.day BETWEEN v_lo AND v_hi;
	GET DIAGNOSTICS v_replaced = ROW_COUNT;

	INSERT INTO recon_imports AS i (provider_id, label, rows, first_day, last_day, input_tokens,
					output_tokens, amount_nusd, replaced_rows)
	SELECT p_provider, coalesce(p_label, ''), count(*), v_lo, v_hi, sum(r.input_tokens),
	       sum(r.output_tokens), sum(r.amount_nusd), v_replaced
	FROM agora_recon_rows(p_rows) r
	RETURNING i.id INTO v_id;

	INSERT INTO recon_rows (import_id, line, day, provider_id, model_id, model_name, input_tokens,
				output_tokens, amount_nusd)
	SELECT v_id, r.line, r.day, p_provider, m.model_id, r.model_name, r.input_tokens, r.output_tokens,
	       r.amount_nusd
	FROM agora_recon_rows(p_rows) r JOIN agora_recon_models(p_provider, p_rows) m USING (model_name);

	RETURN QUERY SELECT i.id, i.rows, i.first_day, i.last_day, i.input_tokens, i.output_tokens,
			    i.amount_nusd, i.replaced_rows
		     FROM recon_imports i WHERE i.id = v_id;
END $$;

-- Our side and theirs per UTC day, provider and model over [p_from, p_to),
-- for one provider or (p_provider NULL) all. Ours: usage_daily's tokens and
-- provider cost, groups with no tokens and no cost left out. Matched when
-- input and output tokens differ by at most p_tol_tokens each and the amounts
-- by at most p_tol_pct percent of the larger one or p_tol_nusd, whichever is
-- more. At most p_limit rows. An unknown provider is an error.
CREATE FUNCTION agora_recon_report(p_provider text, p_from date, p_to date, p_tol_pct numeric,
				   p_tol_tokens bigint, p_tol_nusd bigint, p_limit integer)
RETURNS TABLE (day date, provider_id text, model_id text, status text,
	       ours_input bigint, ours_output bigint, ours_nusd bigint,
	       theirs_input bigint, theirs_output bigint, theirs_nusd bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	IF p_provider IS NOT NULL AND NOT EXISTS (SELECT 1 FROM providers p WHERE p.id = p_provider) THEN
		RAISE EXCEPTION 'unknown provider ''%''', p_provider;
	END IF;
	RETURN QUERY
	WITH ours AS (
		SELECT u.day, u.provider_id, u.model_id, sum(u.prompt_tokens)::bigint AS i,
		       sum(u.completion_tokens)::bigint AS o, sum(u.provider_cost_nusd)::bigint AS a
		FROM usage_daily u
		WHERE u.day >= p_from AND u.day < p_to AND (p_provider IS NULL OR u.provider_id = p_provider)
		GROUP BY 1, 2, 3
		HAVING sum(u.prompt_tokens) <> 0 OR sum(u.completion_tokens) <> 0 OR sum(u.provider_cost_nusd) <> 0
	), theirs AS (
		SELECT r.day, r.provider_id, r.model_id, sum(r.input_tokens)::bigint AS i,
		       sum(r.output_tokens)::bigint AS o, sum(r.amount_nusd)::bigint AS a
		FROM recon_rows r
		WHERE r.day >= p_from AND r.day < p_to AND (p_provider IS NULL OR r.provider_id = p_provider)
		GROUP BY 1, 2, 3
	)
	SELECT coalesce(o.day, t.day), coalesce(o.provider_id, t.provider_id), coalesce(o.model_id, t.model_id),
	       CASE WHEN t.day IS NULL THEN 'only_ours'
		    WHEN o.day IS NULL THEN 'only_theirs'
		    WHEN abs(t.i - o.i) <= p_tol_tokens AND abs(t.o - o.o) <= p_tol_tokens
			 AND (abs(t.a - o.a) <= p_tol_nusd
			      OR abs(t.a - o.a)::numeric * 100 <= p_tol_pct * greatest(o.a, t.a)) THEN 'matched'
		    ELSE 'differs' END,
	       o.i, o.o, o.a, t.i, t.o, t.a
	FROM ours o FULL JOIN theirs t
	  ON t.day = o.day AND t.provider_id = o.provider_id AND t.model_id = o.model_id
	ORDER BY 1, 2, 3
	LIMIT p_limit;
END $$;
