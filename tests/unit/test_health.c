/*
 * Endpoint health: the window of the last attempts (percentiles, outcomes,
 * wrap-around, time span), the Redis entry format, the fleet merge, and how
 * fleet values reach routing (sort by latency/throughput, breaker state).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "health.h"
#include "route.h"

#define NOW 1700000000000LL

static void
test_percentiles(void **state)
{
	float v[RCAT_WINDOW];
	struct health_pct p;

	(void)state;
	health_percentiles(v, 0, 0, &p);
	assert_true(p.p50 == 0 && p.p99 == 0);
	for (int i = 0; i < 100; i++)
		v[i] = (float)(100 - i);		/* 100 .. 1, unsorted */
	health_percentiles(v, 100, 0, &p);
	assert_true(p.p50 == 50 && p.p75 == 75 && p.p90 == 90 && p.p99 == 99);
	for (int i = 0; i < 100; i++)
		v[i] = (float)(i + 1);
	health_percentiles(v, 100, 1, &p);		/* throughput: the tail is the slow side */
	assert_true(p.p50 == 51 && p.p90 == 11 && p.p99 == 2);
	v[0] = 7;
	health_percentiles(v, 1, 0, &p);
	assert_true(p.p50 == 7 && p.p90 == 7);
}

static void
test_window(void **state)
{
	struct rcat_health h;
	struct health_stats st;

	(void)state;
	memset(&h, 0, sizeof(h));
	health_stats(&h, NOW, HEALTH_SPAN_MS, &st);
	assert_int_equal(st.ok + st.failed, 0);
	assert_int_equal(st.nttft, 0);
	/* 200 successes: only the last RCAT_WINDOW stay (ttft 73..200) */
	for (int i = 1; i <= 200; i++)
		health_record(&h, NOW - 1000 + i, 1, i, 10 * i, 1000.0 / i);
	health_stats(&h, NOW, HEALTH_SPAN_MS, &st);
	assert_int_equal(st.ok, RCAT_WINDOW);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.nttft, RCAT_WINDOW);
	assert_true(st.ttft.p50 == 136);		/* rank 64 of 73..200 */
	assert_true(st.latency.p90 == 10 * (72 + 116));	/* rank 116 */
	assert_true(st.tps.p50 > 0);
	/* failures push successes out and count in the outcome */
	for (int i = 0; i < 28; i++)
		health_record(&h, NOW, 0, 0, 0, 0);
	health_stats(&h, NOW, HEALTH_SPAN_MS, &st);
	assert_int_equal(st.ok, 100);
	assert_int_equal(st.failed, 28);
	assert_int_equal(st.nttft, 100);
	/* a success without tokens has no throughput */
	health_record(&h, NOW, 1, 50, 60, 0);
	health_stats(&h, NOW, HEALTH_SPAN_MS, &st);
	assert_int_equal(st.ntps, 99);
	assert_int_equal(st.nttft, 100);		/* one success out, one in */
	/* the span: an hour later nothing is left */
	health_stats(&h, NOW + 3600 * 1000, HEALTH_SPAN_MS, &st);
	assert_int_equal(st.ok + st.failed, 0);
	assert_true(st.ttft.p90 == 0);
}

static void
test_route_feeds_window(void **state)
{
	struct rcat_provider pv = { .id = "p", .name = "P" };
	struct rcat_endpoint e = { .prov = &pv, .quantization = "fp8" };
	struct health_stats st;

	(void)state;
	route_success(&e, NOW, 200, 50, 1200);
	route_success(&e, NOW + 1, 400, 30, 1500);
	route_failure(&e, NOW + 2, 3, 5000, 0);
	health_stats(&e.health, NOW + 3, HEALTH_SPAN_MS, &st);
	assert_int_equal(st.ok, 2);
	assert_int_equal(st.failed, 1);
	assert_true(st.ttft.p50 == 200 && st.ttft.p90 == 400);
	assert_true(st.latency.p50 == 1200 && st.latency.p90 == 1500);
	assert_true(st.tps.p50 == 50 && st.tps.p90 == 30);
}

