/*
 * chatscan: an OpenAI answer or stream event read through jscan (see
 * chatscan.h). Each read below mirrors a cJSON read in proxy.c's tree path.
 */
#include "chatscan.h"

#include <string.h>

#define CHATSCAN_CHOICE_MAX 32	/* members of a choice, of its delta or message */

#define IS(m, lit) ((m)->klen == sizeof(lit) - 1 && memcmp((m)->key, lit, sizeof(lit) - 1) == 0)

/* The first member named lit of m[0..n), or NULL. */
#define FIRST(m, n, lit) first_named((m), (n), lit, sizeof(lit) - 1)

static const struct jmember *
first_named(const struct jmember *m, int n, const char *name, size_t len)
{
	for (int i = 0; i < n; i++)
		if (m[i].klen == len && memcmp(m[i].key, name, len) == 0)
			return &m[i];
	return NULL;
}

static int
is_number(const struct jmember *m)
{
	return m->val[0] == '-' || (m->val[0] >= '0' && m->val[0] <= '9');
}

static int
is_string(const struct jmember *m)
{
	return m && m->val[0] == '"';
}

/* A token count as the router reads one (json_int): a number in [0, 9e15),
 * else 0. -1: a number too long to read here. */
static int
token_count(const struct jmember *m, int64_t *out)
{
	double d;

	*out = 0;
	if (!m || !is_number(m))
		return 0;
	if (jscan_number(m->val, m->vlen, &d) < 0)
		return -1;
	*out = d >= 0 && d < 9e15 ? (int64_t)d : 0;
	return 0;
}

int
chatscan_members(struct chatscan *c, const char *text, size_t len)
{
	if ((c->n = jscan_object(text, len, c->m, CHATSCAN_MAX)) < 0)
		return -1;
	c->error = c->choices = c->usage = c->created = c->fingerprint = NULL;
	for (int i = 0; i < c->n; i++) {
		const struct jmember *m = &c->m[i];

		if (!c->choices && IS(m, "choices"))
			c->choices = m;
		else if (!c->usage && IS(m, "usage"))
			c->usage = m;
		else if (!c->created && IS(m, "created"))
			c->created = m;
		else if (!c->fingerprint && IS(m, "system_fingerprint"))
			c->fingerprint = m;
		else if (!c->error && IS(m, "error"))
			c->error = m;
	}
	return 0;
}

/* created and system_fingerprint, as the splice copies them. */
static int
read_ids(struct chatscan *c)
{
	double d;

	c->created_ok = 0;
	if (c->created && is_number(c->created)) {
		if (jscan_number(c->created->val, c->created->vlen, &d) < 0)
			return -1;
		c->created_ok = d >= 0 && d < 1e15 && d == (double)(long long)d;
	}
	c->fingerprint_ok = c->fingerprint && (c->fingerprint->val[0] == '"' || c->fingerprint->val[0] == 'n');
	return 0;
}

static int
read_usage(struct chatscan *c)
{
	c->usage_object = c->usage && c->usage->val[0] == '{';
	c->nu = 0;
	c->prompt_tokens = c->completion_tokens = 0;
	c->has_total = 0;
	if (!c->usage_object)
		return 0;
	if ((c->nu = jscan_object(c->usage->val, c->usage->vlen, c->u, CHATSCAN_USAGE_MAX)) < 0)
		return -1;
	if (token_count(FIRST(c->u, c->nu, "prompt_tokens"), &c->prompt_tokens) < 0 ||
	    token_count(FIRST(c->u, c->nu, "completion_tokens"), &c->completion_tokens) < 0)
		return -1;
	c->has_total = FIRST(c->u, c->nu, "total_tokens") != NULL;
	return 0;
}

/* Decoded bytes of m when it is a string (else 0); -1: unreadable. */
static int
add_text(const struct jmember *m, int64_t *bytes)
{
	long n;

	if (!is_string(m))
		return 0;
	if ((n = jscan_cstring(m->val, m->vlen, NULL, 0)) < 0)
		return -1;
	*bytes += n;
	return 0;
}

/* The text of a choice's delta (chunk) or message (answer): content, and
 * for a delta its reasoning. */
static int
read_text(struct chatscan *c, const struct jmember *el, int nel, int chunk)
{
	struct jmember d[CHATSCAN_CHOICE_MAX];
	const struct jmember *o = chunk ? FIRST(el, nel, "delta") : FIRST(el, nel, "message");
	int n;

	if (!o || o->val[0] != '{')
		return 0;
	if ((n = jscan_object(o->val, o->vlen, d, CHATSCAN_CHOICE_MAX)) < 0)
		return -1;
	if (add_text(FIRST(d, n, "content"), &c->text_bytes) < 0)
		return -1;
	return chunk ? add_text(FIRST(d, n, "reasoning"), &c->text_bytes) : 0;
}

/* One element of choices (el[0..n): its members; n < 0: not an object,
 * nothing in it to read): finish_reason of the first, the text of each
 * (chunk) or of the first when there is no usage to read (answer). */
static int
read_choice(struct chatscan *c, const struct jmember *el, int n, int chunk)
{
	const struct jmember *fin;

	if (n < 0)
		return 0;
	if (c->nchoices == 0 && is_string(fin = FIRST(el, n, "finish_reason"))) {
		if (jscan_cstring(fin->val, fin->vlen, c->finish, sizeof(c->finish)) < 0)
			return -1;
		c->has_finish = 1;
	}
	if (chunk || (c->nchoices == 0 && !c->usage_object))
		return read_text(c, el, n, chunk);
	return 0;
}

static int
read_choices(struct chatscan *c, int chunk)
{
	struct jmember el[CHATSCAN_CHOICE_MAX];
	struct jarray a;
	const char *v;
	size_t vlen;
	int rc, n;

	c->choices_array = 0;
	c->nchoices = 0;
	c->has_finish = 0;
	c->finish[0] = '\0';
	c->text_bytes = 0;
	if (!c->choices)
		return 0;
	if (c->choices->val[0] == '{')
		return -1;	/* cJSON would read an object's members as elements */
	if (c->choices->val[0] != '[')
		return 0;
	c->choices_array = 1;
	if (jscan_array(&a, c->choices->val, c->choices->vlen) < 0)
		return -1;
	for (;;) {
		if (chunk || c->nchoices == 0)	/* elements read: scanned once, members and all */
			rc = jscan_array_next_members(&a, &v, &vlen, el, CHATSCAN_CHOICE_MAX, &n);
		else
			rc = jscan_array_next(&a, &v, &vlen);
		if (rc <= 0)
			return rc;
		if ((chunk || c->nchoices == 0) && read_choice(c, el, n, chunk) < 0)
			return -1;
		c->nchoices++;
	}
}

static int
chatscan_read(struct chatscan *c, const char *text, size_t len, int chunk)
{
	if (chatscan_members(c, text, len) < 0 || read_ids(c) < 0 || read_usage(c) < 0)
		return -1;
	return read_choices(c, chunk);
}

int
chatscan_chunk(struct chatscan *c, const char *text, size_t len)
{
	return chatscan_read(c, text, len, 1);
}

int
chatscan_answer(struct chatscan *c, const char *text, size_t len)
{
	return chatscan_read(c, text, len, 0);
}
