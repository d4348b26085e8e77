/*
 * csvparse: a bounded RFC 4180 reader over a buffer held in memory. Fields
 * are separated by commas and records by CRLF, LF or a lone CR; a field in
 * double quotes may hold commas, line breaks and doubled quotes (""). A
 * quote inside an unquoted field, anything but a separator after a closing
 * quote, an unterminated quoted field and a NUL byte are errors. Blank lines
 * are skipped, a UTF-8 byte order mark at the start is ignored, and the last
 * record may end without a line break.
 *
 * Limits: bytes per record (line breaks inside quotes included), fields per
 * record and records per input; going over one is an error, never a
 * truncation. Line numbers are physical lines (1-based), so an error and a
 * record name the line an editor shows.
 *
 * Ownership: the fields handed out by csvp_next() belong to the reader and
 * stay valid until the next csvp_next() or csvp_free(); the caller may change
 * their bytes in place (e.g. to trim them).
 */
#ifndef AGORA_CSVPARSE_H
#define AGORA_CSVPARSE_H

#include <stddef.h>

struct csvp_limits {
	size_t max_record_bytes;	/* raw bytes of one record, without its line break */
	int max_fields;			/* fields per record */
	long max_records;		/* records per input, a header included */
};

struct csvp {
	const char *p, *end;		/* what is left to read */
	struct csvp_limits lim;
	long line;			/* physical line at p (1-based) */
	long record_line;		/* line the last record started on */
	long records;			/* records read so far */
	char *buf;			/* unquoted field contents, NUL-terminated */
	char **fields;
	char err[160];
};

/* Defaults: 4096-byte records, 64 fields, 200,000 records. */
extern const struct csvp_limits csvp_default_limits;

/* Sets up a reader over data[0..len) (not copied: it must outlive the
 * reader). lim NULL: the defaults. Returns 0, or -1 if memory is short. */
int csvp_init(struct csvp *c, const char *data, size_t len, const struct csvp_limits *lim);
void csvp_free(struct csvp *c);

/* Reads the next record: 1 with *fields and *nfields set, 0 at the end of
 * the input, -1 on an error (csvp_error() says which, with its line). */
int csvp_next(struct csvp *c, char *const **fields, int *nfields);

/* The line the record last returned started on. */
long csvp_line(const struct csvp *c);
/* "line N: what is wrong", after csvp_next() returned -1. */
const char *csvp_error(const struct csvp *c);

#endif
