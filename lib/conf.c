/*
 * conf: table-driven configuration (see conf.h). One line per key: name,
 * type, bounds, default and a help text; the README's reference lists the
 * same keys.
 */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum conf_type { CONF_STR, CONF_INT, CONF_I64 };

struct conf_key {
	const char *name;
	enum conf_type type;
	size_t off;
	size_t size;		/* for strings: buffer size */
	int64_t min, max;
	const char *def;
	int secret;
	const char *help;
};

#define O(f) offsetof(struct agora_conf, f)
#define S(n, f, d, h) { n, CONF_STR, O(f), sizeof(((struct agora_conf *)0)->f), 0, 0, d, 0, h }
#define SECRET(n, f, d, h) { n, CONF_STR, O(f), sizeof(((struct agora_conf *)0)->f), 0, 0, d, 1, h }
#define I(n, f, lo, hi, d, h) { n, CONF_INT, O(f), sizeof(int), lo, hi, d, 0, h }
#define L(n, f, lo, hi, d, h) { n, CONF_I64, O(f), sizeof(int64_t), lo, hi, d, 0, h }

static const struct conf_key conf_keys[] = {
	S("listen", listen, "127.0.0.1:8680", "router listen address host:port"),
	S("analytics_listen", analytics_listen, "127.0.0.1:8681", "analytics listen address"),
	S("billing_listen", billing_listen, "127.0.0.1:8682",
	  "billing's /health and /metrics address (empty: none; one per worker on a host)"),
	S("web_dir", web_dir, "", "dashboards' pages and assets (empty: analytics/web of the source tree beside the binary)"),
	S("pg_dsn", pg_dsn, "host=127.0.0.1 port=8632 dbname=agora user=agora",
	  "PostgreSQL conninfo (numeric host: the loop never waits on DNS)"),
	S("pg_listen_dsn", pg_listen_dsn, "", "conninfo of the connections that LISTEN (routers' catalog/keys, analytics' keys): PostgreSQL itself when pg_dsn is a transaction pool (empty: pg_dsn)"),
	S("analytics_pg_dsn", analytics_pg_dsn, "", "conninfo of agora-analytics' read-only queries, e.g. a streaming replica (empty: pg_dsn)"),
	I("retention_months", retention_months, 0, 1200, "0", "months of usage events agoractl partitions retain keeps by default, the current one included (0: give --keep-months)"),
	S("redis_host", redis_host, "127.0.0.1", "Redis address (numeric)"),
	I("redis_port", redis_port, 1, 65535, "8679", "Redis port"),
	S("redis_sentinels", redis_sentinels, "",
	  "Sentinel mode: sentinels ip:port,ip:port,... asked for the master redis_master_name (empty: not used)"),
	S("redis_master_name", redis_master_name, "agora", "the master's name in the sentinels' configuration"),
	S("redis_user", redis_user, "", "Redis ACL user the links AUTH as (empty: the default user)"),
	SECRET("redis_password", redis_password, "",
	       "Redis password: every link to a Redis server (not to a sentinel) sends AUTH first (empty: no AUTH)"),
	S("redis_password_file", redis_password_file, "", "file holding redis_password (first line)"),
	S("redis_sentinel_user", redis_sentinel_user, "",
	  "Sentinel mode: the ACL user the sentinel links AUTH as, with redis_sentinel_password (empty: the default user)"),
	SECRET("redis_sentinel_password", redis_sentinel_password, "",
	       "Sentinel mode: the sentinels' own password (their requirepass), sent with AUTH first (empty: no AUTH)"),
	S("redis_sentinel_password_file", redis_sentinel_password_file, "", "file holding redis_sentinel_password (first line)"),
	S("redis_cluster", redis_cluster, "",
	  "Cluster mode: seed nodes ip:port,... of a Redis Cluster (wins over redis_sentinels; empty: not used)"),
	I("usage_shards", usage_shards, 1, 64, "1",
	  "usage stream shards by account (1: the stream `usage`; more: usage:{tag} keys spread over the slot space); the same in every router and billing worker"),
	I("redis_wait_replicas", redis_wait_replicas, 0, 16, "0",
	  "a usage event counts as delivered once WAIT says this many replicas hold it; until then it is kept (WAIT asked again every second) and sent again if its link to the master is lost (0: off; 1 with Sentinel, so a fail-over loses no event)"),
	SECRET("key_secret", key_secret, "", "HMAC secret for API key hashes"),
	S("key_secret_file", key_secret_file, "", "file holding key_secret (first line)"),
	SECRET("master_key", master_key, "", "64 hex: encrypts provider credentials at rest (AES-256-GCM)"),
	S("master_key_file", master_key_file, "", "file holding master_key (first line)"),
	S("log_level", log_level, "info", "error, warn, info or debug"),
	I("log_flush_ms", log_flush_ms, 0, 10000, "100", "agora-router's access lines (one a request) are gathered and written at least this often (0: each at once)"),
	L("max_body_bytes", max_body_bytes, 1024, 1LL << 30, "4194304", "largest request body (413 above)"),
	L("max_header_bytes", max_header_bytes, 1024, 1 << 20, "32768", "largest request head (431 above)"),
	I("max_headers", max_headers, 8, 1000, "100", "most request headers"),
	I("max_connections", max_connections, 1, 1000000, "20000", "open client connections (503 above)"),
	I("client_header_timeout_ms", client_header_timeout_ms, 100, 3600000, "30000", "time to send a whole request (408)"),
	I("client_idle_timeout_ms", client_idle_timeout_ms, 100, 3600000, "75000", "keep-alive idle time-out"),
	I("client_write_timeout_ms", client_write_timeout_ms, 100, 3600000, "60000", "client not reading answers"),
	L("stream_buffer_bytes", stream_buffer_bytes, 4096, 1LL << 30, "262144", "bytes queued to a slow client before upstream reads pause"),
	L("max_response_bytes", max_response_bytes, 4096, 1LL << 31, "33554432", "largest non-streamed upstream answer (502 above)"),
	I("upstream_connect_timeout_ms", upstream_connect_timeout_ms, 10, 600000, "5000", "upstream TCP+TLS connect"),
	I("upstream_first_byte_timeout_ms", upstream_first_byte_timeout_ms, 10, 3600000, "60000", "request sent to first answer byte"),
	I("upstream_idle_timeout_ms", upstream_idle_timeout_ms, 10, 3600000, "60000", "silence between answer chunks"),
	I("upstream_total_timeout_ms", upstream_total_timeout_ms, 10, 86400000, "600000", "whole upstream answer"),
	I("upstream_pool_idle", upstream_pool_idle, 0, 100000, "64", "idle keep-alive connections kept per upstream"),
	I("upstream_pool_idle_ms", upstream_pool_idle_ms, 100, 3600000, "60000", "idle upstream connection lifetime"),
	S("upstream_ca_file", upstream_ca_file, "", "CA bundle for upstream TLS (empty: system CAs)"),
	S("tls_cert_file", tls_cert_file, "", "router listener's certificate chain, PEM (empty: plain HTTP)"),
	S("tls_key_file", tls_key_file, "", "router listener's private key, PEM"),
	I("max_attempts", max_attempts, 1, 20, "3", "endpoints tried per request before giving up"),
	I("failure_cooldown_ms", failure_cooldown_ms, 0, 3600000, "10000", "how long an endpoint's open breaker keeps it last"),
	I("breaker_failures", breaker_failures, 1, 1000, "3", "consecutive failures that open an endpoint's breaker"),
	I("catalog_poll_ms", catalog_poll_ms, 100, 3600000, "2000", "catalog version check interval"),
	I("key_cache_ttl_ms", key_cache_ttl_ms, 0, 3600000, "5000", "how long a key lookup is trusted"),
	I("pg_timeout_ms", pg_timeout_ms, 100, 600000, "5000", "PostgreSQL connect/query time-out"),
	S("spool_path", spool_path, "usage.spool", "router's local usage spool file while Redis is away"),
	I("key_rpm_default", key_rpm_default, 0, 100000000, "0", "requests per minute per key unless the key says (0: unlimited)"),
	L("key_tpm_default", key_tpm_default, 0, 1LL << 50, "0", "tokens per minute per key unless the key says (0: unlimited)"),
	I("ratelimit_sync_ms", ratelimit_sync_ms, 10, 60000, "200", "how often rate counters are shared through Redis"),
	L("budget_lease_nusd", budget_lease_nusd, 1, 1LL << 50, "500000000", "nano-USD of an account's credits a router leases from Redis at a time"),
	I("budget_lease_idle_ms", budget_lease_idle_ms, 10, 3600000, "3000", "a lease unused this long goes back to Redis"),
	I("health_sync_ms", health_sync_ms, 10, 60000, "1000", "how often endpoint health is shared through Redis"),
	I("billing_batch", billing_batch, 1, 100000, "2000", "usage events per billing transaction"),
	I("billing_claim_idle_ms", billing_claim_idle_ms, 1000, 86400000, "30000", "billing takes over entries another worker left pending this long"),
	I("billing_linger_ms", billing_linger_ms, 0, 1000, "25", "after a batch under half billing_batch, billing waits this long before reading again: fewer, larger transactions (0: read at once)"),
	L("spool_max_bytes", spool_max_bytes, 65536, 1LL << 40, "268435456", "spool bound; completions answer 503 when full"),
	S("metering", metering, "on", "on; off only for benchmarks: usage events are not emitted, nothing is billed"),
	I("metering_flush_ms", metering_flush_ms, 0, 1000, "0", "usage events are held this long at most and sent to Redis together: one write, and one wake-up and AOF write of Redis, for many; a router killed by SIGKILL loses the events of its last milliseconds' answers (0: each sent with its answer)"),
	I("metering_max_inflight", metering_max_inflight, 32, 10000000, "100000",
	  "usage events sent to Redis and not yet answered, at most (at least a stream entry's 32); more wait in the spool, or in a replay's memory until answers come back"),
	I("workers", workers, 1, 64, "1", "router processes sharing the listen port (SO_REUSEPORT), each with its own loop"),
	I("drain_timeout_ms", drain_timeout_ms, 0, 3600000, "10000",
	  "SIGTERM or upgrade: how long requests in flight may still run (then streams are cut, billed as cut)"),
};

