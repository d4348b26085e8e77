/*
 * Provider preferences: a table of `provider` objects and the endpoint order
 * each one yields over a fixed set of endpoints (cheapest first).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "route.h"

/*            id       name        training retention quant  prompt   completion */
static struct rcat_provider pa = { .id = "a", .name = "Alpha", .training = 0, .retention_days = 0 };
static struct rcat_provider pb = { .id = "b", .name = "Beta", .training = 0, .retention_days = 30 };
static struct rcat_provider pc = { .id = "c", .name = "Gamma", .training = 1, .retention_days = 0 };
static struct rcat_provider pd = { .id = "d", .name = "Delta", .training = 0, .retention_days = 0 };
static struct rcat_endpoint ea = { .prov = &pa, .quantization = "fp8", .price_prompt = 100000, .price_completion = 200000 };
static struct rcat_endpoint eb = { .prov = &pb, .quantization = "fp4", .price_prompt = 300000, .price_completion = 600000 };
static struct rcat_endpoint ec = { .prov = &pc, .quantization = "bf16", .price_prompt = 900000, .price_completion = 1800000 };
static struct rcat_endpoint ed = { .prov = &pd, .quantization = "fp8", .price_prompt = 2000000, .price_completion = 8000000 };

static const struct {
	const char *provider;	/* JSON, or NULL */
	const char *want;	/* provider ids in order */
} cases[] = {
	{ NULL, "abcd" },
	{ "{}", "abcd" },
	{ "{\"order\":[\"c\",\"a\"]}", "cabd" },
	{ "{\"order\":[\"Gamma\"],\"allow_fallbacks\":false}", "c" },
	{ "{\"allow_fallbacks\":false}", "a" },
	{ "{\"only\":[\"b\",\"Delta\"]}", "bd" },
	{ "{\"ignore\":[\"a\"]}", "bcd" },
	{ "{\"order\":[\"d\"],\"ignore\":[\"d\"]}", "abc" },
	{ "{\"data_collection\":\"deny\"}", "ad" },
	{ "{\"data_collection\":\"allow\"}", "abcd" },
	{ "{\"zdr\":true}", "acd" },
	{ "{\"quantizations\":[\"fp8\"]}", "ad" },
	{ "{\"max_price\":{\"prompt\":0.3}}", "ab" },
	{ "{\"max_price\":{\"prompt\":1,\"completion\":\"0.6\"}}", "ab" },
	{ "{\"max_price\":{\"completion\":0.1}}", "" },
	{ "{\"sort\":\"price\",\"unknown_field\":1}", "abcd" },
	{ "{\"only\":[\"nobody\"]}", "" },
};

static void
test_table(void **state)
{
	struct rcat_endpoint *in[] = { &ea, &eb, &ec, &ed }, *out[8];
	char msg[200], got[16];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = cases[i].provider ? cJSON_Parse(cases[i].provider) : NULL;
		struct route_prefs rp;
		int n;

		if (route_parse(j, &rp, msg, sizeof(msg)) < 0)
			fail_msg("case %zu: %s", i, msg);
		n = route_select(&rp, in, 4, out, 8);
		for (int k = 0; k < n; k++)
			got[k] = out[k]->prov->id[0];
		got[n] = '\0';
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu (%s): got '%s', want '%s'", i, cases[i].provider, got, cases[i].want);
		cJSON_Delete(j);
	}
}

static void
test_bad_types(void **state)
{
	static const struct { const char *json, *says; } bad[] = {
		{ "[]", "provider must be an object" },
		{ "{\"order\":\"a\"}", "provider.order" },
		{ "{\"only\":[1]}", "provider.only" },
		{ "{\"allow_fallbacks\":\"no\"}", "provider.allow_fallbacks" },
		{ "{\"data_collection\":\"maybe\"}", "provider.data_collection" },
		{ "{\"zdr\":1}", "provider.zdr" },
		{ "{\"require_parameters\":\"yes\"}", "provider.require_parameters" },
		{ "{\"sort\":\"random\"}", "provider.sort" },
		{ "{\"max_price\":5}", "provider.max_price" },
		{ "{\"max_price\":{\"prompt\":-1}}", "provider.max_price.prompt" },
		{ "{\"max_price\":{\"completion\":\"cheap\"}}", "provider.max_price.completion" },
	};
	char msg[200];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *j = cJSON_Parse(bad[i].json);
		struct route_prefs rp;

		msg[0] = '\0';
		assert_int_equal(route_parse(j, &rp, msg, sizeof(msg)), -1);
		if (!strstr(msg, bad[i].says))
			fail_msg("case %zu: '%s' does not say '%s'", i, msg, bad[i].says);
		cJSON_Delete(j);
	}
}

static void
test_suffix(void **state)
{
	char a[] = "z-ai/glm-5:floor", b[] = "z-ai/glm-5:nitro", c[] = "z-ai/glm-5:beta", d[] = "x/y";

	(void)state;
	route_strip_suffix(a, NULL);
	route_strip_suffix(b, NULL);
	route_strip_suffix(c, NULL);
	route_strip_suffix(d, NULL);
	assert_string_equal(a, "z-ai/glm-5");
	assert_string_equal(b, "z-ai/glm-5");
	assert_string_equal(c, "z-ai/glm-5:beta");
	assert_string_equal(d, "x/y");
}

