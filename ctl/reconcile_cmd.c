/*
 * agoractl reconcile import PROVIDER FILE [--label L]
 * agoractl reconcile report PROVIDER [--from YYYY-MM-DD] [--to YYYY-MM-DD]
 *     [--tolerance-pct P] [--tolerance-tokens N] [--tolerance-amount USD]
 *
 * The file is read and checked by lib/reconcile.c, imported by one
 * statement (agora_recon_import, migration 0011): all of it or nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "money.h"
#include "reconcile.h"
#include "reconcile_cmd.h"

/* A statement's failure on stderr: the file's fault or the database's. */
static void
db_error(const char *what, PGresult *r)
{
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

	fprintf(stderr, "agoractl: %s: %s\n", what, primary ? primary : PQresultErrorMessage(r));
}

static const char *
usd(const char *nusd, char *buf, size_t len)
{
	money_format_usd(strtoll(nusd, NULL, 10), buf, len);
	return buf;
}

static void
print_import(PGresult *r, const char *label)
{
	char a[48];

	printf("import %s: provider %s, %s rows, %s to %s%s%s%s\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
	       PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4), *label ? " (" : "", label,
	       *label ? ")" : "");
	printf("  input tokens   %s\n", PQgetvalue(r, 0, 5));
	printf("  output tokens  %s\n", PQgetvalue(r, 0, 6));
	printf("  amount         %s USD\n", usd(PQgetvalue(r, 0, 7), a, sizeof(a)));
	if (strcmp(PQgetvalue(r, 0, 8), "0") != 0)
		printf("  replaced %s rows of earlier imports of %s from %s to %s\n", PQgetvalue(r, 0, 8),
		       PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4));
}

static int
cmd_import(PGconn *db, const char *provider, const char *path, const char *label)
{
	struct reconcile_totals t;
	const char *params[3];
	char *data, *rows = NULL, err[256];
	size_t len = 0;
	PGresult *r = NULL;
	int rc = 1;

	if (!label)
		label = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (!(data = args_read_file(path, RECONCILE_MAX_BYTES, &len)))
		return 1;
	if (reconcile_parse_csv(data, len, &rows, &t, err, sizeof(err)) < 0) {
		fprintf(stderr, "agoractl: %s: %s; nothing imported\n", path, err);
		goto out;
	}
	params[0] = provider;
	params[1] = label;
	params[2] = rows;
	r = PQexecParams(db, reconcile_import_sql, 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		db_error(path, r);
		fprintf(stderr, "agoractl: nothing imported\n");
		goto out;
	}
	print_import(r, label);
	rc = 0;
out:
	PQclear(r);
	free(rows);
	free(data);
	return rc;
}

static void
cell(int present, const int64_t v[3])
{
	char a[48];

	if (!present) {
		printf(" %12s %12s %14s", "-", "-", "-");
		return;
	}
	money_format_usd(v[2], a, sizeof(a));
	printf(" %12lld %12lld %14s", (long long)v[0], (long long)v[1], a);
}

static void
print_report(PGresult *r, const struct reconcile_query *q)
{
	struct reconcile_summary s = { { 0 }, 0, 0 };
	struct reconcile_row row;
	char a[48], b[48], c[48], tol[48];

	money_format_usd(strtoll(q->amount_nusd, NULL, 10), tol, sizeof(tol));
	printf("reconciliation of %s, %s to %s (UTC, end excluded); matched within %s%% of the amount or %s USD, "
	       "and %s tokens\n\n", q->provider[0] ? q->provider : "every provider", q->from, q->to, q->pct, tol,
	       q->tokens);
	printf("%-10s  %-12s %-28s %-11s %12s %12s %14s %12s %12s %14s %14s\n", "date", "provider", "model", "status",
	       "ours in", "ours out", "ours USD", "theirs in", "theirs out", "theirs USD", "diff USD");
	for (int i = 0; i < PQntuples(r); i++) {
		reconcile_row_get(r, i, &row, &s);
		printf("%-10s  %-12s %-28s %-11s", row.day, row.provider, row.model,
		       reconcile_status_names[row.status]);
		cell(row.has_ours, row.ours);
		cell(row.has_theirs, row.theirs);
		money_format_usd(row.diff[2], a, sizeof(a));
		printf(" %14s\n", a);
	}
	money_format_usd(s.ours_nusd, a, sizeof(a));
	money_format_usd(s.theirs_nusd, b, sizeof(b));
	money_format_usd(s.theirs_nusd - s.ours_nusd, c, sizeof(c));
	printf("\n%ld matched, %ld differ, %ld only ours, %ld only theirs; ours %s USD, theirs %s USD, "
	       "theirs - ours %s USD\n", s.count[RS_MATCHED], s.count[RS_DIFFERS], s.count[RS_ONLY_OURS],
	       s.count[RS_ONLY_THEIRS], a, b, c);
}

static int
cmd_report(PGconn *db, int argc, char **argv)
{
	struct reconcile_query q;
	const char *params[7];
	char err[256];
	PGresult *r;
	int rc = 1;

	if (reconcile_query_init(&q, argv[2], args_opt(argc, argv, 3, "--from"), args_opt(argc, argv, 3, "--to"),
				 args_opt(argc, argv, 3, "--tolerance-pct"), args_opt(argc, argv, 3, "--tolerance-tokens"),
				 args_opt(argc, argv, 3, "--tolerance-amount"), err, sizeof(err)) < 0) {
		fprintf(stderr, "agoractl: %s\n", err);
		return 1;
	}
	reconcile_query_params(&q, params);
	r = PQexecParams(db, reconcile_report_sql, 7, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		db_error("report", r);
	} else if (PQntuples(r) > RECONCILE_MAX_REPORT_ROWS) {
		fprintf(stderr, "agoractl: more than %d rows: narrow the dates\n", RECONCILE_MAX_REPORT_ROWS);
	} else {
		print_report(r, &q);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

int
ctl_reconcile(PGconn *db, int argc, char **argv)
{
	static const char *const import_opts[] = { "--label", NULL };
	static const char *const report_opts[] = { "--from", "--to", "--tolerance-pct", "--tolerance-tokens",
						   "--tolerance-amount", NULL };

	if (argc >= 4 && strcmp(argv[1], "import") == 0 && argv[2][0] != '-' && argv[3][0] != '-') {
		if (!args_known(argc, argv, 4, import_opts))
			return 2;
		return cmd_import(db, argv[2], argv[3], args_opt(argc, argv, 4, "--label"));
	}
	if (argc >= 3 && strcmp(argv[1], "report") == 0 && argv[2][0] != '-') {
		if (!args_known(argc, argv, 3, report_opts))
			return 2;
		return cmd_report(db, argc, argv);
	}
	return 2;
}
