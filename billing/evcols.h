/*
 * evcols: a batch of usage events as columns, for PostgreSQL.
 *
 * Each event's JSON (as router/meter.c writes it) is read here, once, and
 * its fields appended to one array per column in PostgreSQL's binary array
 * format; billing's statement takes the arrays with unnest(). Before, the
 * events went as one JSON array text that PostgreSQL parsed twice (json_in
 * checks it, json_to_recordset parses it again and hashes every key of
 * every object): the largest part of the database's CPU per event.
 *
 * An event that is not valid JSON, lacks a field the tables require, or has
 * a field of the wrong type (a number that is not an integer, an int4 out of
 * range) is refused whole (billing keeps it in a dead-letter stream). Never
 * for its text's encoding: in a text field a byte that starts no
 * well-formed UTF-8 character, a lone surrogate escape or \u0000 becomes
 * U+FFFD (the router copies the client's X-Title and HTTP-Referer as they
 * came); in `tried`, passed on as JSON, invalid bytes become U+FFFD and the
 * escapes jsonb refuses (\u0000, lone surrogates) refuse the event.
 */
#ifndef AGORA_EVCOLS_H
#define AGORA_EVCOLS_H

#include <stddef.h>

/* PostgreSQL's binary array format, as the parameters carry it: the type
 * OIDs of the columns and the header before the elements. */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25
#define ARRAY_HEADER 20		/* ndim, flags, oid, length, lower bound */

enum evcol {
	EC_ID, EC_TS, EC_ACCOUNT, EC_KEY, EC_APP_URL, EC_APP_TITLE, EC_MODEL, EC_AUTHOR, EC_PROVIDER,
	EC_ENDPOINT, EC_PT, EC_CT, EC_CACHED, EC_REASONING, EC_COST, EC_PCOST, EC_LATENCY, EC_TTFT,
	EC_TPS, EC_STREAM, EC_ESTIMATED, EC_STATUS, EC_ATTEMPTS, EC_FINISH, EC_TRIED,
	EC_N
};

struct evcols;

struct evcols *evcols_new(void);
void evcols_free(struct evcols *c);
/* Empties c for the next batch, keeping its memory (freeing and growing
 * 25 buffers a batch again was a fifth of billing's CPU time). */
void evcols_reset(struct evcols *c);
/* Appends one event (0), or nothing: -1 not a usage event, -2 out of memory. */
int evcols_add(struct evcols *c, const char *json, size_t len);
/* Events appended so far. */
int evcols_count(const struct evcols *c);
/* Where c stands, and back to it: the events appended since are dropped (a
 * stream entry's events go into a batch all or none). */
struct evcols_mark {
	int n;
	size_t len[EC_N];
	int hasnull[EC_N];
};
void evcols_mark(const struct evcols *c, struct evcols_mark *m);
void evcols_rollback(struct evcols *c, const struct evcols_mark *m);
/* The EC_N arrays as binary parameters (values[i], lengths[i]), valid until
 * evcols_free. Call after the last evcols_add (again: the same arrays).
 * 0, or -1. */
int evcols_params(struct evcols *c, const char *values[EC_N], int lengths[EC_N]);

#endif
