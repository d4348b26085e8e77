/*
 * The Anthropic Messages adapter: chat-completions requests into Messages
 * requests, Messages answers and event streams back into chat completions.
 * JSON is written with single quotes here for readability (js() swaps them).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anthropic.h"

/* Parses JSON written with ' for ". */
static cJSON *
js(const char *s)
{
	char *x = strdup(s);
	cJSON *o;

	for (char *c = x; *c; c++)
		if (*c == '\'')
			*c = '"';
	o = cJSON_Parse(x);
	if (!o)
		fail_msg("bad test JSON: %s", x);
	free(x);
	return o;
}

/* got equals want (JSON with '), or the test fails showing both. */
static void
expect_json(const cJSON *got, const char *want)
{
	cJSON *w = js(want);

	if (!cJSON_Compare(got, w, 1)) {
		char *g = cJSON_PrintUnformatted(got), *ws = cJSON_PrintUnformatted(w);

		print_error("got:  %s\nwant: %s\n", g ? g : "NULL", ws);
		cJSON_free(g);
		cJSON_free(ws);
		cJSON_Delete(w);
		fail();
	}
	cJSON_Delete(w);
}

/* Translates a chat request; expects success. */
static cJSON *
translate(const char *chat)
{
	cJSON *in = js(chat), *out = NULL;
	char msg[200] = "";
	int rc = anthropic_request(in, "claude-up", ANTHROPIC_DEFAULT_MAX_TOKENS, &out, msg, sizeof(msg));

	if (rc != ANTHROPIC_OK)
		fail_msg("translation failed (%d): %s", rc, msg);
	cJSON_Delete(in);
	return out;
}

/* ---- requests ---- */

static void
test_request_system_and_params(void **state)
{
	cJSON *out = translate("{'model':'x/claude','messages':["
			       "{'role':'system','content':'Be brief.'},"
			       "{'role':'developer','content':[{'type':'text','text':'Use French.'}]},"
			       "{'role':'user','content':'Hello'}],"
			       "'temperature':1.6,'top_p':0.9,'top_k':40,'stop':'END','stream':true,"
			       "'user':'u-42','max_completion_tokens':99,'stream_options':{'include_usage':true},"
			       "'provider':{'order':['a']},'seed':7}");

	(void)state;
	expect_json(out, "{'model':'claude-up','system':'Be brief.\\n\\nUse French.',"
			 "'messages':[{'role':'user','content':[{'type':'text','text':'Hello'}]}],"
			 "'max_tokens':99,'temperature':1,'top_p':0.9,'top_k':40,'stop_sequences':['END'],"
			 "'stream':true,'metadata':{'user_id':'u-42'}}");
	cJSON_Delete(out);
}

static void
test_request_defaults(void **state)
{
	cJSON *out = translate("{'model':'m','max_tokens':null,'stop':['a','b'],"
			       "'messages':[{'role':'user','content':'hi'}]}");
	cJSON *in = js("{'messages':[{'role':'user','content':'hi'}]}"), *o2 = NULL;
	char msg[100];

	(void)state;
	expect_json(out, "{'model':'claude-up','messages':[{'role':'user','content':[{'type':'text','text':'hi'}]}],"
			 "'max_tokens':4096,'stop_sequences':['a','b']}");
	cJSON_Delete(out);
	assert_int_equal(anthropic_request(in, "up", 1000, &o2, msg, sizeof(msg)), ANTHROPIC_OK);
	assert_int_equal(cJSON_GetObjectItem(o2, "max_tokens")->valueint, 1000);
	cJSON_Delete(o2);
	cJSON_Delete(in);
}

