/*
 * recon: provider invoice reconciliation (API under
 * /api/v1/analytics/reconciliation). The dispatcher in main.c authenticates
 * the caller (operator keys only) before calling recon_route.
 */
#ifndef AGORA_RECON_H
#define AGORA_RECON_H

#include "httpd.h"
#include "pgc.h"

/* Answers a request under /api/v1/analytics/reconciliation. Returns 1 if it
 * handled (will complete) the request, 0 if the path is not its own. */
int recon_route(struct pgc *pg, struct httpd_req *req, const char *path);

#endif
