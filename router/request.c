/*
 * request: validation of client bodies and their translation into the body
 * sent to an OpenAI-compatible provider (see request.h).
 */
#include "request.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "utf8.h"

#define REQUEST_SCAN_MAX 128	/* top-level members read by jscan */
#define REQUEST_MSG_MEMBERS 32	/* members of one message read by jscan */

static int
valid_positive_int(const cJSON *v)
{
	return cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 2147483647.0 &&
	       v->valuedouble == (double)(long long)v->valuedouble;
}

static int
fail(char *msg, size_t len, const char *text)
{
	snprintf(msg, len, "%s", text);
	return -1;
}

/* Numeric sampling fields a provider would refuse out of range: refused
 * here with a message naming the field (OpenAI's ranges). */
static const struct num_rule {
	const char *name;
	double min, max;
	int integer;
} num_rules[] = {
	{ "temperature", 0, 2, 0 },
	{ "top_p", 0, 1, 0 },
	{ "top_k", 0, 1e9, 1 },
	{ "min_p", 0, 1, 0 },
	{ "top_a", 0, 1, 0 },
	{ "frequency_penalty", -2, 2, 0 },
	{ "presence_penalty", -2, 2, 0 },
	{ "repetition_penalty", 0, 2, 0 },
	{ "n", 1, 128, 1 },
	{ "top_logprobs", 0, 20, 1 },
	{ "seed", -9007199254740991.0, 9007199254740991.0, 1 },
};

/* ---- members by name ---- */

static uint32_t
name_hash(const char *s)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

void
jfields_init(struct jfields *f, const cJSON *obj)
{
	const cJSON *x;
	int n = 0;

	f->obj = obj;
	f->repeated = NULL;
	f->hashed = 0;
	cJSON_ArrayForEach(x, obj)
		if (++n > JFIELDS_SLOTS / 2 || !x->string)
			return;		/* at most half full: short probes */
	memset(f->slot, 0, sizeof(f->slot));
	cJSON_ArrayForEach(x, obj) {
		uint32_t i = name_hash(x->string) & (JFIELDS_SLOTS - 1);

		for (; f->slot[i]; i = (i + 1) & (JFIELDS_SLOTS - 1))
			if (strcmp(f->slot[i]->string, x->string) == 0)
				break;
		if (!f->slot[i])
			f->slot[i] = x;
		else if (!f->repeated)
			f->repeated = x->string;
	}
	f->hashed = 1;
}

const cJSON *
jfields_get(const struct jfields *f, const char *name)
{
	if (!f->hashed)
		return cJSON_GetObjectItemCaseSensitive(f->obj, name);
	for (uint32_t i = name_hash(name) & (JFIELDS_SLOTS - 1); f->slot[i]; i = (i + 1) & (JFIELDS_SLOTS - 1))
		if (strcmp(f->slot[i]->string, name) == 0)
			return f->slot[i];
	return NULL;
}

/* ---- parsing ---- */

/* 1 when the messages' text is a non-empty array of objects, each with a
 * string `role` first among its roles; 0 when jscan cannot say (the whole
 * parse decides, and words the refusal). */
static int
messages_plain(const char *text, size_t len)
{
	struct jmember m[REQUEST_MSG_MEMBERS];
	struct jarray a;
	const char *v;
	size_t vlen;
	int r, n, count = 0;

	if (jscan_array(&a, text, len) < 0)
		return 0;
	while ((r = jscan_array_next_members(&a, &v, &vlen, m, REQUEST_MSG_MEMBERS, &n)) == 1) {
		int role = 0;

		for (int i = 0; i < n && !role; i++)
			if (jscan_key_is(&m[i], "role"))
				role = m[i].val[0] == '"' ? 1 : -1;
		if (role != 1)		/* also n == -1: not an object */
			return 0;
		count++;
	}
	return r == 0 && count > 0;
}

/* A member's value, parsed by cJSON as the whole parse would: all of it
 * (a cJSON that stopped short, e.g. one reading 63 characters of a number
 * at most, would check one value and forward another). */
