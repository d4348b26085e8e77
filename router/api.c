/*
 * api: the router's read endpoints in OpenRouter's shapes: the model list
 * (pre-rendered per catalog snapshot), a model's endpoints, the calling key,
 * and Prometheus metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "money.h"
#include "router.h"

const char *
api_bearer(struct httpd_req *req, size_t *len)
{
	const char *h = httpd_req_header(req, "Authorization");
	const char *end;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	end = h + strlen(h);
	while (end > h && end[-1] == ' ')
		end--;
	if (end == h)
		return NULL;
	*len = (size_t)(end - h);
	return h;
}

void
api_models(struct router *rt, struct httpd_req *req)
{
	if (!rt->cat) {
		httpd_reply_error(req, 503, "the catalog is not loaded yet");
		return;
	}
	httpd_reply(req, 200, "application/json", rt->cat->models_json, rt->cat->models_json_len);
}

void
api_model_endpoints(struct router *rt, struct httpd_req *req, const char *model_id)
{
	struct rcat_model *m;
	cJSON *o;

	if (!rt->cat) {
		httpd_reply_error(req, 503, "the catalog is not loaded yet");
		return;
	}
	if (!(m = rcat_model(rt->cat, model_id)) || m->neps == 0) {
		httpd_reply_error(req, 404, "model '%s' not found", model_id);
		return;
	}
	o = rcat_endpoints_json(rt->cat, m, router_now_ms());
	httpd_reply_json(req, 200, o);
	cJSON_Delete(o);
}

/* ---- GET /key ---- */

struct key_lookup {
	struct httpd_req *req;
	int aborted;
};

static void
usd_number(cJSON *o, const char *name, int64_t nusd)
{
	char buf[64];

	money_format_usd(nusd, buf, sizeof(buf));
	cJSON_AddItemToObject(o, name, cJSON_CreateRaw(buf));
}

static void
key_abort_cb(struct httpd_req *req, void *arg)
{
	(void)req;
	((struct key_lookup *)arg)->aborted = 1;
}

static void
key_cb(const struct auth_key *k, const char *err, void *arg)
{
	struct key_lookup *l = arg;
	struct httpd_req *req = l->req;
	cJSON *root, *d, *rl;
	char label[64];

	free(l);
	if (err) {
		httpd_reply_error(req, 503, "%s", err);
		return;
	}
	if (!k || !k->usable) {
		httpd_reply_error(req, 401, k ? "this API key is disabled or revoked" : "invalid API key");
		return;
	}
	root = cJSON_CreateObject();
	d = cJSON_AddObjectToObject(root, "data");
	snprintf(label, sizeof(label), "%s...", k->prefix);
	cJSON_AddStringToObject(d, "label", label);
	cJSON_AddStringToObject(d, "name", k->name);
	usd_number(d, "usage", k->usage_nusd);
	if (k->limit_nusd >= 0) {
		usd_number(d, "limit", k->limit_nusd);
		usd_number(d, "limit_remaining",
			   k->limit_nusd > k->usage_nusd ? k->limit_nusd - k->usage_nusd : 0);
	} else {
		cJSON_AddNullToObject(d, "limit");
		cJSON_AddNullToObject(d, "limit_remaining");
	}
	cJSON_AddFalseToObject(d, "is_free_tier");
	cJSON_AddBoolToObject(d, "is_provisioning_key", k->operator_key);
	rl = cJSON_AddObjectToObject(d, "rate_limit");
	cJSON_AddNumberToObject(rl, "requests", -1);
	cJSON_AddStringToObject(rl, "interval", "10s");
	httpd_reply_json(req, 200, root);
	cJSON_Delete(root);
}

void
api_key(struct router *rt, struct httpd_req *req)
{
	struct key_lookup *l;
	const char *key;
	size_t len;

	if (!(key = api_bearer(req, &len))) {
		httpd_reply_error(req, 401, "missing API key: send Authorization: Bearer <key>");
		return;
	}
	if (!(l = calloc(1, sizeof(*l)))) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	l->req = req;
	httpd_req_set_abort_cb(req, key_abort_cb, l);
	if (auth_lookup(rt->auth, key, len, 1, key_cb, l) < 0) {
		free(l);
		httpd_reply_error(req, 503, "authentication backend busy");
	}
}

/* ---- GET /metrics ---- */

void
api_metrics(struct router *rt, struct httpd_req *req)
{
	struct evbuffer *b = evbuffer_new();
	struct upstream_stats us;
	size_t len;

	if (!b) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
#define X(name, help) \
	evbuffer_add_printf(b, "# HELP agora_router_" #name " " help "\n# TYPE agora_router_" #name \
			    " counter\nagora_router_" #name " %lld\n", rt->st.name);
	ROUTER_STATS(X)
#undef X
	upstream_pool_stats(rt->up, &us);
	evbuffer_add_printf(b, "# TYPE agora_router_client_connections gauge\n"
			    "agora_router_client_connections %d\n", httpd_connections(rt->httpd));
	evbuffer_add_printf(b, "# TYPE agora_router_inflight gauge\nagora_router_inflight %d\n", rt->inflight);
	evbuffer_add_printf(b, "# TYPE agora_router_upstream_connections gauge\n"
			    "agora_router_upstream_connections %lld\n", us.open);
	evbuffer_add_printf(b, "# TYPE agora_router_upstream_idle gauge\nagora_router_upstream_idle %lld\n", us.idle);
	evbuffer_add_printf(b, "# TYPE agora_router_upstream_connects counter\n"
			    "agora_router_upstream_connects %lld\n", us.connects);
	evbuffer_add_printf(b, "# TYPE agora_router_upstream_reuses counter\n"
			    "agora_router_upstream_reuses %lld\n", us.reuses);
	evbuffer_add_printf(b, "# TYPE agora_router_catalog_version gauge\nagora_router_catalog_version %lld\n",
			    rt->cat ? (long long)rt->cat->version : -1LL);
	{
		struct meter_stats ms;

		meter_stats(rt->meter, &ms);
		evbuffer_add_printf(b, "# TYPE agora_router_usage_events counter\nagora_router_usage_events %lld\n"
				    "# TYPE agora_router_usage_spooled counter\nagora_router_usage_spooled %lld\n"
				    "# TYPE agora_router_usage_replayed counter\nagora_router_usage_replayed %lld\n"
				    "# TYPE agora_router_spool_bytes gauge\nagora_router_spool_bytes %lld\n"
				    "# TYPE agora_router_redis_up gauge\nagora_router_redis_up %d\n",
				    ms.emitted, ms.spooled, ms.replayed, ms.spool_bytes, rds_is_connected(rt->redis));
	}
	len = evbuffer_get_length(b);
	httpd_reply(req, 200, "text/plain; version=0.0.4", evbuffer_pullup(b, (ev_ssize_t)len), len);
	evbuffer_free(b);
}
