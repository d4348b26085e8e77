/*
 * bench_route: what choosing a provider costs, against what the router
 * does with every request anyway (parsing its JSON body), in the same run.
 * Prints ns per operation and the ratio. A benchmark, not a test: nothing
 * here asserts on time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "policy.h"
#include "route.h"

#define NEPS 8

static const char body_json[] =
	"{\"model\":\"z-ai/glm-5\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
	"{\"role\":\"user\",\"content\":\"Summarise the plot of Hamlet in two sentences.\"}],"
	"\"temperature\":0.7,\"max_tokens\":256,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
	"\"provider\":{\"ignore\":[\"p7\"],\"data_collection\":\"deny\",\"max_price\":{\"prompt\":5}}}";

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile long sink;

/* The baseline: parse and free the request body. */
static double
bench_parse(int n)
{
	double t0 = now_ns();

	for (int i = 0; i < n; i++) {
		cJSON *o = cJSON_Parse(body_json);

		sink += o != NULL;
		cJSON_Delete(o);
	}
	return (now_ns() - t0) / n;
}

/* The choice: preferences + request fit + policy + selection + balancing
 * over NEPS endpoints (the body is parsed once, outside the loop). */
static double
bench_select(int n, struct rcat_endpoint **eps, const struct policy *pol)
{
	cJSON *body = cJSON_Parse(body_json);
	const cJSON *prov = cJSON_GetObjectItemCaseSensitive(body, "provider");
	struct rcat_endpoint *out[NEPS];
	struct route_prefs rp;
	char msg[128];
	double t0 = now_ns();

	for (int i = 0; i < n; i++) {
		int k;

		route_parse(prov, &rp, msg, sizeof(msg));
		rp.policy = pol;
		route_from_request(&rp, body, sizeof(body_json));
		k = route_select(&rp, eps, NEPS, out, NEPS);
		route_balance(out, k, (double)(i % 1000) / 1000.0, 1000000);
		sink += k;
	}
	t0 = (now_ns() - t0) / n;
	cJSON_Delete(body);
	return t0;
}

int
main(int argc, char **argv)
{
	static struct rcat_provider provs[NEPS];
	static struct rcat_endpoint eps[NEPS];
	struct rcat_endpoint *list[NEPS];
	struct rcat_model m = { .id = "z-ai/glm-5", .origin = "CN", .license = "MIT", .open_weights = 1 };
	static const char *ids[NEPS] = { "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7" };
	static const char *regions[] = { "US", "EU", "SG" };
	struct policy *pol = policy_new("{\"regions\":[\"US\",\"EU\",\"SG\"],\"providers_deny\":[\"p5\"]}",
					"{\"data_policy\":\"no_training\"}");
	int n = argc > 1 ? atoi(argv[1]) : 200000;
	double parse, sel;

	m.supported = cJSON_Parse("[\"temperature\",\"max_tokens\",\"stream\",\"tools\"]");
	for (int i = 0; i < NEPS; i++) {
		provs[i] = (struct rcat_provider){ .id = (char *)ids[i], .name = (char *)ids[i],
						   .region = (char *)regions[i % 3], .training = i == 3 };
		eps[i] = (struct rcat_endpoint){ .id = i + 1, .prov = &provs[i], .model = &m, .quantization = "fp8",
						 .context_length = 131072, .max_output = 8192,
						 .price_prompt = 200000 * (i + 1), .price_completion = 800000 * (i + 1) };
		list[i] = &eps[i];
	}
	bench_parse(n / 10);			/* warm up */
	parse = bench_parse(n);
	sel = bench_select(n, list, pol);
	printf("%-44s %10.0f ns\n", "baseline: parse the request body (cJSON)", parse);
	printf("%-44s %10.0f ns   (%.2fx the parse)\n", "choose a provider (8 endpoints, policy on)", sel, sel / parse);
	policy_unref(pol);
	cJSON_Delete(m.supported);
	return sink == 0;
}
