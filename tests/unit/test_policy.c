/*
 * Operator policy (lib/policy) as the router applies it (route_select,
 * route_policy_allows), and the default inverse-square price balancing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"
#include "route.h"

static struct rcat_provider us = { .id = "usco", .name = "US Co", .region = "US", .training = 0, .retention_days = 0 };
static struct rcat_provider eu = { .id = "euco", .name = "EU Co", .region = "EU", .training = 0, .retention_days = 30 };
static struct rcat_provider cn = { .id = "cnco", .name = "CN Co", .region = "CN", .training = 1, .retention_days = 0 };
static struct rcat_model open_cn = { .id = "a/open", .origin = "CN", .license = "MIT", .open_weights = 1 };
static struct rcat_model closed_us = { .id = "b/closed", .origin = "US", .license = "Proprietary" };

static struct rcat_endpoint
ep(struct rcat_provider *p, struct rcat_model *m, int64_t prompt, int64_t completion)
{
	struct rcat_endpoint e = { .prov = p, .model = m, .quantization = "fp8", .context_length = 100000,
				   .max_output = 8000, .price_prompt = prompt, .price_completion = completion };

	return e;
}

static void
test_validate(void **state)
{
	static const struct { const char *json; const char *err; } cases[] = {
		{ "{}", NULL },
		{ "{\"regions\":[\"EU\"],\"open_weights_only\":true,\"data_policy\":\"zdr\"}", NULL },
		{ "{\"max_prompt_uusd_per_mtok\":2000000}", NULL },
		{ "[]", "must be a JSON object" },
		{ "{\"regions\":\"EU\"}", "policy.regions" },
		{ "{\"regions\":[1]}", "policy.regions" },
		{ "{\"open_weights_only\":1}", "policy.open_weights_only" },
		{ "{\"data_policy\":\"some\"}", "policy.data_policy" },
		{ "{\"max_prompt_uusd_per_mtok\":-1}", "policy.max_prompt_uusd_per_mtok" },
		{ "{\"max_completion_uusd_per_mtok\":1.5}", "policy.max_completion_uusd_per_mtok" },
		{ "{\"colour\":\"blue\"}", "policy.colour is not a policy field" },
	};
	char msg[200];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *o = cJSON_Parse(cases[i].json);
		int rc = policy_validate(o, msg, sizeof(msg));

		if (!cases[i].err) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, -1);
			assert_non_null(strstr(msg, cases[i].err));
		}
		cJSON_Delete(o);
	}
}

/* A table: policy (account, key) x endpoint -> allowed, and the reason. */
static void
test_allows_table(void **state)
{
	struct rcat_endpoint e_us = ep(&us, &closed_us, 3000000, 15000000);
	struct rcat_endpoint e_eu = ep(&eu, &open_cn, 500000, 2000000);
	struct rcat_endpoint e_cn = ep(&cn, &open_cn, 200000, 800000);
	struct rcat_endpoint *all[] = { &e_us, &e_eu, &e_cn };
	static const struct {
		const char *account, *key;
		int want[3];			/* us, eu, cn */
		const char *why;		/* a part of the reason for the first refused */
	} cases[] = {
		{ NULL, NULL, { 1, 1, 1 }, NULL },
		{ "{}", "", { 1, 1, 1 }, NULL },
		{ "{\"regions\":[\"eu\",\"US\"]}", NULL, { 1, 1, 0 }, "regions eu, US only (this provider is in CN)" },
		{ "{\"providers_allow\":[\"usco\",\"cnco\"]}", NULL, { 1, 0, 1 }, "allows providers usco, cnco only" },
		{ "{\"providers_deny\":[\"cnco\"]}", NULL, { 1, 1, 0 }, "denies provider cnco" },
		{ "{\"origins\":[\"US\"]}", NULL, { 1, 0, 0 }, "model origins US only (this model's is CN)" },
		{ "{\"licenses\":[\"MIT\"]}", NULL, { 0, 1, 1 }, "licenses MIT only" },
		{ "{\"open_weights_only\":true}", NULL, { 0, 1, 1 }, "open-weight models only" },
		{ "{\"max_prompt_uusd_per_mtok\":1000000}", NULL, { 0, 1, 1 }, "caps prompt prices at 1000000" },
		{ "{\"max_completion_uusd_per_mtok\":1000000}", NULL, { 0, 0, 1 }, "caps completion prices" },
		{ "{\"data_policy\":\"no_training\"}", NULL, { 1, 1, 0 }, "do not train on prompts" },
		{ "{\"data_policy\":\"zdr\"}", NULL, { 1, 0, 0 }, "neither train on nor retain" },
		/* the key narrows the account; it cannot widen it */
		{ "{\"regions\":[\"US\",\"EU\"]}", "{\"regions\":[\"EU\",\"CN\"]}", { 0, 1, 0 }, "key's policy allows provider regions EU, CN only" },
		{ "{\"providers_deny\":[\"euco\"]}", "{\"providers_allow\":[\"euco\",\"usco\"]}", { 1, 0, 0 }, NULL },
		{ NULL, "{\"open_weights_only\":true}", { 0, 1, 1 }, "the key's policy" },
		/* a broken layer denies everything */
		{ "not json", NULL, { 0, 0, 0 }, "account's policy is invalid" },
		{ NULL, "{\"regions\":5}", { 0, 0, 0 }, "key's policy is invalid (policy.regions" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = policy_new(cases[i].account, cases[i].key);
		char why[200] = "";
		int first_refused = -1;

		if (!cases[i].account && !cases[i].key)
			assert_null(p);
		for (int j = 0; j < 3; j++) {
			char w[200] = "";
			int ok = route_policy_allows(p, all[j], w, sizeof(w));

			assert_int_equal(ok, cases[i].want[j]);
			if (!ok && first_refused < 0) {
				first_refused = j;
				memcpy(why, w, sizeof(why));
			}
		}
		if (cases[i].why)
			assert_non_null(strstr(why, cases[i].why));
		policy_unref(p);
	}
}

/* A request's `provider` preferences cannot bring back what policy took:
 * not with `order`, not with `only`, not with allow_fallbacks. */
static void
test_request_cannot_widen(void **state)
{
	struct rcat_endpoint e_cn = ep(&cn, &open_cn, 200000, 800000);
	struct rcat_endpoint e_eu = ep(&eu, &open_cn, 500000, 2000000);
	struct rcat_endpoint *in[] = { &e_cn, &e_eu }, *out[4];
	struct policy *p = policy_new("{\"providers_deny\":[\"cnco\"]}", NULL);
	struct route_prefs rp;
	cJSON *prov = cJSON_Parse("{\"order\":[\"cnco\"],\"only\":[\"cnco\",\"euco\"]}");
	char msg[100];

	(void)state;
	assert_int_equal(route_parse(prov, &rp, msg, sizeof(msg)), 0);
	rp.policy = p;
	assert_int_equal(route_select(&rp, in, 2, out, 4), 1);
	assert_ptr_equal(out[0], &e_eu);
	cJSON_Delete(prov);
	prov = cJSON_Parse("{\"order\":[\"cnco\"],\"allow_fallbacks\":false}");
	assert_int_equal(route_parse(prov, &rp, msg, sizeof(msg)), 0);
	rp.policy = p;
	assert_int_equal(route_select(&rp, in, 2, out, 4), 0);
	cJSON_Delete(prov);
	policy_unref(p);
}

/* Inverse-square balancing: deterministic in u, frequencies match weights. */
static void
test_balance(void **state)
{
	struct rcat_endpoint a = ep(&us, &open_cn, 100000, 200000);	/* 300000: weight 9 */
	struct rcat_endpoint b = ep(&eu, &open_cn, 300000, 600000);	/* 900000: weight 1 */
	struct rcat_endpoint c = ep(&cn, &open_cn, 200000, 400000);	/* 600000: weight 2.25 */
	int64_t now = 1000000000;
	int count[3] = { 0 };
	const int n = 100000;

	(void)state;
	for (int i = 0; i < n; i++) {
		struct rcat_endpoint *eps[] = { &a, &c, &b };
		int k = route_balance(eps, 3, (double)i / n, now);

		assert_true(k >= 0);
		count[eps[0] == &a ? 0 : eps[0] == &c ? 1 : 2]++;
		/* the others keep their order behind the pick */
		if (eps[0] == &b)
			assert_true(eps[1] == &a && eps[2] == &c);
	}
	/* 9 : 2.25 : 1 of 12.25, exactly (u is evenly spread) */
	assert_true(abs(count[0] - n * 9 * 4 / 49) <= 2);
	assert_true(abs(count[1] - n * 9 / 49) <= 2);
	assert_true(abs(count[2] - n * 4 / 49) <= 2);

	/* an endpoint that failed recently, or whose breaker is open, is left out */
	a.health.failures = 1;
	a.health.last_fail_ms = now - 1000;
	for (int i = 0; i < 100; i++) {
		struct rcat_endpoint *eps[] = { &a, &c, &b };

		route_balance(eps, 3, (double)i / 100, now);
		assert_true(eps[0] != &a);
	}
	a.health.failures = 0;				/* recovered: after a success */
	a.health.last_ok_ms = now - 500;
	{
		struct rcat_endpoint *eps[] = { &c, &b, &a };

		assert_int_equal(route_balance(eps, 3, 0.999, now), 2);
		assert_ptr_equal(eps[0], &a);
	}
	b.health.until_ms = now + 5000;			/* open */
	c.health.until_ms = now + 5000;
	a.health.until_ms = now + 5000;
	{
		struct rcat_endpoint *eps[] = { &c, &b, &a };

		assert_int_equal(route_balance(eps, 3, 0.5, now), -1);
		assert_ptr_equal(eps[0], &c);
	}
	memset(&a.health, 0, sizeof(a.health));
	memset(&b.health, 0, sizeof(b.health));
	memset(&c.health, 0, sizeof(c.health));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_allows_table),
		cmocka_unit_test(test_request_cannot_widen),
		cmocka_unit_test(test_balance),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