static void
test_request_tools_round_trip(void **state)
{
	cJSON *out = translate(
		"{'model':'m','tools':[{'type':'function','function':{'name':'get_weather','description':'Weather',"
		"'parameters':{'type':'object','properties':{'city':{'type':'string'}}}}},"
		"{'type':'function','function':{'name':'now'}}],"
		"'tool_choice':'required','parallel_tool_calls':false,'messages':["
		"{'role':'user','content':'Weather in Paris and Oslo?'},"
		"{'role':'assistant','content':'Let me look.','tool_calls':["
		"{'id':'call_1','type':'function','function':{'name':'get_weather','arguments':'{\\'city\\':\\'Paris\\'}'}},"
		"{'id':'call_2','type':'function','function':{'name':'now','arguments':''}}]},"
		"{'role':'tool','tool_call_id':'call_1','content':'18C'},"
		"{'role':'tool','tool_call_id':'call_2','content':[{'type':'text','text':'noon'}]},"
		"{'role':'user','content':'Thanks'}]}");

	(void)state;
	expect_json(out,
		"{'model':'claude-up','messages':["
		"{'role':'user','content':[{'type':'text','text':'Weather in Paris and Oslo?'}]},"
		"{'role':'assistant','content':[{'type':'text','text':'Let me look.'},"
		"{'type':'tool_use','id':'call_1','name':'get_weather','input':{'city':'Paris'}},"
		"{'type':'tool_use','id':'call_2','name':'now','input':{}}]},"
		"{'role':'user','content':[{'type':'tool_result','tool_use_id':'call_1','content':'18C'},"
		"{'type':'tool_result','tool_use_id':'call_2','content':[{'type':'text','text':'noon'}]},"
		"{'type':'text','text':'Thanks'}]}],"
		"'max_tokens':4096,"
		"'tools':[{'name':'get_weather','description':'Weather','input_schema':{'type':'object',"
		"'properties':{'city':{'type':'string'}}}},"
		"{'name':'now','input_schema':{'type':'object','properties':{}}}],"
		"'tool_choice':{'type':'any','disable_parallel_tool_use':true}}");
	cJSON_Delete(out);
}

static void
test_request_tool_choice(void **state)
{
	static const struct { const char *choice, *want; } cases[] = {
		{ "'auto'", "{'type':'auto'}" },
		{ "'none'", "{'type':'none'}" },
		{ "'required'", "{'type':'any'}" },
		{ "{'type':'function','function':{'name':'f'}}", "{'type':'tool','name':'f'}" },
	};
	char buf[400];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *out;

		snprintf(buf, sizeof(buf), "{'tools':[{'type':'function','function':{'name':'f'}}],'tool_choice':%s,"
			 "'messages':[{'role':'user','content':'x'}]}", cases[i].choice);
		out = translate(buf);
		expect_json(cJSON_GetObjectItem(out, "tool_choice"), cases[i].want);
		cJSON_Delete(out);
	}
	/* no tools: nothing to choose from */
	{
		cJSON *out = translate("{'tool_choice':'auto','tools':[],'messages':[{'role':'user','content':'x'}]}");

		assert_null(cJSON_GetObjectItem(out, "tool_choice"));
		assert_null(cJSON_GetObjectItem(out, "tools"));
		cJSON_Delete(out);
	}
}

static void
test_request_images(void **state)
{
	cJSON *out = translate("{'messages':[{'role':'user','content':["
			       "{'type':'text','text':'What is this?','cache_control':{'type':'ephemeral'}},"
			       "{'type':'image_url','image_url':{'url':'data:image/png;base64,iVBORw0KGgo='}},"
			       "{'type':'image_url','image_url':{'url':'https://example.com/cat.jpg','detail':'high'}}]}]}");

	(void)state;
	expect_json(cJSON_GetObjectItem(out, "messages"),
		    "[{'role':'user','content':["
		    "{'type':'text','text':'What is this?','cache_control':{'type':'ephemeral'}},"
		    "{'type':'image','source':{'type':'base64','media_type':'image/png','data':'iVBORw0KGgo='}},"
		    "{'type':'image','source':{'type':'url','url':'https://example.com/cat.jpg'}}]}]");
	cJSON_Delete(out);
}

static void
test_request_merges_turns(void **state)
{
	cJSON *out = translate("{'messages':[{'role':'user','content':'a'},{'role':'user','content':''},"
			       "{'role':'system','content':'s'},{'role':'user','content':'b'},"
			       "{'role':'assistant','content':''},{'role':'assistant','content':'c'},"
			       "{'role':'assistant','content':null,'tool_calls':[]}]}");

	(void)state;
	expect_json(out, "{'model':'claude-up','system':'s','messages':["
			 "{'role':'user','content':[{'type':'text','text':'a'},{'type':'text','text':'b'}]},"
			 "{'role':'assistant','content':[{'type':'text','text':'c'}]}],'max_tokens':4096}");
	cJSON_Delete(out);
}