static void
test_entry_format(void **state)
{
	struct health_entry e = { .ttft_ms = 812.25, .tps = 41.5, .samples = 17, .until_ms = NOW + 5000,
				  .updated_ms = NOW }, f;
	char buf[128];
	static const char *const bad[] = {
		"", "1,2,3,4", "x,2,3,4,5", "1,2,3,4,0", "-1,2,3,4,5", "1,2,-3,4,5", "nan,2,3,4,5",
		"1,2,3,4,5x", "1;2;3;4;5", "1,,3,4,5",
	};

	(void)state;
	assert_true(health_entry_format(&e, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "812.2,41.50,17,1700000005000,1700000000000");
	assert_int_equal(health_entry_parse(buf, strlen(buf), &f), 0);
	assert_true(f.ttft_ms > 812.1 && f.ttft_ms < 812.3 && f.tps == 41.5);
	assert_int_equal(f.samples, 17);
	assert_int_equal(f.until_ms, NOW + 5000);
	assert_int_equal(f.updated_ms, NOW);
	assert_int_equal(health_entry_parse("1,2,3,4,5,future", 16, &f), 0);	/* later fields ignored */
	assert_int_equal(f.updated_ms, 5);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (health_entry_parse(bad[i], strlen(bad[i]), &f) == 0)
			fail_msg("parsed '%s'", bad[i]);
	assert_int_equal(health_entry_format(&e, buf, 10), -1);
}

static void
test_entry_own(void **state)
{
	struct rcat_health h;
	struct health_entry e;

	(void)state;
	memset(&h, 0, sizeof(h));
	health_entry_own(&h, NOW, &e);
	assert_true(e.samples == 0 && e.ttft_ms == 0 && e.until_ms == 0 && e.updated_ms == NOW);
	h.ttft_ms = 300;
	h.tps = 20;
	h.until_ms = NOW + 100;
	health_record(&h, NOW - 10, 1, 300, 900, 20);
	health_record(&h, NOW - HEALTH_SPAN_MS - 1, 1, 300, 900, 20);	/* too old */
	health_record(&h, NOW - 5, 0, 0, 0, 0);
	health_entry_own(&h, NOW, &e);
	assert_int_equal(e.samples, 1);
	assert_true(e.ttft_ms == 300 && e.tps == 20);
	assert_int_equal(e.until_ms, NOW + 100);
	h.until_ms = NOW - 1;				/* a deadline past is no news */
	health_entry_own(&h, NOW, &e);
	assert_int_equal(e.until_ms, 0);
}

static void
test_merge(void **state)
{
	struct health_entry own = { .ttft_ms = 100, .tps = 50, .samples = 10, .updated_ms = NOW };
	struct health_entry others[] = {
		{ .ttft_ms = 400, .tps = 20, .samples = 30, .until_ms = 0, .updated_ms = NOW - 1000 },
		{ .ttft_ms = 9999, .tps = 1, .samples = 100, .until_ms = NOW + 50000,
		  .updated_ms = NOW - HEALTH_FRESH_MS - 1 },			/* stale: ignored */
		{ .ttft_ms = 0, .tps = 0, .samples = 0, .until_ms = NOW + 7000, .updated_ms = NOW - 10 },
		{ .ttft_ms = 0, .tps = 0, .samples = 0, .until_ms = NOW + 3000, .updated_ms = NOW - 10 },
	};
	struct health_fleet f;
	struct rcat_health h;

	(void)state;
	health_merge(&own, others, 4, NOW, &f);
	assert_true(f.ttft_ms > 324.9 && f.ttft_ms < 325.1);	/* (10*100 + 30*400) / 40 */
	assert_true(f.tps > 27.4 && f.tps < 27.6);		/* (10*50 + 30*20) / 40 */
	assert_int_equal(f.samples, 40);
	assert_int_equal(f.routers, 4);				/* own, 400 ms, two open */
	assert_int_equal(f.until_ms, NOW + 7000);		/* the latest of the fresh others */

	/* weights are capped: a busy router does not drown the others */
	others[0].samples = 100000;
	health_merge(&own, others, 1, NOW, &f);
	assert_true(f.ttft_ms > 100 + 300.0 * HEALTH_WEIGHT_CAP / (HEALTH_WEIGHT_CAP + 10) - 0.1 &&
		    f.ttft_ms < 100 + 300.0 * HEALTH_WEIGHT_CAP / (HEALTH_WEIGHT_CAP + 10) + 0.1);

	/* only our own samples: no fleet speeds (the local values are used) */
	health_merge(&own, others + 1, 3, NOW, &f);
	assert_true(f.ttft_ms == 0 && f.tps == 0 && f.samples == 0);
	assert_int_equal(f.until_ms, NOW + 7000);
	/* our own open breaker is not the fleet's news */
	own.until_ms = NOW + 99999;
	health_merge(&own, NULL, 0, NOW, &f);
	assert_int_equal(f.until_ms, 0);
	assert_int_equal(f.routers, 1);
	/* a cold router learns from the others alone */
	health_merge(NULL, others, 1, NOW, &f);
	assert_true(f.ttft_ms == 400 && f.tps == 20);
	/* far-future deadlines are capped */
	others[2].until_ms = NOW + 100LL * HEALTH_MAX_OPEN_MS;
	health_merge(NULL, others + 2, 1, NOW, &f);
	assert_int_equal(f.until_ms, NOW + HEALTH_MAX_OPEN_MS);

	memset(&h, 0, sizeof(h));
	assert_true(health_ttft_ms(&h) == 0 && health_tps(&h) == 0);	/* the caller's prior */
	h.samples = 3;
	h.ttft_ms = 111;
	h.tps = 22;
	assert_true(health_ttft_ms(&h) == 111 && health_tps(&h) == 22);
	health_merge(NULL, others, 1, NOW, &f);
	health_apply(&h, &f, NOW);
	assert_true(health_ttft_ms(&h) == 400 && health_tps(&h) == 20);
	assert_int_equal(h.fleet_at_ms, NOW);
}

static struct rcat_provider pa = { .id = "a", .name = "Alpha" };
static struct rcat_provider pb = { .id = "b", .name = "Beta" };
static struct rcat_provider pc = { .id = "c", .name = "Gamma" };

static void
order(const char *provider, struct rcat_endpoint **in, int n, char *got)
{
	cJSON *j = cJSON_Parse(provider);
	struct rcat_endpoint *out[8];
	struct route_prefs rp;
	char msg[100];
	int k;

	assert_int_equal(route_parse(j, &rp, msg, sizeof(msg)), 0);
	k = route_select(&rp, in, n, out, 8);
	for (int i = 0; i < k; i++)
		got[i] = out[i]->prov->id[0];
	got[k] = '\0';
	cJSON_Delete(j);
}

static void
test_fleet_routes(void **state)
{
	static struct rcat_endpoint ea = { .prov = &pa, .quantization = "fp8", .price_prompt = 1 };
	static struct rcat_endpoint eb = { .prov = &pb, .quantization = "fp8", .price_prompt = 2 };
	static struct rcat_endpoint ec = { .prov = &pc, .quantization = "fp8", .price_prompt = 3 };
	struct rcat_endpoint *in[] = { &ea, &eb, &ec };
	struct health_fleet f = { .ttft_ms = 2000, .tps = 5, .samples = 50, .routers = 2 };
	char got[8];

	(void)state;
	memset(&ea.health, 0, sizeof(ea.health));
	memset(&eb.health, 0, sizeof(eb.health));
	memset(&ec.health, 0, sizeof(ec.health));
	route_success(&ea, NOW, 300, 90, 1000);		/* fast here... */
	route_success(&eb, NOW, 600, 60, 1000);
	order("{\"sort\":\"latency\"}", in, 3, got);
	assert_string_equal(got, "abc");		/* c: the prior, 1000 ms */
	health_apply(&ea.health, &f, NOW);		/* ...but slow for the fleet */
	order("{\"sort\":\"latency\"}", in, 3, got);
	assert_string_equal(got, "bca");
	order("{\"sort\":\"throughput\"}", in, 3, got);
	assert_string_equal(got, "bca");		/* 60, prior 40, fleet 5 */

	/* another router found c dead: open here too, until its deadline */
	f.samples = 0;
	f.until_ms = NOW + 10000;
	health_apply(&ec.health, &f, NOW);
	assert_int_equal(route_state(&ec, NOW + 1), ROUTE_OPEN);
	assert_int_equal(route_state(&ec, NOW + 10001), ROUTE_CLOSED);
	/* the local half-open probe logic stands under a fleet deadline */
	route_failure(&eb, NOW, 1, 5000, 0);
	assert_int_equal(route_state(&eb, NOW + 5001), ROUTE_HALF_OPEN);
	eb.health.fleet_until_ms = NOW + 8000;
	assert_int_equal(route_state(&eb, NOW + 5001), ROUTE_OPEN);
	assert_int_equal(route_state(&eb, NOW + 8001), ROUTE_HALF_OPEN);
}

static const char provs[] =
	"[{\"id\":\"a\",\"name\":\"A\",\"api\":\"openai\",\"base_url\":\"http://127.0.0.1:1/v1\","
	"\"api_key_env\":null,\"region\":\"US\",\"data_training\":false,\"data_retention_days\":0}]";
static const char models[] =
	"[{\"id\":\"z/m\",\"name\":\"M\",\"author\":\"z\",\"description\":\"\",\"origin\":\"CN\","
	"\"license\":\"MIT\",\"open_weights\":true,\"context_length\":1000,\"created\":\"1\","
	"\"input_modalities\":[\"text\"],\"output_modalities\":[\"text\"],\"tokenizer\":\"Other\","
	"\"supported_parameters\":[]}]";
static const char eps[] =
	"[{\"id\":\"9\",\"model_id\":\"z/m\",\"provider_id\":\"a\",\"upstream_model\":\"u\","
	"\"quantization\":\"fp8\",\"context_length\":1000,\"max_output\":100,\"prompt\":\"1\","
	"\"completion\":\"1\",\"supported_parameters\":null}]";

static cJSON *
endpoint_json(const struct rcat *c, int64_t now)
{
	cJSON *o = rcat_endpoints_json(c, rcat_model(c, "z/m"), now);
	cJSON *e = cJSON_DetachItemFromArray(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "data"), "endpoints"), 0);

	cJSON_Delete(o);
	return e;
}

