/*
 * agoractl partitions list
 * agoractl partitions retain --keep-months N --archive-dir DIR [--dry-run] [--keep-detached]
 *
 * Retention keeps the current month and the N-1 before it. Each monthly
 * partition entirely older than that, oldest first:
 *   1. archived (archive.c) unless DIR holds a verified archive of its rows:
 *      COPY in a REPEATABLE READ snapshot, the rows sent = count(*);
 *   2. detached (a short lock: lock_timeout 10 s);
 *   3. counted again, now that nothing can write to it: an archive that
 *      does not hold exactly these rows (a late event came in before the
 *      detach) is written again;
 *   4. dropped and recorded in partition_archives, in one transaction (or
 *      only recorded, --keep-detached).
 * Each step is idempotent and every state between two steps is one a rerun
 * resumes from: attached or detached (or detach pending), with or without a
 * verified archive. Current and future months are never touched, nor the
 * default partition, the ledger or the rollups.
 */
#include "partitions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "archive.h"
#include "args.h"

static const char *const parents[] = { "usage_events", NULL };

/* Monthly tables of $1 (attached, detach pending, or detached) with their
 * range; $2 months kept: `old` when the month ends at or before the cutoff;
 * `bound_ok` when an attached one's bounds are its name's month. Month
 * arithmetic on UTC timestamps, so the session's time zone does not matter. */
static const char parts_sql[] =
	"WITH t AS (SELECT k.relname::text AS name, k.relispartition AS attached, "
	"  coalesce(i.inhdetachpending, false) AS pending, to_date(right(k.relname, 6), 'YYYYMM')::timestamp AS lo, "
	"  k.reltuples::bigint AS est, pg_total_relation_size(k.oid) AS size, pg_get_expr(k.relpartbound, k.oid) AS bound "
	" FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace AND n.nspname = current_schema() "
	" LEFT JOIN pg_inherits i ON i.inhrelid = k.oid "
	" WHERE k.relkind = 'r' AND k.relname::text ~ ('^' || $1 || '_[0-9]{4}(0[1-9]|1[0-2])$') "
	"  AND (i.inhparent IS NULL OR i.inhparent = $1::regclass)) "
	"SELECT name, attached::text, pending::text, "
	" to_char(lo, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), to_char(lo + interval '1 month', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	" greatest(est, 0)::text, size::text, "
	" (lo + interval '1 month' <= date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => $2::int - 1))::text, "
	" (NOT attached OR bound = format('FOR VALUES FROM (%L) TO (%L)', lo AT TIME ZONE 'UTC', "
	"  (lo + interval '1 month') AT TIME ZONE 'UTC'))::text "
	"FROM t ORDER BY lo";

enum { P_NAME, P_ATTACHED, P_PENDING, P_FROM, P_TO, P_EST, P_SIZE, P_OLD, P_BOUND_OK };

static const char record_sql[] =
	"INSERT INTO partition_archives (partition, parent, range_from, range_to, rows, sha256, file, bytes, dropped_at) "
	"VALUES ($1, $2, $3::timestamptz, $4::timestamptz, $5::bigint, $6, $7, $8::bigint, "
	" CASE WHEN $9::boolean THEN now() END) "
	"ON CONFLICT (partition) DO UPDATE SET rows = excluded.rows, sha256 = excluded.sha256, file = excluded.file, "
	" bytes = excluded.bytes, archived_at = now(), dropped_at = excluded.dropped_at";

struct retain {
	PGconn *db;
	const char *parent;
	const char *dir;
	int dry_run, keep_detached;
	int done, failed;
};

/* One table being retained: its names and range. */
struct part {
	const char *name;
	char *qname, *qparent;		/* quoted identifiers */
	const char *from, *to;
};

static int
db_fail(PGconn *db, PGresult *r, const char *what)
{
	const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	fprintf(stderr, "agoractl: %s: %s\n", what, m ? m : PQerrorMessage(db));
	PQclear(r);
	PQclear(PQexec(db, "ROLLBACK"));
	return -1;
}

