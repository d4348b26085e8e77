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
	char web_dir[512];			/* dashboards' pages and assets */
	char pg_dsn[512];			/* libpq conninfo; numeric hosts only */
	char redis_host[128];			/* numeric address */
	int redis_port;
	char redis_sentinels[512];		/* ip:port,...: Sentinel mode */
	char redis_master_name[128];		/* the master the sentinels watch */
	char redis_cluster[512];		/* ip:port,... seeds: Cluster mode */
	int usage_shards;			/* usage stream shards (1: `usage`) */
	int redis_wait_replicas;		/* usage XADDs confirmed by WAIT */
	char key_secret[256];			/* HMAC secret for API key hashes */
	char key_secret_file[512];		/* or read the secret from this file */
	char master_key[80];			/* 64 hex: provider credentials at rest */
	char master_key_file[512];		/* or read it from this file */
	char log_level[16];
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
	char metering[8];			/* "on", or "off" for benchmarks only */
	int workers;				/* router processes sharing the port */
};

/* Fills defaults, reads `path` (NULL: none) then AGORA_* environment
 * variables. On error writes a message to err and returns -1. */
int conf_load(struct agora_conf *c, const char *path, char *err, size_t errlen);

/* Writes every key with its current value and help (secrets masked). */
void conf_dump(const struct agora_conf *c, FILE *out);

#endif
