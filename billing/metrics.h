/*
 * metrics: agora-billing's HTTP side (on billing_listen): GET /health (200
 * while PostgreSQL and Redis are connected, else 503), GET /health/live,
 * and GET /metrics in the Prometheus text format: the consumer's counters,
 * batch size and commit time histograms, the stream's depth for the group
 * (XINFO GROUPS: pending and lag, XLEN; read every two seconds), and the
 * age of the newest event this worker committed.
 */
#ifndef AGORA_BILLING_METRICS_H
#define AGORA_BILLING_METRICS_H

#include <event2/event.h>

#include "consumer.h"
#include "httpd.h"
#include "pgc.h"
#include "rds.h"

struct bmetrics;

/* Hooks itself to the consumer's committed batches. NULL: no memory. */
struct bmetrics *bmetrics_new(struct event_base *base, struct pgc *pg, struct rds *rd, struct consumer *cons);
/* After rds_free (its pending replies refer to it). */
void bmetrics_free(struct bmetrics *m);
/* The httpd handler (arg: the bmetrics). */
void bmetrics_handle(struct httpd_req *req, void *arg);

#endif