static void
test_endpoints_json(void **state)
{
	char err[200];
	struct rcat *c = rcat_from_row("1", provs, models, eps, NULL, err, sizeof(err));
	struct rcat_endpoint *e;
	struct health_fleet f = { .ttft_ms = 700, .tps = 30, .samples = 9, .routers = 2, .until_ms = NOW + 5000 };
	cJSON *j, *h, *lat;

	(void)state;
	assert_non_null(c);
	e = rcat_endpoint(c, 9);
	assert_non_null(e);
	assert_null(rcat_endpoint(c, 10));
	j = endpoint_json(c, NOW);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "latency_last_30m")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "throughput_last_30m")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "uptime_last_30m")));
	h = cJSON_GetObjectItem(j, "health");
	assert_string_equal(cJSON_GetObjectItem(h, "source")->valuestring, "prior");
	assert_true(cJSON_GetObjectItem(h, "ttft_ms")->valuedouble == ROUTE_PRIOR_TTFT_MS);
	cJSON_Delete(j);

	route_success(e, NOW - 3, 100, 50, 500);
	route_success(e, NOW - 2, 300, 10, 900);
	route_failure(e, NOW - 1, 3, 1000, 0);
	j = endpoint_json(c, NOW);
	lat = cJSON_GetObjectItem(j, "latency_last_30m");
	assert_true(cJSON_GetObjectItem(lat, "p50")->valuedouble == 100);
	assert_true(cJSON_GetObjectItem(lat, "p90")->valuedouble == 300);
	assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "throughput_last_30m"), "p90")->valuedouble == 10);
	assert_true(cJSON_GetObjectItem(j, "uptime_last_30m")->valuedouble > 66.6 &&
		    cJSON_GetObjectItem(j, "uptime_last_30m")->valuedouble < 66.7);
	assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 0);
	h = cJSON_GetObjectItem(j, "health");
	assert_string_equal(cJSON_GetObjectItem(h, "source")->valuestring, "local");
	assert_int_equal(cJSON_GetObjectItem(h, "failures_last_30m")->valueint, 1);
	cJSON_Delete(j);

	health_apply(&e->health, &f, NOW);		/* another router: slow, and open */
	j = endpoint_json(c, NOW);
	assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, -1);
	h = cJSON_GetObjectItem(j, "health");
	assert_string_equal(cJSON_GetObjectItem(h, "source")->valuestring, "fleet");
	assert_true(cJSON_GetObjectItem(h, "ttft_ms")->valuedouble == 700);
	assert_true(cJSON_GetObjectItem(h, "fleet_open_until_ms")->valuedouble == (double)(NOW + 5000));
	cJSON_Delete(j);
	j = endpoint_json(c, NOW + 5001);		/* the deadline passed */
	assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 0);
	cJSON_Delete(j);
	rcat_unref(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percentiles),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_route_feeds_window),
		cmocka_unit_test(test_entry_format),
		cmocka_unit_test(test_entry_own),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_fleet_routes),
		cmocka_unit_test(test_endpoints_json),
	};

	return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
