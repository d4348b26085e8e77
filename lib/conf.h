/*
 * conf: the one configuration of an Agora stack. A file of `key = value`
 * lines (# comments), then environment overrides AGORA_<KEY> (upper case),
 * checked against one table of keys with types, bounds and defaults. Every
 * process reads the same file and uses the keys it needs.
 */
#ifndef AGORA_CONF_H
#define AGORA_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct agora_conf {
	char listen[128];			/* router HTTP listen address */
	char analytics_listen[128];		/* analytics HTTP listen address */
	char billing_listen[128];		/* billing health/metrics; empty: none */
	char web_dir[512];			/* dashboards' pages and assets */
	char pg_dsn[512];			/* libpq conninfo; numeric hosts only */
	char pg_listen_dsn[512];		/* LISTEN connections (empty: pg_dsn) */
	char analytics_pg_dsn[512];		/* analytics reads, e.g. a replica (empty: pg_dsn) */
	int retention_months;			/* agoractl partitions retain default (0: none) */
	char redis_host[128];			/* numeric address */
	int redis_port;
	char redis_sentinels[512];		/* ip:port,...: Sentinel mode */
	char redis_master_name[128];		/* the master the sentinels watch */
	char redis_user[128];			/* ACL user (empty: default) */
	char redis_password[256];		/* AUTH on every link (empty: none) */
	char redis_password_file[512];		/* or read it from this file */
	char redis_sentinel_user[128];		/* ACL user on the sentinels (empty: default) */
	char redis_sentinel_password[256];	/* AUTH to the sentinels (empty: none) */
	char redis_sentinel_password_file[512];
	char redis_cluster[512];		/* ip:port,... seeds: Cluster mode */
	int usage_shards;			/* usage stream shards (1: `usage`) */
	int redis_wait_replicas;		/* usage XADDs confirmed by WAIT */
	char key_secret[256];			/* HMAC secret for API key hashes */
	char key_secret_file[512];		/* or read the secret from this file */
	char master_key[80];			/* 64 hex: provider credentials at rest */
	char master_key_file[512];		/* or read it from this file */
	char log_level[16];
	int log_flush_ms;			/* access lines buffered this long */
	int64_t max_body_bytes;			/* client request body */
	int64_t max_header_bytes;		/* client request line + headers */
	int max_headers;			/* client request header count */
	int max_connections;			/* open client connections */
	int client_header_timeout_ms;		/* to receive a whole request */
	int client_idle_timeout_ms;		/* keep-alive idle */
	int client_write_timeout_ms;		/* client not reading our output */
	int64_t stream_buffer_bytes;		/* per-stream high-water mark */
	int64_t max_response_bytes;		/* non-streamed upstream answer */
	int upstream_connect_timeout_ms;
	int upstream_first_byte_timeout_ms;
	int upstream_idle_timeout_ms;		/* between stream chunks */
	int upstream_total_timeout_ms;
	int upstream_pool_idle;			/* idle keep-alive conns per upstream */
	int upstream_pool_idle_ms;		/* idle conn lifetime */
	char upstream_ca_file[512];		/* empty: system CAs */
	char tls_cert_file[512];		/* router listener TLS; empty: plain HTTP */
	char tls_key_file[512];
	int max_attempts;			/* endpoints tried per request */
	int failure_cooldown_ms;		/* breaker open time */
	int breaker_failures;			/* consecutive failures that open it */
	int catalog_poll_ms;			/* catalog change check interval */
	int key_cache_ttl_ms;			/* positive key cache lifetime */
	int pg_timeout_ms;			/* connect and query time-out */
	char spool_path[512];			/* usage spool while Redis is away */
	int64_t spool_max_bytes;		/* spool bound (then 503) */
	int billing_batch;			/* events per billing transaction */
	int key_rpm_default;			/* requests/minute per key, 0: none */
	int64_t key_tpm_default;		/* tokens/minute per key, 0: none */
	int ratelimit_sync_ms;			/* rate counters to Redis */
	int64_t budget_lease_nusd;		/* credits leased from Redis at a time */
	int budget_lease_idle_ms;		/* unused leases go back after this */
	int health_sync_ms;			/* endpoint health to and from Redis */
	int billing_claim_idle_ms;		/* take over entries pending this long */
	int billing_linger_ms;			/* wait after a small batch */
	char metering[8];			/* "on", or "off" for benchmarks only */
	int metering_flush_ms;			/* events held this long, sent together */
	int metering_max_inflight;		/* events sent, awaiting Redis's answer */
	int workers;				/* router processes sharing the port */
	int drain_timeout_ms;			/* SIGTERM/upgrade: in-flight limit */
};

/* Fills defaults, reads `path` (NULL: none) then AGORA_* environment
 * variables. On error writes a message to err and returns -1. */
int conf_load(struct agora_conf *c, const char *path, char *err, size_t errlen);

/* The conninfo of connections that LISTEN (a real session, never a
 * transaction pool), and of analytics' read-only queries: the key when set,
 * else pg_dsn. */
const char *conf_pg_listen_dsn(const struct agora_conf *c);
const char *conf_analytics_pg_dsn(const struct agora_conf *c);

/* Writes every key with its current value and help (secrets masked). */
void conf_dump(const struct agora_conf *c, FILE *out);

/* SIGHUP: loads path + environment afresh and compares it with *cur key by
 * key. `live` and `unused` are space-separated key names. A changed key in
 * `live` is copied into *cur and logged; one in `unused` (not read by this
 * process) is ignored; any other changed key is logged as needing a restart
 * and *cur keeps its value. A secret wiped from *cur (empty) is not
 * compared. Returns the number of keys applied, or -1 when the new
 * configuration does not load (logged; *cur untouched). */
int conf_reload(struct agora_conf *cur, const char *path, const char *live, const char *unused);
/* Copies the keys named in `list` (space-separated) from src to dst. */
void conf_copy_list(struct agora_conf *dst, const struct agora_conf *src, const char *list);
/* Clears redis_password and redis_sentinel_password, once rds_new has
 * its own copies (which rds_free clears): no other copy stays in memory.
 * conf_reload then leaves them out of its comparison. */
void conf_forget_redis_passwords(struct agora_conf *c);

/* 1 when `name` is one of the space-separated words of `list`. */
int conf_in_list(const char *list, const char *name);

/* Keys only agora-router reads (for the other processes' `unused`). */
#define CONF_ROUTER_KEYS "listen workers max_body_bytes max_header_bytes max_headers " \
	"max_connections client_header_timeout_ms client_idle_timeout_ms client_write_timeout_ms " \
	"stream_buffer_bytes max_response_bytes upstream_connect_timeout_ms " \
	"upstream_first_byte_timeout_ms upstream_idle_timeout_ms upstream_total_timeout_ms " \
	"upstream_pool_idle upstream_pool_idle_ms upstream_ca_file tls_cert_file tls_key_file " \
	"max_attempts failure_cooldown_ms breaker_failures catalog_poll_ms spool_path " \
	"spool_max_bytes key_rpm_default key_tpm_default ratelimit_sync_ms budget_lease_nusd " \
	"budget_lease_idle_ms health_sync_ms metering master_key master_key_file log_flush_ms metering_flush_ms metering_max_inflight"

#endif