static cJSON *
member_parse(const char *val, size_t len)
{
	const char *end = NULL;
	cJSON *v = cJSON_ParseWithLengthOpts(val, len, &end, 0);

	if (v && end != val + len) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

/* v (a new string or raw node) given s (cJSON_malloc'd) as its text, in
 * place of the empty one it was made with; NULL, s freed, when v is NULL. */
static cJSON *
node_text(cJSON *v, char *s)
{
	if (!v) {
		cJSON_free(s);
		return NULL;
	}
	cJSON_free(v->valuestring);	/* the hooks' allocator, both */
	v->valuestring = s;
	return v;
}

/* A string member decoded by jscan straight into its node (cJSON would
 * parse it again); NULL: let cJSON parse it. */
static cJSON *
string_node(const char *val, size_t len)
{
	char *s = cJSON_malloc(len);	/* decoded, it is shorter than quoted */

	if (!s)
		return NULL;
	if (jscan_cstring(val, len, s, len) < 0) {
		cJSON_free(s);
		return NULL;
	}
	return node_text(cJSON_CreateString(""), s);
}

/* A member's value (jscan found where it ends) as the node cJSON would
 * make of it: scalars without cJSON's parser, which was a twentieth of a
 * request (five members, strtod each number); objects and arrays, and
 * anything jscan leaves to cJSON, through cJSON. */
static cJSON *
member_value(const char *val, size_t len)
{
	cJSON *v = NULL;
	double d;

	if (len == 0)
		return NULL;
	if (val[0] == '"')
		v = string_node(val, len);
	else if (len == 4 && memcmp(val, "true", 4) == 0 && (v = cJSON_CreateTrue()))
		v->valueint = 1;	/* as cJSON's parser leaves it */
	else if (len == 5 && memcmp(val, "false", 5) == 0)
		v = cJSON_CreateFalse();
	else if (len == 4 && memcmp(val, "null", 4) == 0)
		v = cJSON_CreateNull();
	else if ((val[0] == '-' || (val[0] >= '0' && val[0] <= '9')) && jscan_number(val, len, &d) == 0)
		v = cJSON_CreateNumber(d);
	return v ? v : member_parse(val, len);
}

/* A raw node holding text[0..len): cJSON_CreateRaw would copy a copy. */
static cJSON *
raw_node(const char *text, size_t len)
{
	char *s = cJSON_malloc(len + 1);

	if (!s)
		return NULL;
	memcpy(s, text, len);
	s[len] = '\0';
	return node_text(cJSON_CreateRaw(""), s);
}

/* The members one by one, `messages` raw; NULL when jscan cannot read it
 * all (the caller parses it whole). */
static cJSON *
parse_members(const char *body, size_t len)
{
	struct jmember m[REQUEST_SCAN_MAX];
	int n = jscan_object(body, len, m, REQUEST_SCAN_MAX);
	char key[256];
	cJSON *o;

	if (n < 0 || !(o = cJSON_CreateObject()))
		return NULL;
	for (int i = 0; i < n; i++) {
		cJSON *v;

		if (m[i].klen >= sizeof(key))
			goto whole;
		memcpy(key, m[i].key, m[i].klen);
		key[m[i].klen] = '\0';
		if (jscan_key_is(&m[i], "messages")) {
			if (!messages_plain(m[i].val, m[i].vlen) || !(v = raw_node(m[i].val, m[i].vlen)))
				goto whole;
		} else if (!(v = member_value(m[i].val, m[i].vlen))) {
			goto whole;
		}
		if (!cJSON_AddItemToObject(o, key, v)) {
			cJSON_Delete(v);
			goto whole;
		}
	}
	return o;
whole:
	cJSON_Delete(o);
	return NULL;
}

cJSON *
request_parse(const char *body, size_t len, int *shallow)
{
	cJSON *o = parse_members(body, len);

	*shallow = o != NULL;
	return o ? o : cJSON_ParseWithLength(body, len);
}

cJSON *
request_parse_whole(const char *body, size_t len)
{
	return cJSON_ParseWithLength(body, len);
}

/* ---- checks ---- */

static int
validate_numbers(const struct jfields *b, char *msg, size_t len)
{
	for (size_t i = 0; i < sizeof(num_rules) / sizeof(num_rules[0]); i++) {
		const struct num_rule *r = &num_rules[i];
		const cJSON *v = jfields_get(b, r->name);

		if (!v || cJSON_IsNull(v))
			continue;
		if (!cJSON_IsNumber(v) || v->valuedouble < r->min || v->valuedouble > r->max ||
		    (r->integer && v->valuedouble != (double)(long long)v->valuedouble)) {
			snprintf(msg, len, "'%s' must be %s from %g to %g", r->name,
				 r->integer ? "an integer" : "a number", r->min, r->max);
			return -1;
		}
	}
	return 0;
}

int
request_utf8_valid(const char *s, size_t n)
{
	return utf8_valid(s, n);	/* the one validator (lib/utf8.c) */
}

#define REQUEST_MAX_FIELDS 256	/* members of the body or of `provider` */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first member name an object repeats, or NULL (also "" when it has
 * more than REQUEST_MAX_FIELDS members). A repeated key would let the
 * provider read another value than the router routed and billed. */
