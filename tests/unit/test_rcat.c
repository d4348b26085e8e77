/*
 * Catalog snapshots as the router builds them from PostgreSQL's JSON:
 * price order, provider keys from the environment, model lookup, the
 * pre-rendered /models body (pricing as exact USD-per-token strings), health
 * carried over between snapshots.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "rcat.h"

static const char provs[] =
	"[{\"id\":\"a\",\"name\":\"A\",\"api\":\"openai\",\"base_url\":\"http://127.0.0.1:1/v1/\","
	"\"api_key_env\":\"TEST_RCAT_KEY\",\"region\":\"US\",\"data_training\":false,\"data_retention_days\":0},"
	"{\"id\":\"b\",\"name\":\"B\",\"api\":\"anthropic\",\"base_url\":\"https://b.example/v1\","
	"\"api_key_env\":null,\"region\":\"EU\",\"data_training\":true,\"data_retention_days\":30}]";
static const char models[] =
	"[{\"id\":\"z/m2\",\"name\":\"M2\",\"author\":\"z\",\"description\":\"d\",\"origin\":\"CN\","
	"\"license\":\"MIT\",\"open_weights\":true,\"context_length\":1000,\"created\":\"1700000000\","
	"\"input_modalities\":[\"text\",\"image\"],\"output_modalities\":[\"text\"],\"tokenizer\":\"Other\","
	"\"supported_parameters\":[\"tools\"]},"
	"{\"id\":\"a/m1\",\"name\":\"M1\",\"author\":\"a\",\"description\":\"\",\"origin\":null,"
	"\"license\":null,\"open_weights\":false,\"context_length\":500,\"created\":\"1\","
	"\"input_modalities\":[\"text\"],\"output_modalities\":[\"text\"],\"tokenizer\":\"GPT\","
	"\"supported_parameters\":[]}]";
static const char eps[] =
	"[{\"id\":\"1\",\"model_id\":\"z/m2\",\"provider_id\":\"b\",\"upstream_model\":\"up-b\","
	"\"quantization\":\"bf16\",\"context_length\":1000,\"max_output\":100,\"prompt\":\"3000000\","
	"\"completion\":\"6000000\",\"supported_parameters\":null},"
	"{\"id\":\"2\",\"model_id\":\"z/m2\",\"provider_id\":\"a\",\"upstream_model\":\"up-a\","
	"\"quantization\":\"fp8\",\"context_length\":800,\"max_output\":50,\"prompt\":\"800000\","
	"\"completion\":\"2560000\",\"supported_parameters\":[\"tools\"]},"
	"{\"id\":\"3\",\"model_id\":\"nope/x\",\"provider_id\":\"a\",\"upstream_model\":\"u\","
	"\"quantization\":\"fp8\",\"context_length\":1,\"max_output\":1,\"prompt\":\"1\",\"completion\":\"1\"}]";

static struct rcat *
load(const struct rcat *prev)
{
	char err[200];
	struct rcat *c = rcat_from_row("7", provs, models, eps, prev, err, sizeof(err));

	if (!c)
		fail_msg("%s", err);
	return c;
}

static void
test_build(void **state)
{
	struct rcat *c;
	struct rcat_model *m;

	(void)state;
	setenv("TEST_RCAT_KEY", "secret-a", 1);
	c = load(NULL);
	assert_int_equal(c->version, 7);
	assert_int_equal(c->nprovs, 2);
	assert_int_equal(c->nmodels, 2);
	assert_int_equal(c->neps, 2);	/* the endpoint of an unknown model is dropped */
	m = rcat_model(c, "z/m2");
	assert_non_null(m);
	assert_null(rcat_model(c, "z/none"));
	assert_int_equal(m->neps, 2);
	assert_string_equal(m->eps[0]->prov->id, "a");	/* cheapest first */
	assert_string_equal(m->eps[0]->url, "http://127.0.0.1:1/v1/chat/completions");
	assert_string_equal(m->eps[1]->url, "https://b.example/v1/messages");
	assert_string_equal(m->eps[0]->prov->auth_header, "Authorization: Bearer secret-a");
	assert_null(m->eps[1]->prov->auth_header);
	assert_int_equal(m->eps[0]->price_prompt, 800000);
	assert_int_equal(rcat_model(c, "a/m1")->neps, 0);
	rcat_unref(c);
}

static void
test_models_json(void **state)
{
	struct rcat *c;
	cJSON *o, *data, *m, *pricing;

	(void)state;
	c = load(NULL);
	o = cJSON_Parse(c->models_json);
	assert_non_null(o);
	data = cJSON_GetObjectItem(o, "data");
	assert_int_equal(cJSON_GetArraySize(data), 1);	/* models without endpoints are hidden */
	m = cJSON_GetArrayItem(data, 0);
	assert_string_equal(cJSON_GetObjectItem(m, "id")->valuestring, "z/m2");
	pricing = cJSON_GetObjectItem(m, "pricing");
	assert_string_equal(cJSON_GetObjectItem(pricing, "prompt")->valuestring, "0.0000008");
	assert_string_equal(cJSON_GetObjectItem(pricing, "completion")->valuestring, "0.00000256");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "architecture"), "modality")->valuestring,
			    "text+image->text");
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "top_provider"), "max_completion_tokens")->valueint, 50);
	cJSON_Delete(o);
	o = rcat_endpoints_json(c, rcat_model(c, "z/m2"), 0);
	data = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "data"), "endpoints");
	assert_int_equal(cJSON_GetArraySize(data), 2);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 1), "quantization")->valuestring, "bf16");
	cJSON_Delete(o);
	rcat_unref(c);
}

static void
test_health_carries_over(void **state)
{
	struct rcat *a, *b;

	(void)state;
	a = load(NULL);
	rcat_model(a, "z/m2")->eps[1]->health.failures = 3;
	rcat_model(a, "z/m2")->eps[1]->health.until_ms = 42;
	b = load(a);
	assert_int_equal(rcat_model(b, "z/m2")->eps[1]->health.failures, 3);
	assert_int_equal(rcat_model(b, "z/m2")->eps[1]->health.until_ms, 42);
	assert_int_equal(rcat_model(b, "z/m2")->eps[0]->health.failures, 0);
	rcat_unref(a);
	rcat_unref(b);
}

static void
test_bad_rows(void **state)
{
	char err[200];

	(void)state;
	assert_null(rcat_from_row("1", "not json", models, eps, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "catalog"));
	assert_null(rcat_from_row("1", provs, models,
		"[{\"id\":\"1\",\"model_id\":\"z/m2\",\"provider_id\":\"a\",\"upstream_model\":\"u\","
		"\"quantization\":\"q\",\"prompt\":\"-5\",\"completion\":\"1\"}]", NULL, err, sizeof(err)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_models_json),
		cmocka_unit_test(test_health_carries_over),
		cmocka_unit_test(test_bad_rows),
	};

	return cmocka_run_group_tests_name("rcat", tests, NULL, NULL);
}
