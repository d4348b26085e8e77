/*
 * pages: the HTML dashboards and their static assets, served by
 * agora-analytics for GET paths outside /api/, /health and /metrics.
 */
#ifndef AGORA_PAGES_H
#define AGORA_PAGES_H

#include "httpd.h"

/* Uses the web directory dir (the config's web_dir). NULL or "": AGORA_WEB_DIR,
 * else analytics/web beside the binary's folder (build/../analytics/web),
 * else ./analytics/web. Optional: the first pages_serve() looks for the
 * default itself. -1 when the directory holds no dashboards. */
int pages_init(const char *dir);

/* Answers a GET for a page or asset. Returns 1 if it answered, 0 if the
 * path is not one of its own (the caller answers 404). */
int pages_serve(struct httpd_req *req, const char *path);

/* 1 when name ("x.js", "vendor/x.js") is a servable asset name: no path
 * can leave the web directory. */
int pages_name_ok(const char *name);

#endif