static void
test_request_leaves_client_body(void **state)
{
	const char *chat = "{'model':'m','messages':[{'role':'system','content':'s'},{'role':'user','content':'x'},"
			   "{'role':'assistant','tool_calls':[{'id':'1','function':{'name':'f','arguments':'{}'}}]},"
			   "{'role':'tool','tool_call_id':'1','content':'r'}],'stop':'S',"
			   "'tools':[{'type':'function','function':{'name':'f'}}]}";
	cJSON *in = js(chat), *copy = cJSON_Duplicate(in, 1), *out = NULL;
	char msg[100];

	(void)state;
	assert_int_equal(anthropic_request(in, "up", 4096, &out, msg, sizeof(msg)), ANTHROPIC_OK);
	assert_true(cJSON_Compare(in, copy, 1));
	cJSON_Delete(out);
	cJSON_Delete(in);
	cJSON_Delete(copy);
}

static void
test_request_refused(void **state)
{
	static const struct { const char *chat, *says; } bad[] = {
		{ "{'messages':[{'role':'system','content':'only me'}]}", "at least one user or assistant" },
		{ "{'messages':[{'role':'function','content':'x'}]}", "role 'function'" },
		{ "{'messages':[{'role':'user','content':[{'type':'input_audio'}]}]}", "'input_audio'" },
		{ "{'messages':[{'role':'user','content':7}]}", "content must be" },
		{ "{'messages':[{'role':'assistant','content':[{'type':'image_url','image_url':{'url':'http://x/y'}}]}]}",
		  "'image_url'" },
		{ "{'messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'ftp://x'}}]}]}",
		  "http(s)" },
		{ "{'messages':[{'role':'user','content':[{'type':'image_url','image_url':{'url':'data:image/png,abc'}}]}]}",
		  "base64" },
		{ "{'messages':[{'role':'user','content':[{'type':'image_url'}]}]}", "image_url.url" },
		{ "{'messages':[{'role':'system','content':[{'type':'image_url','image_url':'http://x'}]}]}",
		  "system messages" },
		{ "{'messages':[{'role':'assistant','tool_calls':[{'id':'1','function':{'name':'f','arguments':'[1]'}}]}]}",
		  "arguments must be a JSON object" },
		{ "{'messages':[{'role':'assistant','tool_calls':[{'id':'1','function':{'name':'f','arguments':'{no'}}]}]}",
		  "arguments must be a JSON object" },
		{ "{'messages':[{'role':'assistant','tool_calls':[{'function':{'name':'f'}}]}]}", "'id'" },
		{ "{'messages':[{'role':'assistant','tool_calls':{}}]}", "'tool_calls'" },
		{ "{'messages':[{'role':'tool','content':'r'}]}", "'tool_call_id'" },
		{ "{'messages':[{'role':'user','content':'x'}],'tools':[{'type':'retrieval'}]}", "type" },
		{ "{'messages':[{'role':'user','content':'x'}],'tools':{}}", "'tools'" },
		{ "{'messages':[{'role':'user','content':'x'}],'tools':[{'type':'function','function':{'name':'f'}}],"
		  "'tool_choice':'sometimes'}", "'tool_choice'" },
		{ "{'messages':[{'role':'user','content':'x'}],'stop':[1]}", "'stop'" },
		{ "{'messages':[{'role':'user','content':'x'}],'stop':5}", "'stop'" },
		{ "{'messages':[{'role':'user','content':'x'}],'temperature':'hot'}", "'temperature'" },
		{ "{'messages':[{'role':'user','content':'x'}],'n':2}", "'n'" },
		{ "{'messages':'x'}", "'messages'" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *in = js(bad[i].chat), *out = (cJSON *)1;
		char msg[200] = "";

		if (anthropic_request(in, "up", 4096, &out, msg, sizeof(msg)) != ANTHROPIC_BAD)
			fail_msg("case %zu accepted", i);
		assert_null(out);
		if (!strstr(msg, bad[i].says))
			fail_msg("case %zu: '%s' does not mention %s", i, msg, bad[i].says);
		cJSON_Delete(in);
	}
}

/* ---- answers ---- */

static void
test_answer_text(void **state)
{
	cJSON *a = js("{'id':'msg_1','type':'message','role':'assistant','model':'claude-up',"
		      "'content':[{'type':'thinking','thinking':'hm','signature':'s'},{'type':'text','text':'Hello '},"
		      "{'type':'text','text':'world'}],'stop_reason':'end_turn','stop_sequence':null,"
		      "'usage':{'input_tokens':10,'cache_read_input_tokens':5,'cache_creation_input_tokens':2,"
		      "'output_tokens':7}}");
	cJSON *c = anthropic_answer(a);

	(void)state;
	expect_json(c, "{'id':'msg_1','object':'chat.completion','model':'claude-up','choices':[{'message':"
		       "{'role':'assistant','content':'Hello world','reasoning':'hm'},'index':0,'finish_reason':'stop'}],"
		       "'usage':{'prompt_tokens':17,'completion_tokens':7,'total_tokens':24,"
		       "'prompt_tokens_details':{'cached_tokens':5}}}");
	cJSON_Delete(c);
	cJSON_Delete(a);
}

static void
test_answer_tool_use(void **state)
{
	cJSON *a = js("{'id':'msg_2','type':'message','role':'assistant','model':'m',"
		      "'content':[{'type':'tool_use','id':'toolu_1','name':'get_weather','input':{'city':'Oslo'}},"
		      "{'type':'tool_use','id':'toolu_2','name':'now','input':{}}],"
		      "'stop_reason':'tool_use','usage':{'input_tokens':3,'output_tokens':4}}");
	cJSON *c = anthropic_answer(a);

	(void)state;
	expect_json(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "choices"), 0), "message"),
		    "{'role':'assistant','content':null,'tool_calls':["
		    "{'id':'toolu_1','type':'function','function':{'name':'get_weather','arguments':'{\\'city\\':\\'Oslo\\'}'}},"
		    "{'id':'toolu_2','type':'function','function':{'name':'now','arguments':'{}'}}]}");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "choices"), 0),
						"finish_reason")->valuestring, "tool_calls");
	expect_json(cJSON_GetObjectItem(c, "usage"), "{'prompt_tokens':3,'completion_tokens':4,'total_tokens':7,"
						     "'prompt_tokens_details':{'cached_tokens':0}}");
	cJSON_Delete(c);
	cJSON_Delete(a);
}

