/*
 * archive: the files of partition retention (deploy/postgres.md). A
 * partition's rows, as PostgreSQL's `COPY ... TO STDOUT (FORMAT csv,
 * HEADER)` sends them, gzipped into DIR/<partition>.csv.gz, and beside it
 * DIR/<partition>.manifest.json: rows, the sha256 of the file and of the CSV
 * in it, the range. Each file is written under a temporary name, fsync'd,
 * renamed into place and the directory fsync'd, so a file under its final
 * name is whole; the manifest is written last, so an archive is complete
 * when its manifest exists and agrees with the file.
 */
#ifndef AGORA_CTL_ARCHIVE_H
#define AGORA_CTL_ARCHIVE_H

#include <stddef.h>

#include <libpq-fe.h>

#define ARCHIVE_SHA_HEX 65

struct archive_info {
	char partition[64];		/* e.g. usage_events_202401 */
	char parent[64];		/* e.g. usage_events */
	char from[40], to[40];		/* the range, ISO 8601 UTC */
	long long rows;			/* data rows (the header line not counted) */
	long long bytes;		/* of the .csv.gz file */
	char sha256[ARCHIVE_SHA_HEX];	/* of the .csv.gz file */
	char csv_sha256[ARCHIVE_SHA_HEX];	/* of the CSV it holds */
	char file[96];			/* <partition>.csv.gz */
};

/* Reads the COPY OUT that db is in (the caller sent the COPY and got
 * PGRES_COPY_OUT) into dir/<a->partition>.csv.gz, durably, then reads the
 * file back and checks it decompresses to exactly what PostgreSQL sent.
 * Fills rows, bytes, both hashes and file; the caller checks rows against
 * PQcmdTuples and count(*) before calling archive_write_manifest. -1 on
 * error (err says why; no file is left under the final name's manifest). */
int archive_write_copy(PGconn *db, const char *dir, struct archive_info *a, char *err, size_t errlen);

/* Writes dir/<a->partition>.manifest.json durably. */
int archive_write_manifest(const char *dir, const struct archive_info *a, char *err, size_t errlen);

/* 1 when dir holds a complete archive of `partition` with `rows` rows (the
 * manifest says so and the file's sha256 matches it), filling *a from the
 * manifest; 0 when not (err says why: absent, other row count, damaged). */
int archive_verify(const char *dir, const char *partition, long long rows, struct archive_info *a,
		   char *err, size_t errlen);

#endif
