/*
 * Catalog parsing: a valid file normalised with its defaults, every class of
 * error reported with its JSON path, ${VAR} expansion, and the demo catalog.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catimport.h"

#define PROV "{\"id\":\"p1\",\"name\":\"P1\",\"api\":\"openai\",\"base_url\":\"http://127.0.0.1:1/v1\"}"
#define EP(p) "{\"provider\":\"" p "\",\"upstream_model\":\"u\",\"max_output\":10," \
	      "\"price\":{\"prompt_uusd_per_mtok\":800000,\"completion_uusd_per_mtok\":2560000}}"

static const char *
fake_env(const char *name, void *arg)
{
	(void)arg;
	return strcmp(name, "MOCK_PORT") == 0 ? "8701" : NULL;
}

static cJSON *
parse(const char *json, char *err, size_t len)
{
	return catimport_parse(json, strlen(json), fake_env, NULL, err, len);
}

static void
test_valid_with_defaults(void **state)
{
	char err[300];
	cJSON *c = parse("{\"providers\":[" PROV "],\"models\":[{\"id\":\"z-ai/glm-5\",\"name\":\"GLM\","
			 "\"context_length\":1000,\"endpoints\":[" EP("p1") "]}]}", err, sizeof(err));
	cJSON *p, *m, *e;

	(void)state;
	if (!c)
		fail_msg("%s", err);
	p = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "providers"), 0);
	m = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "models"), 0);
	e = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "endpoints"), 0);
	assert_string_equal(cJSON_GetObjectItem(p, "region")->valuestring, "US");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(p, "training")));
	assert_int_equal(cJSON_GetObjectItem(p, "retention_days")->valueint, 0);
	assert_string_equal(cJSON_GetObjectItem(p, "status")->valuestring, "active");
	assert_string_equal(cJSON_GetObjectItem(m, "author")->valuestring, "z-ai");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(m, "open_weights")));
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "input_modalities"), 0)->valuestring, "text");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "supported_parameters")), 0);
	assert_string_equal(cJSON_GetObjectItem(e, "model_id")->valuestring, "z-ai/glm-5");
	assert_string_equal(cJSON_GetObjectItem(e, "quantization")->valuestring, "unknown");
	assert_int_equal(cJSON_GetObjectItem(e, "context_length")->valueint, 1000);
	assert_true(cJSON_GetObjectItem(e, "prompt")->valuedouble == 800000);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "cost_prompt")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "supported_parameters")));
	cJSON_Delete(c);
}

static void
test_errors_name_the_path(void **state)
{
	static const struct { const char *json, *says; } bad[] = {
		{ "[]", "catalog: must be an object" },
		{ "{\"providers\":[],\"models\":{}}", "models: must be an array" },
		{ "{", "not valid JSON" },
		{ "{\"providers\":[{\"id\":\"p1\"}],\"models\":[]}", "providers[0].name: is required" },
		{ "{\"providers\":[{\"id\":\"P1\",\"name\":\"x\",\"api\":\"openai\",\"base_url\":\"http://x\"}],\"models\":[]}",
		  "providers[0].id: must be a lower-case slug" },
		{ "{\"providers\":[{\"id\":\"p1\",\"name\":\"x\",\"api\":\"grpc\",\"base_url\":\"http://x\"}],\"models\":[]}",
		  "providers[0].api" },
		{ "{\"providers\":[{\"id\":\"p1\",\"name\":\"x\",\"api\":\"openai\",\"base_url\":\"ftp://x\"}],\"models\":[]}",
		  "providers[0].base_url" },
		{ "{\"providers\":[" PROV "," PROV "],\"models\":[]}", "providers[1].id: duplicate provider id" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"noslash\",\"name\":\"x\",\"context_length\":1}]}",
		  "models[0].id: must be \"author/slug\"" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\"}]}", "models[0].context_length: is required" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1},"
		  "{\"id\":\"a/b\",\"name\":\"y\",\"context_length\":1}]}", "models[1].id: duplicate model id" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1,"
		  "\"endpoints\":[" EP("nobody") "]}]}", "models[0].endpoints[0].provider: unknown provider" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1,"
		  "\"endpoints\":[" EP("p1") "," EP("p1") "]}]}", "models[0].endpoints[1].provider: provider 'p1' appears twice" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1,\"endpoints\":["
		  "{\"provider\":\"p1\",\"upstream_model\":\"u\",\"max_output\":1,\"price\":{\"prompt_uusd_per_mtok\":0.5,"
		  "\"completion_uusd_per_mtok\":1}}]}]}",
		  "models[0].endpoints[0].price.prompt_uusd_per_mtok: must be a non-negative integer" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1,\"endpoints\":["
		  "{\"provider\":\"p1\",\"upstream_model\":\"u\",\"max_output\":1,\"price\":{\"prompt_uusd_per_mtok\":-1,"
		  "\"completion_uusd_per_mtok\":1}}]}]}", "price.prompt_uusd_per_mtok: must be a non-negative integer" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1,\"endpoints\":["
		  "{\"provider\":\"p1\",\"upstream_model\":\"u\",\"max_output\":1,\"price\":{\"prompt_uusd_per_mtok\":\"5\","
		  "\"completion_uusd_per_mtok\":1}}]}]}", "price.prompt_uusd_per_mtok" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1,\"endpoints\":["
		  "{\"provider\":\"p1\",\"upstream_model\":\"u\",\"price\":{\"prompt_uusd_per_mtok\":1,"
		  "\"completion_uusd_per_mtok\":1}}]}]}", "models[0].endpoints[0].max_output: is required" },
		{ "{\"providers\":[{\"id\":\"p1\",\"name\":\"x\",\"api\":\"openai\",\"base_url\":\"http://${NOPE}\"}],\"models\":[]}",
		  "environment variable NOPE is not set" },
		{ "{\"providers\":[" PROV "],\"models\":[{\"id\":\"a/b\",\"name\":\"x\",\"context_length\":1,\"status\":\"gone\"}]}",
		  "models[0].status" },
	};
	char err[300];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *c;

		err[0] = '\0';
		c = parse(bad[i].json, err, sizeof(err));
		if (c) {
			cJSON_Delete(c);
			fail_msg("case %zu accepted", i);
		}
		if (!strstr(err, bad[i].says))
			fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].says);
	}
}

static void
test_env_expansion(void **state)
{
	char err[300];
	cJSON *c = parse("{\"providers\":[{\"id\":\"p1\",\"name\":\"x\",\"api\":\"openai\","
			 "\"base_url\":\"http://127.0.0.1:${MOCK_PORT}/v1\"}],\"models\":[]}", err, sizeof(err));

	(void)state;
	assert_non_null(c);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "providers"), 0),
						"base_url")->valuestring, "http://127.0.0.1:8701/v1");
	cJSON_Delete(c);
}

static void
test_size_bound(void **state)
{
	char err[300];

	(void)state;
	assert_null(catimport_parse("{}", CATIMPORT_MAX_BYTES + 1, fake_env, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "larger than"));
}

static void
test_demo_catalog(void **state)
{
	FILE *f = fopen("deploy/catalog.demo.json", "rb");
	char err[300], *buf;
	long n;
	cJSON *c;

	(void)state;
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	c = catimport_parse(buf, (size_t)n, NULL, NULL, err, sizeof(err));
	if (!c)
		fail_msg("%s", err);
	assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(c, "models")) >= 10);
	assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(c, "providers")) >= 4);
	cJSON_Delete(c);
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_with_defaults),
		cmocka_unit_test(test_errors_name_the_path),
		cmocka_unit_test(test_env_expansion),
		cmocka_unit_test(test_size_bound),
		cmocka_unit_test(test_demo_catalog),
	};

	return cmocka_run_group_tests_name("catimport", tests, NULL, NULL);
}