#define NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static const struct conf_key *
conf_find(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(conf_keys[i].name, name) == 0)
			return &conf_keys[i];
	return NULL;
}

static int
conf_set(struct agora_conf *c, const struct conf_key *k, const char *v, char *err, size_t errlen)
{
	char *p = (char *)c + k->off, *end;
	long long n;

	if (k->type == CONF_STR) {
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "%s: value too long", k->name);
			return -1;
		}
		strcpy(p, v);
		return 0;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < k->min || n > k->max) {
		snprintf(err, errlen, "%s: '%s' is not an integer in [%lld, %lld]", k->name, v,
			 (long long)k->min, (long long)k->max);
		return -1;
	}
	if (k->type == CONF_INT)
		*(int *)p = (int)n;
	else
		*(int64_t *)p = n;
	return 0;
}

static char *
conf_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
conf_read_file(struct agora_conf *c, const char *path, char *err, size_t errlen)
{
	char line[1024], *k, *v, *eq;
	const struct conf_key *key;
	int lineno = 0, rc = -1;
	FILE *f = fopen(path, "r");

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		k = conf_trim(line);
		if (*k == '#' || *k == '\0')
			continue;
		if (!(eq = strchr(k, '='))) {
			snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
			goto fail;
		}
		*eq = '\0';
		k = conf_trim(k);
		v = conf_trim(eq + 1);
		if (!(key = conf_find(k))) {
			snprintf(err, errlen, "%s:%d: unknown key '%s'", path, lineno, k);
			goto fail;
		}
		if (conf_set(c, key, v, err, errlen) < 0)
			goto fail;
	}
	rc = 0;