/* Runs a statement built from quoted identifiers (no values). */
static int
run(PGconn *db, const char *what, const char *a, const char *b, const char *c)
{
	char sql[1024];
	PGresult *r;

	snprintf(sql, sizeof(sql), "%s%s%s", a, b ? b : "", c ? c : "");
	r = PQexec(db, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		return db_fail(db, r, what);
	PQclear(r);
	return 0;
}

static long long
count_rows(PGconn *db, const struct part *p)
{
	char sql[256];
	PGresult *r;
	long long n;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", p->qname);
	r = PQexec(db, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return db_fail(db, r, p->name);
	n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

/* COPY in one snapshot, rows sent = count(*) then; the manifest last. */
static int
export(struct retain *r, const struct part *p, struct archive_info *a)
{
	char sql[256], err[512];
	struct timespec t0, t1;
	double dt;
	long long n;
	PGresult *res;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (run(r->db, p->name, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL, NULL) < 0 ||
	    (n = count_rows(r->db, p)) < 0)
		return -1;
	snprintf(sql, sizeof(sql), "COPY %s TO STDOUT (FORMAT csv, HEADER)", p->qname);
	res = PQexec(r->db, sql);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
		return db_fail(r->db, res, p->name);
	PQclear(res);
	if (archive_write_copy(r->db, r->dir, a, err, sizeof(err)) < 0) {
		fprintf(stderr, "agoractl: %s: %s\n", p->name, err);
		PQclear(PQexec(r->db, "ROLLBACK"));
		return -1;
	}
	if (run(r->db, p->name, "COMMIT", NULL, NULL) < 0)
		return -1;
	if (a->rows != n) {
		fprintf(stderr, "agoractl: %s: COPY sent %lld rows, count(*) is %lld\n", p->name, a->rows, n);
		return -1;
	}
	if (archive_write_manifest(r->dir, a, err, sizeof(err)) < 0) {
		fprintf(stderr, "agoractl: %s: %s\n", p->name, err);
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%s: exported %lld rows to %s/%s (%lld bytes, sha256 %.16s..., %.2f s, %.0f rows/s)\n", p->name,
	       a->rows, r->dir, a->file, a->bytes, a->sha256, dt, dt > 0 ? (double)a->rows / dt : 0.0);
	return 0;
}

/* A verified archive of the table's rows as they are now: kept when DIR
 * has one, else written. */
static int
ensure_archive(struct retain *r, const struct part *p, struct archive_info *a)
{
	char why[512];
	long long n = count_rows(r->db, p);

	if (n < 0)
		return -1;
	if (archive_verify(r->dir, p->name, n, a, why, sizeof(why)) == 1) {
		printf("%s: archive %s/%s verified (%lld rows, sha256 %.16s...)\n", p->name, r->dir, a->file, n, a->sha256);
		return 0;
	}
	printf("%s: %s: exporting\n", p->name, why);
	memset(a, 0, sizeof(*a));
	snprintf(a->partition, sizeof(a->partition), "%s", p->name);
	snprintf(a->parent, sizeof(a->parent), "%s", r->parent);
	snprintf(a->from, sizeof(a->from), "%s", p->from);
	snprintf(a->to, sizeof(a->to), "%s", p->to);
	return export(r, p, a);
}

static int
detach(struct retain *r, const struct part *p, int pending)
{
	char sql[512];

	if (pending) {	/* a DETACH ... CONCURRENTLY that was interrupted */
		snprintf(sql, sizeof(sql), "ALTER TABLE %s DETACH PARTITION %s FINALIZE", p->qparent, p->qname);
		return run(r->db, p->name, sql, NULL, NULL);
	}
	snprintf(sql, sizeof(sql), "ALTER TABLE %s DETACH PARTITION %s", p->qparent, p->qname);
	if (run(r->db, p->name, "BEGIN", NULL, NULL) < 0 ||
	    run(r->db, p->name, "SET LOCAL lock_timeout = '10s'", NULL, NULL) < 0 ||
	    run(r->db, p->name, sql, NULL, NULL) < 0 || run(r->db, p->name, "COMMIT", NULL, NULL) < 0)
		return -1;
	printf("%s: detached from %s\n", p->name, r->parent);
	return 0;
}

/* Drops the detached table and records the archive, in one transaction. */
static int
finish(struct retain *r, const struct part *p, const struct archive_info *a)
{
	char rows[24], bytes[24];
	const char *params[9] = { p->name, r->parent, p->from, p->to, rows, a->sha256, a->file, bytes,
				  r->keep_detached ? "false" : "true" };
	PGresult *res;

	snprintf(rows, sizeof(rows), "%lld", a->rows);
	snprintf(bytes, sizeof(bytes), "%lld", a->bytes);
	if (run(r->db, p->name, "BEGIN", NULL, NULL) < 0)
		return -1;
	if (!r->keep_detached && run(r->db, p->name, "DROP TABLE ", p->qname, NULL) < 0)
		return -1;
	res = PQexecParams(r->db, record_sql, 9, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		return db_fail(r->db, res, p->name);
	PQclear(res);
	if (run(r->db, p->name, "COMMIT", NULL, NULL) < 0)
		return -1;
	printf("%s: %s; archive recorded\n", p->name, r->keep_detached ? "kept detached" : "dropped");
	return 0;
}

/* A name archived and dropped before must not be archived over. */
static int
archived_before(struct retain *r, const struct part *p)
{
	const char *params[1] = { p->name };
	PGresult *res = PQexecParams(r->db, "SELECT 1 FROM partition_archives WHERE partition = $1 "
				     "AND dropped_at IS NOT NULL", 1, NULL, params, NULL, NULL, 0);
	int n;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return db_fail(r->db, res, p->name);
	n = PQntuples(res);
	PQclear(res);
	if (n)
		fprintf(stderr, "agoractl: %s: archived and dropped before, and a table of that name exists again: "
			"move its old archive out of %s and archive it by hand\n", p->name, r->dir);
	return n ? -1 : 0;
}

static int
retain_steps(struct retain *r, struct part *p, int attached, int pending)
{
	struct archive_info a;

	if (archived_before(r, p) < 0)
		return -1;
	if (attached && !pending && (ensure_archive(r, p, &a) < 0 || detach(r, p, 0) < 0))
		return -1;
	if (pending && detach(r, p, 1) < 0)
		return -1;
	if (ensure_archive(r, p, &a) < 0)
		return -1;
	return finish(r, p, &a);
}

static int
retain_one(struct retain *r, const PGresult *res, int i)
{
	struct part p = { PQgetvalue(res, i, P_NAME), NULL, NULL, PQgetvalue(res, i, P_FROM), PQgetvalue(res, i, P_TO) };
	int attached = strcmp(PQgetvalue(res, i, P_ATTACHED), "true") == 0;
	int pending = strcmp(PQgetvalue(res, i, P_PENDING), "true") == 0, rc = -1;

	if (strcmp(PQgetvalue(res, i, P_BOUND_OK), "true") != 0) {
		fprintf(stderr, "agoractl: %s: its bounds are not the month its name says; left alone\n", p.name);
		return -1;
	}
	if (r->dry_run) {
		printf("%s: would archive [%s, %s) (about %s rows) to %s/%s.csv.gz, %s\n", p.name, p.from, p.to,
		       PQgetvalue(res, i, P_EST), r->dir, p.name,
		       r->keep_detached ? "then detach it" : "then detach and drop it");
		return 0;
	}
	p.qname = PQescapeIdentifier(r->db, p.name, strlen(p.name));
	p.qparent = PQescapeIdentifier(r->db, r->parent, strlen(r->parent));
	if (p.qname && p.qparent)
		rc = retain_steps(r, &p, attached, pending);
	PQfreemem(p.qname);
	PQfreemem(p.qparent);
	return rc;
}

static PGresult *
parts(PGconn *db, const char *parent, int keep)
{
	char k[16];
	const char *params[2] = { parent, k };
	PGresult *r;

	snprintf(k, sizeof(k), "%d", keep);
	r = PQexecParams(db, parts_sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		db_fail(db, r, parent);
		return NULL;
	}
	return r;
}

static int
cmd_retain(PGconn *db, int keep, const char *dir, int dry_run, int keep_detached)
{
	struct retain r = { db, NULL, dir, dry_run, keep_detached, 0, 0 };

	if (!dry_run && mkdir(dir, 0750) < 0 && errno != EEXIST) {
		fprintf(stderr, "agoractl: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	for (const char *const *pp = parents; *pp; pp++) {
		PGresult *res;

		r.parent = *pp;
		if (!(res = parts(db, *pp, keep)))
			return 1;
		for (int i = 0; i < PQntuples(res); i++) {
			if (strcmp(PQgetvalue(res, i, P_OLD), "true") != 0)
				continue;
			if (retain_one(&r, res, i) < 0)
				r.failed++;
			else
				r.done++;
		}
		PQclear(res);
	}
	printf("%s%d partitions past the %d-month window%s, %d failed\n", dry_run ? "dry run: " : "", r.done, keep,
	       dry_run ? " would be archived" : " archived", r.failed);
	return r.failed ? 1 : 0;
}

static void
list_archived(PGconn *db)
{
	PGresult *r = PQexec(db, "SELECT partition, to_char(range_from AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
			     "to_char(range_to AT TIME ZONE 'UTC', 'YYYY-MM-DD'), rows::text, file, "
			     "CASE WHEN dropped_at IS NULL THEN 'archived, kept detached' ELSE 'archived, dropped' END "
			     "FROM partition_archives ORDER BY parent, range_from");

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		db_fail(db, r, "partition_archives");
		return;
	}
	for (int i = 0; i < PQntuples(r); i++)
		printf("%-26s %-10s %-10s %-24s %12s  %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2), PQgetvalue(r, i, 5), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
	PQclear(r);
}

static void
list_late(PGconn *db)
{
	PGresult *r = PQexec(db, "SELECT count(*)::text, coalesce(max(seen_at)::text, '') FROM late_events");

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		db_fail(db, r, "late_events");
		return;
	}
	if (strcmp(PQgetvalue(r, 0, 0), "0") != 0)
		printf("%s late events of archived months were not billed (table late_events, the last at %s): "
		       "look them up in the archives\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	PQclear(r);
}

static int
cmd_list(PGconn *db, int keep)
{
	printf("%-26s %-10s %-10s %-24s %12s  %s\n", "partition", "from", "to", "state", "rows", "bytes / archive");
	for (const char *const *pp = parents; *pp; pp++) {
		PGresult *r = parts(db, *pp, keep > 0 ? keep : 1);

		if (!r)
			return 1;
		for (int i = 0; i < PQntuples(r); i++) {
			const char *state = strcmp(PQgetvalue(r, i, P_PENDING), "true") == 0 ? "detach pending"
				: strcmp(PQgetvalue(r, i, P_ATTACHED), "true") != 0 ? "detached"
				: keep > 0 && strcmp(PQgetvalue(r, i, P_OLD), "true") == 0 ? "attached, past retention"
				: "attached";

			printf("%-26s %-10.10s %-10.10s %-24s %12s  %s\n", PQgetvalue(r, i, P_NAME), PQgetvalue(r, i, P_FROM),
			       PQgetvalue(r, i, P_TO), state, PQgetvalue(r, i, P_EST), PQgetvalue(r, i, P_SIZE));
		}
		PQclear(r);
	}
	list_archived(db);
	list_late(db);
	printf("(rows of attached and detached tables are PostgreSQL's estimates; the default partition "
	       "catches events outside every month and is never archived)\n");
	return 0;
}

int
ctl_partitions(PGconn *db, int default_keep, int argc, char **argv)
{
	static const char *const retain_opts[] = { "--keep-months", "--archive-dir", "--dry-run", "--keep-detached",
						   NULL };
	const char *keep_s, *dir;
	char *end;
	long keep;

	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return cmd_list(db, default_keep);
	if (argc < 2 || strcmp(argv[1], "retain") != 0 || !args_known(argc, argv, 2, retain_opts))
		return 2;
	keep_s = args_opt(argc, argv, 2, "--keep-months");
	dir = args_opt(argc, argv, 2, "--archive-dir");
	keep = keep_s ? strtol(keep_s, &end, 10) : default_keep;
	if ((keep_s && (!*keep_s || *end)) || keep < 1 || keep > 1200) {
		fprintf(stderr, "agoractl: --keep-months: a number of months >= 1 (the current month included)%s\n",
			keep_s ? "" : "; or set retention_months");
		return 1;
	}
	if (!dir || !*dir) {
		fprintf(stderr, "agoractl: --archive-dir DIR: where the archives go\n");
		return 1;
	}
	return cmd_retain(db, (int)keep, dir, args_opt(argc, argv, 2, "--dry-run") != NULL,
			  args_opt(argc, argv, 2, "--keep-detached") != NULL);
}
