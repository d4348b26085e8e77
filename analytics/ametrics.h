/*
 * ametrics: agora-analytics' request accounting for /metrics: answers by
 * endpoint class (share, spend, pages, ...) and status class, and a latency
 * histogram per endpoint class, fed by the httpd done hook (O(1), no
 * allocation; a fixed set of classes, so label sets stay bounded).
 */
#ifndef AGORA_AMETRICS_H
#define AGORA_AMETRICS_H

#include <event2/buffer.h>

#include "httpd.h"

struct ametrics;

struct ametrics *ametrics_new(void);
void ametrics_free(struct ametrics *m);
/* The httpd done callback (arg: the ametrics). */
void ametrics_done(const struct httpd_req *r, int status, long long usec, void *arg);
/* The endpoint class of a path ("share_series", "pages", ...). */
const char *ametrics_class(const char *path);
void ametrics_write(const struct ametrics *m, struct evbuffer *b);

#endif
