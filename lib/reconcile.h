/*
 * reconcile: provider-invoice reconciliation, the parts agoractl and
 * agora-analytics share: reading a provider's usage/invoice CSV, checking a
 * report's arguments, the SQL of both (functions of migration 0011) and a
 * report row read back from PostgreSQL.
 *
 * The CSV: a header row names the columns (any order, case-insensitive,
 * extra columns ignored): date (YYYY-MM-DD, UTC), model (the provider's
 * upstream model name or Agora's model id), input_tokens, output_tokens
 * (non-negative integers) and amount (non-negative USD decimal, at most 9
 * decimals, parsed exactly into nano-USD). Values are trimmed of spaces and
 * tabs; RFC 4180 quoting (csvparse.h). Every row is checked here except
 * whether its model exists for the provider: agora_recon_import() checks
 * that in PostgreSQL, with the rows' line numbers. Any bad row rejects the
 * whole file with "line N: problem", and nothing is imported.
 */
#ifndef AGORA_RECONCILE_H
#define AGORA_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#define RECONCILE_MAX_ROWS 100000		/* data rows per file */
#define RECONCILE_MAX_BYTES (16L << 20)		/* a file agoractl reads */
#define RECONCILE_MAX_RECORD 4096		/* bytes per CSV record */
#define RECONCILE_MAX_MODEL 200			/* bytes of a model name */
#define RECONCILE_MAX_REPORT_ROWS 50000		/* rows of one report */
#define RECONCILE_MAX_DAYS 366			/* days of one report */
#define RECONCILE_DEFAULT_DAYS 30		/* without --from: the last 30 days */
#define RECONCILE_DEFAULT_PCT "0.5"		/* amount tolerance, percent */
#define RECONCILE_DEFAULT_TOKENS "0"		/* token tolerance, per day and model */
#define RECONCILE_DEFAULT_AMOUNT "0"		/* absolute amount tolerance, USD */

struct reconcile_totals {
	long rows;
	int64_t input_tokens, output_tokens, amount_nusd;
	char first_day[11], last_day[11];	/* YYYY-MM-DD */
};

/* Parses and checks a CSV in data[0..len). On success returns 0, fills *t
 * and sets *rows_json (the caller frees it) to a JSON array
 * of [line, "date", "model", "input_tokens", "output_tokens", "amount_nusd"]
 * (numbers as strings: exact), the third parameter of reconcile_import_sql.
 * On a bad file returns -1 with err set to "line N: what is wrong". */
int reconcile_parse_csv(const char *data, size_t len, char **rows_json, struct reconcile_totals *t,
			char *err, size_t errlen);

/* A non-negative decimal integer of at most 18 digits: 0 and *out, else -1. */
int reconcile_parse_count(const char *s, int64_t *out);

/* Imports one file: $1 provider id, $2 label, $3 rows_json. One row: import
 * id, provider, rows, first and last date, input and output tokens, amount
 * (nusd), rows of earlier imports replaced. A bad file (unknown provider or
 * model) fails with SQLSTATE RECONCILE_USER_ERROR and the message to show. */
extern const char reconcile_import_sql[];
#define RECONCILE_USER_ERROR "P0001"

/* A report's arguments, checked and normalised (reconcile_query_init). */
struct reconcile_query {
	char provider[65];		/* "" = every provider */
	char from[11], to[11];		/* [from, to), UTC dates */
	char pct[48];			/* amount tolerance, percent (decimal) */
	char tokens[24];		/* token tolerance */
	char amount_nusd[24];		/* absolute amount tolerance */
	char limit[16];
};

/* Checks the arguments (NULL or "": the default) and fills q: to defaults to
 * tomorrow (UTC; today included), from to RECONCILE_DEFAULT_DAYS before to;
 * from < to, at most RECONCILE_MAX_DAYS apart. pct is a percentage (0-100),
 * tokens an integer, amount USD. Returns 0, or -1 with err. */
int reconcile_query_init(struct reconcile_query *q, const char *provider, const char *from,
			 const char *to, const char *pct, const char *tokens, const char *amount,
			 char *err, size_t errlen);
/* The 7 parameters of reconcile_report_sql for q. */
void reconcile_query_params(const struct reconcile_query *q, const char *params[7]);

/* At most RECONCILE_MAX_REPORT_ROWS + 1 rows (more: the report is too
 * large) of: date, provider, model, status, ours (input, output, nusd),
 * theirs (same); a missing side is NULL. An unknown provider fails with
 * RECONCILE_USER_ERROR. */
extern const char reconcile_report_sql[];

enum reconcile_status { RS_MATCHED, RS_DIFFERS, RS_ONLY_OURS, RS_ONLY_THEIRS, RS_NSTATUS };
extern const char *const reconcile_status_names[RS_NSTATUS];

struct reconcile_row {
	const char *day, *provider, *model;	/* borrowed from the PGresult */
	enum reconcile_status status;
	int has_ours, has_theirs;
	int64_t ours[3], theirs[3], diff[3];	/* input, output, nusd; diff = theirs - ours */
};

struct reconcile_summary {
	long count[RS_NSTATUS];
	int64_t ours_nusd, theirs_nusd;
};

/* Row i of a reconcile_report_sql result; adds it to *s (may be NULL). */
void reconcile_row_get(const PGresult *res, int i, struct reconcile_row *r, struct reconcile_summary *s);

#endif
