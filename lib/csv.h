/*
 * csv: an RFC 4180 writer for exports. Fields are separated by commas, rows
 * end with CRLF; a field holding a comma, a double quote, CR or LF is quoted
 * with its quotes doubled. Text cells a spreadsheet would run as a formula
 * (starting with = + - @ TAB or CR) get a leading apostrophe; numbers and
 * amounts are written as they are. Amounts are exact decimal USD strings
 * from integer nano-USD (money_format_usd).
 *
 * The writer grows its own buffer; after an allocation failure every call
 * is a no-op and csv_data() returns NULL.
 */
#ifndef AGORA_CSV_H
#define AGORA_CSV_H

#include <stddef.h>
#include <stdint.h>

struct csv {
	char *buf;
	size_t len, cap;
	int col;		/* fields written on the current row */
	int failed;		/* out of memory */
};

void csv_init(struct csv *c);
void csv_free(struct csv *c);

/* A text cell (NULL: an empty cell). */
void csv_text(struct csv *c, const char *s);
/* A cell written verbatim when it needs no quoting (numbers, decimal
 * strings); quoted otherwise. No formula guard. */
void csv_raw(struct csv *c, const char *s);
void csv_i64(struct csv *c, int64_t v);
/* Nano-USD as a decimal USD string, e.g. 1500000000 -> 1.5. */
void csv_usd(struct csv *c, int64_t nusd);
/* A fraction or a mean: the shortest of %.15g, %.16g, %.17g that reads back equal. */
void csv_double(struct csv *c, double v);
void csv_empty(struct csv *c);
/* Ends the current row (CRLF). */
void csv_end_row(struct csv *c);
/* A header row from a NULL-terminated list of column names. */
void csv_header(struct csv *c, const char *const *names);

/* The bytes written so far (not NUL-terminated), or NULL after a failure. */
const char *csv_data(const struct csv *c, size_t *len);

#endif