static const char *
repeated_key(const cJSON *o)
{
	const char *names[REQUEST_MAX_FIELDS];
	const cJSON *x;
	int n = 0;

	cJSON_ArrayForEach(x, o) {
		if (n == REQUEST_MAX_FIELDS)
			return "";
		names[n++] = x->string ? x->string : "";
	}
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	for (int i = 1; i < n; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			return names[i];
	return NULL;
}

static int
validate_unique(const cJSON *o, const struct jfields *f, const char *where, char *msg, size_t len)
{
	const char *k = f && f->hashed ? f->repeated : repeated_key(o);

	if (!k)
		return 0;
	if (!*k)
		snprintf(msg, len, "%s has more than %d fields", where, REQUEST_MAX_FIELDS);
	else
		snprintf(msg, len, "%s repeats the field '%.64s'", where, k);
	return -1;
}

static int
validate_messages(const cJSON *m, char *msg, size_t len)
{
	const cJSON *x;

	if (cJSON_IsRaw(m))	/* request_parse checked the text (only it makes raw nodes) */
		return 0;
	if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) == 0)
		return fail(msg, len, "'messages' must be a non-empty array");
	cJSON_ArrayForEach(x, m) {
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(x, "role");

		if (!cJSON_IsObject(x) || !cJSON_IsString(role))
			return fail(msg, len, "each message must be an object with a string 'role'");
	}
	return 0;
}

int
request_validate(const cJSON *b, char *msg, size_t len)
{
	static const char *const ints[] = { "max_tokens", "max_completion_tokens" };
	const cJSON *model, *models, *stream, *x;
	struct jfields f;

	if (!cJSON_IsObject(b))
		return fail(msg, len, "the request body must be a JSON object");
	jfields_init(&f, b);
	if (validate_unique(b, &f, "the request body", msg, len) < 0)
		return -1;
	x = jfields_get(&f, "provider");
	if (cJSON_IsObject(x) && validate_unique(x, NULL, "'provider'", msg, len) < 0)
		return -1;
	x = jfields_get(&f, "stream_options");
	if (cJSON_IsObject(x) && validate_unique(x, NULL, "'stream_options'", msg, len) < 0)
		return -1;
	model = jfields_get(&f, "model");
	models = jfields_get(&f, "models");
	stream = jfields_get(&f, "stream");
	if (model && !(cJSON_IsString(model) && model->valuestring[0]))
		return fail(msg, len, "'model' must be a non-empty string");
	if (models && !cJSON_IsArray(models))
		return fail(msg, len, "'models' must be an array of model ids");
	cJSON_ArrayForEach(x, models)
		if (!cJSON_IsString(x) || !x->valuestring[0])
			return fail(msg, len, "'models' must be an array of model ids");
	if (!model && cJSON_GetArraySize(models) == 0)
		return fail(msg, len, "'model' is required");
	if (validate_messages(jfields_get(&f, "messages"), msg, len) < 0)
		return -1;
	if (stream && !cJSON_IsBool(stream))
		return fail(msg, len, "'stream' must be a boolean");
	if (validate_numbers(&f, msg, len) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		x = jfields_get(&f, ints[i]);
		if (x && !cJSON_IsNull(x) && !valid_positive_int(x)) {
			snprintf(msg, len, "'%s' must be a positive integer", ints[i]);
			return -1;
		}
	}
	return 0;
}

int
request_prepare_upstream(cJSON *b, const char *upstream_model, int stream)
{
	static const char *const drop[] = { "models", "provider", "transforms", "route",
					    "plugins", "usage" };
	cJSON *so;

	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		cJSON_DeleteItemFromObjectCaseSensitive(b, drop[i]);
	cJSON_DeleteItemFromObjectCaseSensitive(b, "model");
	if (!cJSON_AddStringToObject(b, "model", upstream_model))
		return -1;
	if (!stream)
		return 0;
	so = cJSON_GetObjectItemCaseSensitive(b, "stream_options");
	if (!cJSON_IsObject(so)) {
		cJSON_DeleteItemFromObjectCaseSensitive(b, "stream_options");
		if (!(so = cJSON_AddObjectToObject(b, "stream_options")))
			return -1;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(so, "include_usage");
	return cJSON_AddTrueToObject(so, "include_usage") ? 0 : -1;
}
