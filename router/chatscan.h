/*
 * chatscan: what the router reads of a provider's OpenAI-shaped answer
 * (chat.completion) or stream event (chat.completion.chunk), read from its
 * text through jscan, with no tree and no allocation. Parsing every event
 * with cJSON, then freeing the tree, was most of a stream's CPU time
 * (README "Performance").
 *
 * Every read gives what the router's cJSON reads of the same text give:
 * the first member of a repeated name (cJSON_GetObjectItemCaseSensitive),
 * numbers through strtod, strings as C sees cJSON's valuestring (up to a
 * \u0000). Text this cannot read so (an escaped key, non-strict JSON, more
 * members than CHATSCAN_MAX, `choices` an object, a number too long) is
 * refused: the caller then parses it with cJSON, as before.
 */
#ifndef AGORA_CHATSCAN_H
#define AGORA_CHATSCAN_H

#include <stdint.h>

#include "jscan.h"

#define CHATSCAN_MAX 128	/* members of the answer or event */
#define CHATSCAN_USAGE_MAX 32	/* members of its usage */
#define CHATSCAN_FINISH 24	/* finish_reason kept, NUL included */

struct chatscan {
	struct jmember m[CHATSCAN_MAX];	/* the object's members, as written */
	int n;
	/* the first member of each name, NULL when absent */
	const struct jmember *error, *choices, *usage, *created, *fingerprint;
	int created_ok;		/* created: an integral number in [0, 1e15) */
	int fingerprint_ok;	/* system_fingerprint: a string or null */
	int choices_array;	/* choices is an array ... */
	int nchoices;		/* ... of this many elements (0 otherwise) */
	int has_finish;		/* choices[0].finish_reason is a string: */
	char finish[CHATSCAN_FINISH];	/* it, truncated */
	int64_t text_bytes;	/* completion text (chunk: every choice's delta
				 * content and reasoning; answer: choices[0]'s
				 * message content), decoded bytes */
	/* usage when it is an object: its members, its token counts (as the
	 * router reads them: numbers in [0, 9e15), else 0) */
	int usage_object;
	struct jmember u[CHATSCAN_USAGE_MAX];
	int nu;
	int64_t prompt_tokens, completion_tokens;
	int has_total;		/* usage holds total_tokens */
};

/* The members of the object at text[0..len) and the first of each name
 * the router looks at (the other fields are left unset). 0, or -1 when
 * jscan refuses the text. */
int chatscan_members(struct chatscan *c, const char *text, size_t len);

/* Everything above, of a stream event (chunk) or a whole answer. 0, or -1:
 * the caller reads the text with cJSON. */
int chatscan_chunk(struct chatscan *c, const char *text, size_t len);
int chatscan_answer(struct chatscan *c, const char *text, size_t len);

#endif