static void
test_answer_finish_reasons_and_errors(void **state)
{
	static const char *const map[][2] = {
		{ "end_turn", "stop" }, { "stop_sequence", "stop" }, { "max_tokens", "length" },
		{ "tool_use", "tool_calls" }, { "refusal", "content_filter" }, { "pause_turn", "stop" },
	};
	cJSON *err = js("{'type':'error','error':{'type':'overloaded_error','message':'Overloaded'}}");
	cJSON *nousage = js("{'type':'message','content':[],'stop_reason':'max_tokens'}"), *c;

	(void)state;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		assert_string_equal(anthropic_finish_reason(map[i][0]), map[i][1]);
	assert_string_equal(anthropic_finish_reason(NULL), "stop");
	assert_null(anthropic_answer(err));
	assert_string_equal(anthropic_error_message(err), "Overloaded");
	assert_null(anthropic_error_message(nousage));
	c = anthropic_answer(nousage);
	assert_null(cJSON_GetObjectItem(c, "usage"));	/* the proxy estimates */
	expect_json(cJSON_GetObjectItem(c, "choices"),
		    "[{'message':{'role':'assistant','content':''},'index':0,'finish_reason':'length'}]");
	cJSON_Delete(c);
	cJSON_Delete(nousage);
	cJSON_Delete(err);
}

/* ---- streams ---- */

