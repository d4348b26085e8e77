/*
 * agora-analytics: the read side. In this stage it serves /health, a public
 * catalog overview computed live from PostgreSQL (/api/v1/analytics/overview)
 * and a landing page; rankings, spend, provider health and the dashboards
 * come with the analytics issue. Queries run through pgc: the loop never
 * waits on PostgreSQL.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "httpd.h"
#include "log.h"
#include "pgc.h"

static struct event_base *base;
static struct pgc *pg;
static struct httpd *httpd;

static const char overview_sql[] =
	"SELECT (SELECT count(*) FROM providers WHERE status = 'active')::text, "
	"(SELECT count(*) FROM models WHERE status = 'active')::text, "
	"(SELECT count(*) FROM endpoints WHERE status = 'active')::text, "
	"(SELECT count(*) FROM accounts)::text, "
	"(SELECT version FROM catalog_version WHERE id = 1)::text";

static const char index_html[] =
	"<!doctype html><html><head><meta charset=utf-8><title>Agora analytics</title>"
	"<style>body{font:15px system-ui,sans-serif;margin:2em;max-width:50em}"
	"td{padding:.2em 1em}</style></head><body><h1>Agora analytics</h1>"
	"<p>Catalog overview, live from PostgreSQL. Market share, spend, provider health and "
	"reconciliation dashboards are served here as billing data arrives.</p>"
	"<table id=t></table><script>"
	"fetch('/api/v1/analytics/overview').then(r=>r.json()).then(d=>{"
	"const t=document.getElementById('t');for(const [k,v] of Object.entries(d.data)){"
	"const r=t.insertRow();r.insertCell().textContent=k;r.insertCell().textContent=v;}});"
	"</script></body></html>";

static void
overview_cb(PGresult *res, const char *err, void *arg)
{
	struct httpd_req *req = arg;
	static const char *const names[] = { "providers", "models", "endpoints", "accounts",
					     "catalog_version" };
	cJSON *root, *d;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		httpd_reply_error(req, 503, "database unavailable: %s",
				  res ? PQresultErrorMessage(res) : err);
		return;
	}
	root = cJSON_CreateObject();
	d = cJSON_AddObjectToObject(root, "data");
	for (int i = 0; i < 5; i++)
		cJSON_AddNumberToObject(d, names[i], strtod(PQgetvalue(res, 0, i), NULL));
	httpd_reply_json(req, 200, root);
	cJSON_Delete(root);
}

static void
handle(struct httpd_req *req, void *arg)
{
	const char *path = httpd_req_path(req);

	(void)arg;
	if (strcmp(httpd_req_method(req), "GET") != 0) {
		httpd_reply_error(req, 405, "method not allowed");
	} else if (strcmp(path, "/health") == 0) {
		if (pgc_is_connected(pg))
			httpd_reply(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
		else
			httpd_reply_error(req, 503, "database not connected");
	} else if (strcmp(path, "/api/v1/analytics/overview") == 0) {
		if (pgc_query(pg, overview_sql, 0, NULL, overview_cb, req) < 0)
			httpd_reply_error(req, 503, "too many queries in flight");
	} else if (strcmp(path, "/") == 0) {
		httpd_reply(req, 200, "text/html; charset=utf-8", index_html, sizeof(index_html) - 1);
	} else {
		httpd_reply_error(req, 404, "no such page: %s", path);
	}
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	log_info("signal %d: stopping", (int)sig);
	event_base_loopexit(base, NULL);
}

int
main(int argc, char **argv)
{
	const char *path = getenv("AGORA_CONF");
	struct httpd_limits hl = { 16384, 1 << 20, 64, 1000, 10000, 60000, 30000 };
	struct event *sigterm, *sigint;
	struct agora_conf conf;
	char err[512];
	int lvl, rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else {
			fprintf(stderr, "usage: agora-analytics [-c CONFIG]\n");
			return 2;
		}
	}
	if (conf_load(&conf, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "agora-analytics: %s\n", err);
		return 1;
	}
	lvl = log_level_parse(conf.log_level);
	log_init("agora-analytics", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	signal(SIGPIPE, SIG_IGN);
	if (!(base = event_base_new()) || !(pg = pgc_new(base, conf.pg_dsn, conf.pg_timeout_ms, 256)))
		return 1;
	sigterm = evsignal_new(base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(base, SIGINT, signal_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	if ((httpd = httpd_new(base, conf.analytics_listen, &hl, handle, NULL, err, sizeof(err)))) {
		pgc_connect(pg);
		log_info("listening on %s", conf.analytics_listen);
		event_base_dispatch(base);
		rc = 0;
	} else {
		log_error("%s", err);
	}
	httpd_free(httpd);
	pgc_free(pg);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(base);
	log_info("stopped");
	return rc;
}
