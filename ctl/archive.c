/*
 * archive: partition archives on disk (see archive.h).
 */
#include "archive.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <zlib.h>

#define ARCHIVE_MANIFEST_MAX (64 * 1024)

static void
sha_hex(EVP_MD_CTX *md, char out[ARCHIVE_SHA_HEX])
{
	unsigned char h[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(md, h, &n);
	for (unsigned int i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static int
fsync_path(const char *path, int dir)
{
	int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* tmp is renamed to path and both are made durable. */
static int
publish(const char *tmp, const char *path, const char *dir, char *err, size_t errlen)
{
	if (fsync_path(tmp, 0) < 0 || rename(tmp, path) < 0 || fsync_path(dir, 1) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The sha256 and size of a file's bytes as stored, or (inflate) of what
 * the gzip file decompresses to. */
static int
file_sha(const char *path, int inflate, char out[ARCHIVE_SHA_HEX], long long *bytes)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	FILE *f = inflate ? NULL : fopen(path, "rb");
	gzFile gz = inflate ? gzopen(path, "rb") : NULL;
	char buf[65536];
	int n = 0, rc = -1;

	*bytes = 0;
	if (!md || !(f || gz) || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		goto fail;
	while ((n = gz ? gzread(gz, buf, sizeof(buf)) : (int)fread(buf, 1, sizeof(buf), f)) > 0) {
		EVP_DigestUpdate(md, buf, (size_t)n);
		*bytes += n;
	}
	if (n < 0 || (f && ferror(f)))
		goto fail;
	sha_hex(md, out);
	rc = 0;
fail:
	if (f)
		fclose(f);
	if (gz)
		gzclose(gz);
	EVP_MD_CTX_free(md);
	return rc;
}

/* COPY OUT's rows into gz, hashing them; returns the rows (header
 * included) or -1. */
static long long
copy_rows(PGconn *db, gzFile gz, EVP_MD_CTX *md, char *err, size_t errlen)
{
	long long rows = 0;
	int n, failed = 0;
	char *buf;

	/* read to the end even after a write error, so the COPY completes */
	while ((n = PQgetCopyData(db, &buf, 0)) > 0) {
		EVP_DigestUpdate(md, buf, (size_t)n);
		if (!failed && gzwrite(gz, buf, (unsigned)n) != n) {
			snprintf(err, errlen, "write error (disk full?)");
			failed = 1;
		}
		PQfreemem(buf);
		rows++;
	}
	if (n == -2) {
		snprintf(err, errlen, "COPY: %s", PQerrorMessage(db));
		return -1;
	}
	return failed ? -1 : rows;
}

/* Drains the COPY's final result: 0 when it succeeded. */
static int
copy_finish(PGconn *db, char *err, size_t errlen)
{
	PGresult *r;
	int rc = 0;

	while ((r = PQgetResult(db))) {
		if (PQresultStatus(r) == PGRES_COPY_OUT) {	/* not drained: give up the connection's COPY */
			PQclear(r);
			snprintf(err, errlen, "COPY did not complete");
			return -1;
		}
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			snprintf(err, errlen, "COPY: %s", PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

int
archive_write_copy(PGconn *db, const char *dir, struct archive_info *a, char *err, size_t errlen)
{
	char path[1024], tmp[1100], csv_sha[ARCHIVE_SHA_HEX];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	gzFile gz = NULL;
	long long rows;
	int fd = -1, rc = -1;

	snprintf(a->file, sizeof(a->file), "%s.csv.gz", a->partition);
	snprintf(path, sizeof(path), "%s/%s", dir, a->file);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, a->file);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) < 0 || !(gz = gzdopen(fd, "wb6"))) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;	/* gz owns it */
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
		goto fail;
	rows = copy_rows(db, gz, md, err, errlen);
	if (copy_finish(db, err, errlen) < 0 || rows < 1) {
		if (rows == 0)
			snprintf(err, errlen, "COPY sent no header");
		goto fail;
	}
	if (gzclose(gz) != Z_OK) {
		gz = NULL;
		snprintf(err, errlen, "%s: write error (disk full?)", tmp);
		goto fail;
	}
	gz = NULL;
	sha_hex(md, a->csv_sha256);
	if (file_sha(tmp, 1, csv_sha, &a->bytes) < 0 || strcmp(csv_sha, a->csv_sha256) != 0) {
		snprintf(err, errlen, "%s: does not read back as what PostgreSQL sent", tmp);
		goto fail;
	}
	if (file_sha(tmp, 0, a->sha256, &a->bytes) < 0 || publish(tmp, path, dir, err, errlen) < 0)
		goto fail;
	a->rows = rows - 1;	/* the header line */
	rc = 0;
fail:
	if (rc < 0) {
		if (gz)
			gzclose(gz);
		if (fd >= 0)
			close(fd);
		unlink(tmp);
	}
	EVP_MD_CTX_free(md);
	return rc;
}

static cJSON *
manifest_json(const struct archive_info *a)
{
	cJSON *o = cJSON_CreateObject();
	char now[32];
	time_t t = time(NULL);

	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	cJSON_AddStringToObject(o, "partition", a->partition);
	cJSON_AddStringToObject(o, "parent", a->parent);
	cJSON_AddStringToObject(o, "from", a->from);
	cJSON_AddStringToObject(o, "to", a->to);
	cJSON_AddNumberToObject(o, "rows", (double)a->rows);
	cJSON_AddStringToObject(o, "file", a->file);
	cJSON_AddNumberToObject(o, "bytes", (double)a->bytes);
	cJSON_AddStringToObject(o, "sha256", a->sha256);
	cJSON_AddStringToObject(o, "csv_sha256", a->csv_sha256);
	cJSON_AddStringToObject(o, "format", "gzip of COPY ... TO STDOUT (FORMAT csv, HEADER)");
	cJSON_AddStringToObject(o, "archived_at", now);
	return o;
}

int
archive_write_manifest(const char *dir, const struct archive_info *a, char *err, size_t errlen)
{
	char path[1024], tmp[1100], *text = NULL;
	cJSON *o = manifest_json(a);
	FILE *f = NULL;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/%s.manifest.json", dir, a->partition);
	snprintf(tmp, sizeof(tmp), "%s/.%s.manifest.json.tmp", dir, a->partition);
	if (!o || !(text = cJSON_Print(o)))
		goto fail;
	if (!(f = fopen(tmp, "w")) || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
		f = NULL;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		unlink(tmp);
		goto fail;
	}
	f = NULL;
	rc = publish(tmp, path, dir, err, errlen);
fail:
	if (f)
		fclose(f);
	cJSON_free(text);
	cJSON_Delete(o);
	return rc;
}

static char *
manifest_read(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n;

	if (!f)
		return NULL;
	if ((buf = malloc(ARCHIVE_MANIFEST_MAX + 1))) {
		n = fread(buf, 1, ARCHIVE_MANIFEST_MAX, f);
		buf[n] = '\0';
	}
	fclose(f);
	return buf;
}

static void
copy_str(const cJSON *o, const char *name, char *out, size_t len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	snprintf(out, len, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

/* The manifest's fields into *a; -1 when it is not one. */
static int
manifest_parse(const char *text, struct archive_info *a)
{
	cJSON *o = cJSON_Parse(text);
	const cJSON *rows, *bytes;
	int rc = -1;

	if (!o)
		return -1;
	rows = cJSON_GetObjectItemCaseSensitive(o, "rows");
	bytes = cJSON_GetObjectItemCaseSensitive(o, "bytes");
	if (cJSON_IsNumber(rows) && cJSON_IsNumber(bytes)) {
		copy_str(o, "partition", a->partition, sizeof(a->partition));
		copy_str(o, "parent", a->parent, sizeof(a->parent));
		copy_str(o, "from", a->from, sizeof(a->from));
		copy_str(o, "to", a->to, sizeof(a->to));
		copy_str(o, "file", a->file, sizeof(a->file));
		copy_str(o, "sha256", a->sha256, sizeof(a->sha256));
		copy_str(o, "csv_sha256", a->csv_sha256, sizeof(a->csv_sha256));
		a->rows = (long long)rows->valuedouble;
		a->bytes = (long long)bytes->valuedouble;
		rc = 0;
	}
	cJSON_Delete(o);
	return rc;
}

int
archive_verify(const char *dir, const char *partition, long long rows, struct archive_info *a,
	       char *err, size_t errlen)
{
	char path[1024], sha[ARCHIVE_SHA_HEX];
	long long bytes;
	char *text;
	int ok;

	memset(a, 0, sizeof(*a));
	snprintf(path, sizeof(path), "%s/%s.manifest.json", dir, partition);
	if (!(text = manifest_read(path))) {
		snprintf(err, errlen, "no archive yet");
		return 0;
	}
	ok = manifest_parse(text, a) == 0 && strcmp(a->partition, partition) == 0 && strchr(a->file, '/') == NULL;
	free(text);
	if (!ok) {
		snprintf(err, errlen, "%s: not a manifest of %s", path, partition);
		return 0;
	}
	if (a->rows != rows) {
		snprintf(err, errlen, "the archive holds %lld rows, the table %lld", a->rows, rows);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, a->file);
	if (file_sha(path, 0, sha, &bytes) < 0 || bytes != a->bytes || strcmp(sha, a->sha256) != 0) {
		snprintf(err, errlen, "%s: missing or damaged (sha256 differs from the manifest)", path);
		return 0;
	}
	return 1;
}