/* Feeds one event; returns the chunks it gave as one JSON array text. */
static char *
feed(struct anthropic_stream *s, const char *event, const char *data, int want_rc)
{
	cJSON *d = js(data), *chunks = cJSON_CreateArray();
	char msg[200] = "", *out;
	int rc = anthropic_stream_feed(s, event, d, chunks, msg, sizeof(msg));

	if (rc != want_rc)
		fail_msg("%s: rc %d, want %d (%s)", event, rc, want_rc, msg);
	out = cJSON_PrintUnformatted(chunks);
	cJSON_Delete(chunks);
	cJSON_Delete(d);
	return out;
}

static void
expect_feed(struct anthropic_stream *s, const char *event, const char *data, const char *want)
{
	char *got = feed(s, event, data, strcmp(event, "message_stop") == 0 ? ANTHROPIC_DONE : ANTHROPIC_OK);
	cJSON *g = cJSON_Parse(got);

	expect_json(g, want);
	cJSON_Delete(g);
	cJSON_free(got);
}

#define CHUNK(delta, fin) "{'id':'msg_9','object':'chat.completion.chunk','model':'claude-up','choices':" \
	"[{'index':0,'delta':" delta ",'finish_reason':" fin "}]}"

static void
test_stream_text_and_tools(void **state)
{
	struct anthropic_stream *s = anthropic_stream_new();

	(void)state;
	expect_feed(s, "message_start", "{'type':'message_start','message':{'id':'msg_9','type':'message',"
		    "'role':'assistant','model':'claude-up','content':[],'stop_reason':null,"
		    "'usage':{'input_tokens':21,'cache_read_input_tokens':4,'output_tokens':1}}}",
		    "[" CHUNK("{'role':'assistant','content':''}", "null") "]");
	expect_feed(s, "ping", "{'type':'ping'}", "[]");
	expect_feed(s, "content_block_start", "{'type':'content_block_start','index':0,"
		    "'content_block':{'type':'thinking','thinking':''}}", "[]");
	expect_feed(s, "content_block_delta", "{'type':'content_block_delta','index':0,"
		    "'delta':{'type':'thinking_delta','thinking':'Let me think'}}",
		    "[" CHUNK("{'reasoning':'Let me think'}", "null") "]");
	expect_feed(s, "content_block_delta", "{'type':'content_block_delta','index':0,"
		    "'delta':{'type':'signature_delta','signature':'abc'}}", "[]");
	expect_feed(s, "content_block_stop", "{'type':'content_block_stop','index':0}", "[]");
	expect_feed(s, "content_block_start", "{'type':'content_block_start','index':1,"
		    "'content_block':{'type':'text','text':''}}", "[]");
	expect_feed(s, "content_block_delta", "{'type':'content_block_delta','index':1,"
		    "'delta':{'type':'text_delta','text':'Checking.'}}",
		    "[" CHUNK("{'content':'Checking.'}", "null") "]");
	expect_feed(s, "content_block_stop", "{'type':'content_block_stop','index':1}", "[]");
	expect_feed(s, "content_block_start", "{'type':'content_block_start','index':2,"
		    "'content_block':{'type':'tool_use','id':'toolu_1','name':'get_weather','input':{}}}",
		    "[" CHUNK("{'tool_calls':[{'index':0,'id':'toolu_1','type':'function',"
			      "'function':{'name':'get_weather','arguments':''}}]}", "null") "]");
	expect_feed(s, "content_block_delta", "{'type':'content_block_delta','index':2,"
		    "'delta':{'type':'input_json_delta','partial_json':''}}", "[]");
	expect_feed(s, "content_block_delta", "{'type':'content_block_delta','index':2,"
		    "'delta':{'type':'input_json_delta','partial_json':'{\\'city\\':'}}",
		    "[" CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'city\\':'}}]}", "null") "]");
	expect_feed(s, "content_block_delta", "{'type':'content_block_delta','index':2,"
		    "'delta':{'type':'input_json_delta','partial_json':' \\'Oslo\\'}'}}",
		    "[" CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':' \\'Oslo\\'}'}}]}", "null") "]");
	expect_feed(s, "content_block_stop", "{'type':'content_block_stop','index':2}", "[]");
	expect_feed(s, "content_block_start", "{'type':'content_block_start','index':3,"
		    "'content_block':{'type':'tool_use','id':'toolu_2','name':'now','input':{}}}",
		    "[" CHUNK("{'tool_calls':[{'index':1,'id':'toolu_2','type':'function',"
			      "'function':{'name':'now','arguments':''}}]}", "null") "]");
	expect_feed(s, "content_block_stop", "{'type':'content_block_stop','index':3}", "[]");
	expect_feed(s, "message_delta", "{'type':'message_delta','delta':{'stop_reason':'tool_use',"
		    "'stop_sequence':null},'usage':{'output_tokens':33}}",
		    "[" CHUNK("{}", "'tool_calls'") "]");
	expect_feed(s, "message_stop", "{'type':'message_stop'}",
		    "[{'id':'msg_9','object':'chat.completion.chunk','model':'claude-up','choices':[],"
		    "'usage':{'prompt_tokens':25,'completion_tokens':33,'total_tokens':58,"
		    "'prompt_tokens_details':{'cached_tokens':4}}}]");
	anthropic_stream_free(s);
}

static void
test_stream_event_names_and_errors(void **state)
{
	struct anthropic_stream *s = anthropic_stream_new();
	cJSON *chunks = cJSON_CreateArray(), *d;
	char msg[200] = "", *out;

	(void)state;
	/* the data's type decides; the event name stands in when it has none */
	expect_feed(s, "message_start", "{'message':{'id':'msg_9','model':'claude-up','usage':{'input_tokens':2}}}",
		    "[" CHUNK("{'role':'assistant','content':''}", "null") "]");
	expect_feed(s, "", "{'type':'content_block_start','index':0,'content_block':{'type':'text','text':'Hi'}}",
		    "[" CHUNK("{'content':'Hi'}", "null") "]");
	expect_feed(s, "", "{'type':'some_future_event','x':1}", "[]");
	out = feed(s, "error", "{'type':'error','error':{'type':'overloaded_error','message':'Overloaded'}}",
		   ANTHROPIC_BAD);
	assert_string_equal(out, "[]");
	cJSON_free(out);
	d = cJSON_CreateString("not an object");
	assert_int_equal(anthropic_stream_feed(s, "", d, chunks, msg, sizeof(msg)), ANTHROPIC_BAD);
	assert_string_equal(msg, "an unreadable event");
	cJSON_Delete(d);
	d = js("{'type':'error','error':{'type':'api_error','message':'Internal server error'}}");
	assert_int_equal(anthropic_stream_feed(s, NULL, d, chunks, msg, sizeof(msg)), ANTHROPIC_BAD);
	assert_string_equal(msg, "Internal server error");
	assert_int_equal(cJSON_GetArraySize(chunks), 0);
	cJSON_Delete(d);
	cJSON_Delete(chunks);
	/* a stream cut short still reports what it knew */
	expect_feed(s, "message_stop", "{'type':'message_stop'}",
		    "[{'id':'msg_9','object':'chat.completion.chunk','model':'claude-up','choices':[],"
		    "'usage':{'prompt_tokens':2,'completion_tokens':0,'total_tokens':2,"
		    "'prompt_tokens_details':{'cached_tokens':0}}}]");
	anthropic_stream_free(s);
	anthropic_stream_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_system_and_params),
		cmocka_unit_test(test_request_defaults),
		cmocka_unit_test(test_request_tools_round_trip),
		cmocka_unit_test(test_request_tool_choice),
		cmocka_unit_test(test_request_images),
		cmocka_unit_test(test_request_merges_turns),
		cmocka_unit_test(test_request_leaves_client_body),
		cmocka_unit_test(test_request_refused),
		cmocka_unit_test(test_answer_text),
		cmocka_unit_test(test_answer_tool_use),
		cmocka_unit_test(test_answer_finish_reasons_and_errors),
		cmocka_unit_test(test_stream_text_and_tools),
		cmocka_unit_test(test_stream_event_names_and_errors),
	};

	return cmocka_run_group_tests_name("anthropic", tests, NULL, NULL);
}