fail:
	fclose(f);
	return rc;
}

/* A secret from the first line of its file, unless set already. */
static int
conf_read_secret(char *buf, size_t size, const char *path, const char *name, char *err, size_t errlen)
{
	FILE *f;

	if (buf[0] || !path[0])
		return 0;
	if (!(f = fopen(path, "r"))) {
		snprintf(err, errlen, "%s %s: %s", name, path, strerror(errno));
		return -1;
	}
	if (!fgets(buf, (int)size, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

int
conf_load(struct agora_conf *c, const char *path, char *err, size_t errlen)
{
	char env[128], *v;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++)
		if (conf_set(c, &conf_keys[i], conf_keys[i].def, err, errlen) < 0)
			return -1;
	if (path && conf_read_file(c, path, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < NKEYS; i++) {
		size_t j = 0;

		j = (size_t)snprintf(env, sizeof(env), "AGORA_");
		for (const char *p = conf_keys[i].name; *p && j < sizeof(env) - 1; p++)
			env[j++] = (char)toupper((unsigned char)*p);
		env[j] = '\0';
		if ((v = getenv(env)) && conf_set(c, &conf_keys[i], v, err, errlen) < 0)
			return -1;
	}
#define READ_SECRET(f) conf_read_secret(c->f, sizeof(c->f), c->f##_file, #f "_file", err, errlen)
	if (READ_SECRET(key_secret) < 0 || READ_SECRET(redis_password) < 0 || READ_SECRET(redis_sentinel_password) < 0)
		return -1;
#undef READ_SECRET
	if (!c->key_secret[0]) {
		snprintf(err, errlen, "key_secret (or key_secret_file) must be set");
		return -1;
	}
	if (strcmp(c->metering, "on") != 0 && strcmp(c->metering, "off") != 0) {
		snprintf(err, errlen, "metering: '%s' is not on or off", c->metering);
		return -1;
	}
	return 0;
}

const char *
conf_pg_listen_dsn(const struct agora_conf *c)
{
	return c->pg_listen_dsn[0] ? c->pg_listen_dsn : c->pg_dsn;
}

const char *
conf_analytics_pg_dsn(const struct agora_conf *c)
{
	return c->analytics_pg_dsn[0] ? c->analytics_pg_dsn : c->pg_dsn;
}

void
conf_dump(const struct agora_conf *c, FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct conf_key *k = &conf_keys[i];
		const char *p = (const char *)c + k->off;

		fprintf(out, "# %s (default: %s)\n", k->help, k->def[0] ? k->def : "empty");
		if (k->secret)
			fprintf(out, "%s = %s\n", k->name, *p ? "********" : "");
		else if (k->type == CONF_STR)
			fprintf(out, "%s = %s\n", k->name, p);
		else if (k->type == CONF_INT)
			fprintf(out, "%s = %d\n", k->name, *(const int *)p);
		else
			fprintf(out, "%s = %lld\n", k->name, (long long)*(const int64_t *)p);
	}
}

int
conf_in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; (p = strstr(p, name)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

void
conf_copy_list(struct agora_conf *dst, const struct agora_conf *src, const char *list)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (conf_in_list(list, conf_keys[i].name))
			memcpy((char *)dst + conf_keys[i].off, (const char *)src + conf_keys[i].off,
			       conf_keys[i].size);
}

void
conf_forget_redis_passwords(struct agora_conf *c)
{
	explicit_bzero(c->redis_password, sizeof(c->redis_password));
	explicit_bzero(c->redis_sentinel_password, sizeof(c->redis_sentinel_password));
}

/* A key's value as text, secrets masked. */
static void
conf_format(const struct agora_conf *c, const struct conf_key *k, char *out, size_t len)
{
	const char *p = (const char *)c + k->off;

	if (k->secret)
		snprintf(out, len, "%s", *p ? "********" : "");
	else if (k->type == CONF_STR)
		snprintf(out, len, "%s", p);
	else if (k->type == CONF_INT)
		snprintf(out, len, "%d", *(const int *)p);
	else
		snprintf(out, len, "%lld", (long long)*(const int64_t *)p);
}

int
conf_reload(struct agora_conf *cur, const char *path, const char *live, const char *unused)
{
	struct agora_conf *nc = malloc(sizeof(*nc));
	char err[512], was[128], now[128];
	int applied = 0;

	if (!nc || conf_load(nc, path, err, sizeof(err)) < 0) {
		log_error("reload: %s: keeping the running configuration", nc ? err : "out of memory");
		free(nc);
		return -1;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		const struct conf_key *k = &conf_keys[i];
		char *a = (char *)cur + k->off, *b = (char *)nc + k->off;

		if (k->secret && !*a)
			memset(b, 0, k->size);	/* wiped after start: not compared */
		if (memcmp(a, b, k->type == CONF_STR ? strlen(a) + 1 : k->size) == 0 ||
		    conf_in_list(unused, k->name))
			continue;
		conf_format(cur, k, was, sizeof(was));
		conf_format(nc, k, now, sizeof(now));
		if (conf_in_list(live, k->name)) {
			log_info("reload: %s: %s -> %s", k->name, was, now);
			memcpy(a, b, k->size);
			applied++;
		} else {
			log_warn("reload: %s changed (%s -> %s): needs a restart, still %s", k->name, was, now, was);
		}
	}
	memset(nc, 0, sizeof(*nc));	/* secrets */
	free(nc);
	return applied;
}