static void
test_breaker(void **state)
{
	struct rcat_provider pv = { .id = "p", .name = "P" };
	struct rcat_endpoint e = { .prov = &pv, .quantization = "fp8" };

	(void)state;
	assert_int_equal(route_state(&e, 1000), ROUTE_CLOSED);
	route_failure(&e, 1000, 3, 5000, 0);
	route_failure(&e, 1001, 3, 5000, 0);
	assert_int_equal(route_state(&e, 1002), ROUTE_CLOSED);		/* below the threshold */
	route_failure(&e, 1002, 3, 5000, 0);
	assert_int_equal(route_state(&e, 1003), ROUTE_OPEN);
	assert_int_equal(e.health.opens, 1);
	assert_int_equal(route_state(&e, 6003), ROUTE_HALF_OPEN);	/* cool-down over */
	e.health.probe_ms = 6003;					/* one probe goes out */
	assert_int_equal(route_state(&e, 6004), ROUTE_OPEN);		/* others wait */
	assert_int_equal(route_state(&e, 6003 + 30001), ROUTE_HALF_OPEN);	/* a lost probe */
	route_failure(&e, 6100, 3, 5000, 0);				/* the probe failed */
	assert_int_equal(route_state(&e, 6101), ROUTE_OPEN);
	assert_int_equal(e.health.opens, 2);
	route_success(&e, 20000, 250, 80, 900);				/* a probe succeeded */
	assert_int_equal(route_state(&e, 20001), ROUTE_CLOSED);
	assert_int_equal(e.health.failures, 0);
	route_failure(&e, 20002, 3, 5000, 7000);			/* 429 Retry-After: 7 s */
	assert_int_equal(route_state(&e, 26000), ROUTE_OPEN);
	assert_int_equal(route_state(&e, 27003), ROUTE_HALF_OPEN);
}

static void
test_speed_sorts(void **state)
{
	struct rcat_endpoint *in[] = { &ea, &eb, &ec, &ed }, *out[8];
	struct rcat_endpoint *all[] = { &ea, &eb, &ec, &ed };
	struct route_prefs rp;
	cJSON *j;
	char msg[100], got[8];
	int n;

	(void)state;
	for (int i = 0; i < 4; i++)
		memset(&all[i]->health, 0, sizeof(all[i]->health));
	route_success(&ea, 1, 900, 20, 2000);		/* cheap but slow */
	route_success(&eb, 1, 200, 150, 400);	/* fast */
	route_success(&ec, 1, 400, 60, 800);		/* d: no samples, priors 1000 ms / 40 tps */
	j = cJSON_Parse("{\"sort\":\"latency\"}");
	route_parse(j, &rp, msg, sizeof(msg));
	n = route_select(&rp, in, 4, out, 8);
	for (int k = 0; k < n; k++)
		got[k] = out[k]->prov->id[0];
	got[n] = '\0';
	assert_string_equal(got, "bcad");
	cJSON_Delete(j);
	j = cJSON_Parse("{\"sort\":\"throughput\"}");
	route_parse(j, &rp, msg, sizeof(msg));
	n = route_select(&rp, in, 4, out, 8);
	for (int k = 0; k < n; k++)
		got[k] = out[k]->prov->id[0];
	got[n] = '\0';
	assert_string_equal(got, "bcda");
	cJSON_Delete(j);
	{
		char id[] = "z/m:nitro";

		route_parse(NULL, &rp, msg, sizeof(msg));
		route_strip_suffix(id, &rp);
		assert_int_equal(rp.sort, ROUTE_SORT_THROUGHPUT);
	}
	route_success(&ea, 2, 100, 0, 100);		/* the average moves towards new samples */
	assert_true(ea.health.ttft_ms < 900 && ea.health.ttft_ms > 100);
	for (int i = 0; i < 4; i++)
		memset(&all[i]->health, 0, sizeof(all[i]->health));
}

static void
test_fit_and_parameters(void **state)
{
	struct rcat_model m = { 0 };
	struct rcat_endpoint x = { .prov = &pa, .model = &m, .quantization = "fp8", .context_length = 1000,
				   .max_output = 100 };
	struct rcat_endpoint y = { .prov = &pb, .model = &m, .quantization = "fp8", .context_length = 8000,
				   .max_output = 4000 };
	struct rcat_endpoint *in[] = { &x, &y }, *out[4];
	struct route_prefs rp;
	cJSON *body;
	char msg[100];

	(void)state;
	m.supported = cJSON_Parse("[\"temperature\",\"tools\"]");
	y.supported = cJSON_Parse("[\"temperature\",\"tools\",\"response_format\"]");
	body = cJSON_Parse("{\"max_tokens\":500,\"tools\":[]}");
	route_parse(NULL, &rp, msg, sizeof(msg));
	route_from_request(&rp, body, 100);
	assert_int_equal(route_select(&rp, in, 2, out, 4), 1);		/* x cannot output 500 */
	assert_ptr_equal(out[0], &y);
	cJSON_Delete(body);
	body = cJSON_Parse("{\"max_tokens\":50}");
	route_from_request(&rp, body, 4000);				/* ~1000 prompt tokens + 50 */
	assert_int_equal(route_select(&rp, in, 2, out, 4), 1);
	assert_ptr_equal(out[0], &y);
	cJSON_Delete(body);
	body = cJSON_Parse("{\"response_format\":{\"type\":\"json_object\"},\"temperature\":0}");
	route_from_request(&rp, body, 10);
	assert_int_equal(route_select(&rp, in, 2, out, 4), 2);		/* not required: both */
	rp.require_parameters = 1;
	assert_int_equal(route_select(&rp, in, 2, out, 4), 1);		/* only y has response_format */
	assert_ptr_equal(out[0], &y);
	cJSON_Delete(body);
	cJSON_Delete(m.supported);
	cJSON_Delete(y.supported);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_bad_types),
		cmocka_unit_test(test_suffix),
		cmocka_unit_test(test_breaker),
		cmocka_unit_test(test_speed_sorts),
		cmocka_unit_test(test_fit_and_parameters),
	};

	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
