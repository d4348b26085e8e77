/*
 * rds: Redis in three modes behind one keyed command API (see rds.h).
 *
 * A node is one hiredis async link (standalone: the server; sentinel: the
 * master; cluster: one per master). A command is formatted once and kept
 * until it is answered, so a MOVED or ASK can send the same bytes again to
 * another node; its callback is called once, when no redirect follows.
 * hiredis frees a context after its disconnect callback; we only forget our
 * pointer there.
 */
#include "rds.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "rds_slot.h"

#define RDS_BACKOFF_MS 1000
#define RDS_RESOLVE_MS 250		/* sentinel: ask again after a failed master */
#define RDS_MAX_NODES 64
#define RDS_MAX_SEEDS 16
#define RDS_MAX_REDIRECTS 5
#define RDS_MAX_INFLIGHT (1 << 20)	/* commands awaiting a reply, all nodes */
#define RDS_MAX_OLD 8			/* links to a former master still closing */
/* hiredis 0.14 has no time-outs: a watchdog gives up on a link that has
 * not connected, or not answered its PING, for this long (commands then
 * answer NULL and callers fall back), and on a sentinel query as long. */
#define RDS_LINK_TIMEOUT_MS 5000
#define RDS_WATCH_MS 1000

enum rds_kind { RDS_STANDALONE, RDS_SENTINEL, RDS_CLUSTER };

struct rds_addr {
	char host[64];
	int port;
};

struct rds_node {
	struct rds *r;
	struct rds_addr a;
	redisAsyncContext *ac;
	int up;				/* connected (sentinel: ROLE said master) */
	int lost;			/* its link failed since the last connect */
	unsigned gen;			/* links made so far (rds_link) */
	struct event *retry;
	/* Writes what was queued this loop turn at its end, as sockio does:
	 * hiredis's own write event costs an epoll_ctl to arm it, a loop turn
	 * to report it and one more epoll_ctl to disarm it, per command at low
	 * load (the router's XADD a generation). */
	struct event *flush;
	int64_t opened_ms, pong_ms;	/* the link's start, its last PING answer */
	int ping_out;			/* a watchdog PING awaits its answer */
};

struct rds {
	struct event_base *base;
	enum rds_kind kind;
	struct rds_node *nodes[RDS_MAX_NODES];
	int nnodes;
	struct rds_addr seeds[RDS_MAX_SEEDS];	/* cluster seeds, or the sentinels */
	int nseeds;
	char master_name[128];
	short slots[RDS_SLOTS];		/* cluster: node index of each slot, -1: unknown */
	int mapped;			/* cluster: a slot map is loaded */
	int announce;			/* cluster: call fn after the next map */
	int refreshing, refresh_again;
	int next_node;			/* cluster: who answers the next CLUSTER SLOTS */
	struct event *timer;		/* cluster: refresh; sentinel: resolve */
	redisAsyncContext *sac;		/* sentinel: the one being asked */
	int64_t sac_ms;			/* since when */
	struct event *watch;		/* the watchdog (RDS_LINK_TIMEOUT_MS) */
	redisAsyncContext *sub;		/* sentinel: +switch-master subscription */
	struct event *sub_timer;
	int sidx, sub_idx;
	redisAsyncContext *old[RDS_MAX_OLD];	/* detached, answering what they owe */
	int freeing;
	long long inflight;
	char user[128], pass[256];	/* AUTH on every node link (pass empty: none) */
	char sent_user[128], sent_pass[256];	/* AUTH on every sentinel link (pass empty: none) */
	rds_connect_fn fn;
	void *arg;
	struct rds_stats st;
};

struct rds_cmd {
	struct rds *r;
	rds_reply_fn fn;
	void *priv;
	int slot;			/* -1: any node */
	int redirects;
	char *buf;			/* the formatted command */
	size_t len;
};

static void node_lost(struct rds_node *n);
static void cluster_refresh(struct rds *r);
static void sentinel_ask(struct rds *r);
static void sub_connect(struct rds *r);

static void
rds_up(struct rds *r)
{
	if (r->fn && !r->freeing)
		r->fn(r, r->arg);
}

/* ---- addresses ---- */

/* hiredis resolves names with a blocking getaddrinfo(): only numeric
 * addresses reach it, so the loop never waits on DNS. */
static int
addr_numeric(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int
addr_parse(const char *s, size_t len, struct rds_addr *a)
{
	const char *colon = NULL;
	char port[8];

	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(a->host) ||
	    (size_t)(s + len - colon - 1) >= sizeof(port) || s + len - colon - 1 == 0)
		return -1;
	memcpy(a->host, s, (size_t)(colon - s));
	a->host[colon - s] = '\0';
	memcpy(port, colon + 1, (size_t)(s + len - colon - 1));
	port[s + len - colon - 1] = '\0';
	a->port = atoi(port);
	return a->port > 0 && a->port < 65536 && addr_numeric(a->host) ? 0 : -1;
}

/* "ip:port,ip:port,..." into r->seeds. */
static int
seeds_parse(struct rds *r, const char *list, char *err, size_t errlen)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ", ");

		if (n && (r->nseeds == RDS_MAX_SEEDS || addr_parse(p, n, &r->seeds[r->nseeds++]) < 0)) {
			snprintf(err, errlen, "redis: '%s': expected up to %d ip:port, comma separated", list,
				 RDS_MAX_SEEDS);
			return -1;
		}
		p += n;
		p += strspn(p, ", ");
	}
	if (r->nseeds == 0) {
		snprintf(err, errlen, "redis: '%s': no ip:port", list);
		return -1;
	}
	return 0;
}

/* ---- hiredis on the loop ----
 * hiredis's own libevent adapter makes its read event one-shot: each reply
 * read deletes it and hiredis adds it again, which the epoll changelist
 * turns into an epoll_ctl(MOD) a read. Ours keeps both events persistent and
 * added only while hiredis wants them, so the steady state costs no
 * epoll_ctl (with node_flush_cb, not even for writes). */
struct rds_ev {
	redisAsyncContext *ac;
	struct event *rev, *wev;
	int reading, writing;
};

static void
ev_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redisAsyncHandleRead(((struct rds_ev *)arg)->ac);
}

static void
ev_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	redisAsyncHandleWrite(((struct rds_ev *)arg)->ac);
}

static void
ev_want(struct event *ev, int *on, int want)
{
	if (*on == want)
		return;
	if (want ? event_add(ev, NULL) : event_del(ev))
		return;		/* a failed add: the next call tries again */
	*on = want;
}

static void ev_add_read(void *p) { struct rds_ev *e = p; ev_want(e->rev, &e->reading, 1); }
static void ev_del_read(void *p) { struct rds_ev *e = p; ev_want(e->rev, &e->reading, 0); }
static void ev_add_write(void *p) { struct rds_ev *e = p; ev_want(e->wev, &e->writing, 1); }
static void ev_del_write(void *p) { struct rds_ev *e = p; ev_want(e->wev, &e->writing, 0); }

static void
ev_cleanup(void *p)
{
	struct rds_ev *e = p;

	event_free(e->rev);
	event_free(e->wev);
	free(e);
}

/* Both events on at first: the write event reports the connect. */
static int
ev_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct rds_ev *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	e->ac = ac;
	e->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, ev_read_cb, e);
	e->wev = event_new(base, ac->c.fd, EV_WRITE | EV_PERSIST, ev_write_cb, e);
	if (!e->rev || !e->wev) {
		if (e->rev)
			event_free(e->rev);
		if (e->wev)
			event_free(e->wev);
		free(e);
		return -1;
	}
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	ac->ev.data = e;
	ev_add_read(e);
	ev_add_write(e);
	return 0;
}

/* A hiredis link to a, attached to the loop; NULL (logged) on failure. */
static redisAsyncContext *
ctx_open(struct rds *r, const struct rds_addr *a, void *data, redisConnectCallback *on_connect,
	 redisDisconnectCallback *on_disconnect)
{
	redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);

	if (!ac || ac->err) {
		log_warn("redis: %s:%d: %s", a->host, a->port, ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		return NULL;
	}
	if (ev_attach(ac, r->base) < 0) {
		log_warn("redis: %s:%d: out of memory", a->host, a->port);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = data;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return ac;
}

/* ---- nodes ---- */

static void
node_retry_cb(evutil_socket_t fd, short what, void *arg);

static void
node_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rds_node *n = arg;
	redisAsyncContext *ac = n->ac;

	(void)fd;
	(void)what;
	/* what is left after a partial write waits for the write event */
	if (ac && (ac->c.flags & REDIS_CONNECTED) && !(ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
		redisAsyncHandleWrite(ac);
}

static struct rds_node *
node_get(struct rds *r, const char *host, int port)
{
	struct rds_node *n;

	for (int i = 0; i < r->nnodes; i++)
		if (r->nodes[i]->a.port == port && strcmp(r->nodes[i]->a.host, host) == 0)
			return r->nodes[i];
	if (r->nnodes == RDS_MAX_NODES || !(n = calloc(1, sizeof(*n))))
		return NULL;
	n->r = r;
	snprintf(n->a.host, sizeof(n->a.host), "%s", host);
	n->a.port = port;
	if (!(n->retry = evtimer_new(r->base, node_retry_cb, n)) ||
	    !(n->flush = event_new(r->base, -1, 0, node_flush_cb, n))) {
		if (n->retry)
			event_free(n->retry);
		free(n);
		return NULL;
	}
	r->nodes[r->nnodes++] = n;
	return n;
}

static int
node_index(const struct rds *r, const struct rds_node *n)
{
	for (int i = 0; i < r->nnodes; i++)
		if (r->nodes[i] == n)
			return i;
	return -1;
}

static void
role_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds_node *n = arg;
	redisReply *rep = reply;

	if (!rep || n->r->freeing || n->ac != ac)
		return;
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 && rep->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(rep->element[0]->str, "master") == 0) {
		n->up = 1;
		log_info("redis: master %s:%d (%s) confirmed", n->a.host, n->a.port, n->r->master_name);
		rds_up(n->r);
		return;
	}
	log_warn("redis: %s:%d is not the master (yet); asking the sentinels again", n->a.host, n->a.port);
	redisAsyncDisconnect(ac);
}

/* A node link is connected, and authenticated when AUTH is configured. */
static void
node_ready(struct rds_node *n)
{
	if (n->r->kind == RDS_SENTINEL) {
		if (redisAsyncCommand(n->ac, role_cb, n, "ROLE") != REDIS_OK)
			redisAsyncDisconnect(n->ac);
		return;
	}
	n->up = 1;
	if (n->r->kind != RDS_CLUSTER) {
		rds_up(n->r);
	} else if (!n->r->mapped || n->lost) {
		n->r->announce = 1;	/* back after a loss: callers resume */
		cluster_refresh(n->r);
	}
	n->lost = 0;
}

static void
auth_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds_node *n = arg;
	redisReply *rep = reply;

	if (!rep || n->r->freeing || n->ac != ac)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		/* what was queued behind AUTH is answered NOAUTH, then the link
		 * closes and is made again after the back-off */
		log_error("redis: %s:%d refused AUTH as %s: %s", n->a.host, n->a.port,
			  n->r->user[0] ? n->r->user : "the default user", rep->str);
		redisAsyncDisconnect(ac);
		return;
	}
	node_ready(n);
}

/* AUTH [user] pass, the first command of a new link (a node's, or a
 * sentinel's): queued before anything else can be (cluster mode sends on a
 * link still connecting). 0, or -1. */
static int
auth_send(redisAsyncContext *ac, redisCallbackFn *fn, void *arg, const char *user, const char *pass)
{
	if (user[0])
		return redisAsyncCommand(ac, fn, arg, "AUTH %s %s", user, pass) == REDIS_OK ? 0 : -1;
	return redisAsyncCommand(ac, fn, arg, "AUTH %s", pass) == REDIS_OK ? 0 : -1;
}

static void
node_on_connect(const redisAsyncContext *ac, int status)
{
	struct rds_node *n = ac->data;

	if (!n || n->ac != ac)
		return;
	if (status != REDIS_OK) {
		log_warn("redis: connect to %s:%d failed: %s", n->a.host, n->a.port, ac->errstr);
		n->ac = NULL;	/* hiredis frees it */
		node_lost(n);
		return;
	}
	log_info("redis: connected to %s:%d", n->a.host, n->a.port);
	if (!n->r->pass[0])
		node_ready(n);	/* else auth_cb, once AUTH is answered */
}

static void
node_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rds_node *n = ac->data;

	if (!n)
		return;
	if (n->ac != ac) {	/* a detached link has closed */
		for (int i = 0; i < RDS_MAX_OLD; i++)
			if (n->r->old[i] == ac)
				n->r->old[i] = NULL;
		return;
	}
	n->ac = NULL;
	n->up = 0;
	if (n->r->freeing)
		return;
	log_warn("redis: link to %s:%d %s", n->a.host, n->a.port, status == REDIS_OK ? "closed" : ac->errstr);
	node_lost(n);
}

static int
node_connect(struct rds_node *n)
{
	if (n->ac)
		return 0;
	n->gen++;
	n->opened_ms = n->pong_ms = clock_mono_ms();
	n->ping_out = 0;
	if (!(n->ac = ctx_open(n->r, &n->a, n, node_on_connect, node_on_disconnect)))
		goto fail;
	if (n->r->pass[0] && auth_send(n->ac, auth_cb, n, n->r->user, n->r->pass) < 0) {
		log_warn("redis: %s:%d: out of memory", n->a.host, n->a.port);
		n->ac->data = NULL;
		redisAsyncFree(n->ac);
		n->ac = NULL;
		goto fail;
	}
	return 0;
fail:
	loop_timer_in(n->retry, RDS_BACKOFF_MS);
	return -1;
}

/* Leaves a node's link (a new master): it closes once its replies are in,
 * and is freed by rds_free() if it has not by then. */
static void
node_detach(struct rds_node *n)
{
	redisAsyncContext *ac = n->ac;
	int i;

	if (!ac)
		return;
	n->ac = NULL;		/* first: the disconnect may run at once */
	n->up = 0;
	if (!(ac->c.flags & REDIS_CONNECTED)) {	/* nothing sent yet worth waiting for */
		ac->data = NULL;
		redisAsyncFree(ac);	/* its queued commands answer NULL */
		return;
	}
	for (i = 0; i < RDS_MAX_OLD && n->r->old[i]; i++)
		;
	if (i < RDS_MAX_OLD)
		n->r->old[i] = ac;
	else
		ac->data = NULL;	/* untracked: its callbacks no longer know us */
	redisAsyncDisconnect(ac);
}

static int
node_owns_slots(const struct rds *r, const struct rds_node *n)
{
	int idx = node_index(r, n);

	for (int s = 0; s < RDS_SLOTS; s++)
		if (r->slots[s] == idx)
			return 1;
	return 0;
}

static void
node_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rds_node *n = arg;

	(void)fd;
	(void)what;
	if (n->r->kind == RDS_CLUSTER && n->r->mapped && !node_owns_slots(n->r, n))
		return;		/* no longer a master of ours: let it go */
	node_connect(n);
}

/* A link failed or closed: how each mode gets back. */
static void
node_lost(struct rds_node *n)
{
	struct rds *r = n->r;

	if (r->freeing)
		return;
	n->lost = 1;
	if (r->kind == RDS_SENTINEL) {
		loop_timer_once(r->timer, RDS_RESOLVE_MS);
		return;
	}
	loop_timer_in(n->retry, RDS_BACKOFF_MS);
	if (r->kind == RDS_CLUSTER && !evtimer_pending(r->timer, NULL)) {
		r->announce = 1;
		loop_timer_in(r->timer, RDS_BACKOFF_MS);
	}
}

/* ---- commands ---- */

static void cmd_cb(redisAsyncContext *ac, void *reply, void *arg);

static int
cmd_send(struct rds_cmd *c, struct rds_node *n, int asking)
{
	if (!n || !n->ac)
		return -1;
	if (asking && redisAsyncCommand(n->ac, NULL, NULL, "ASKING") != REDIS_OK)
		return -1;
	if (redisAsyncFormattedCommand(n->ac, cmd_cb, c, c->buf, c->len) != REDIS_OK)
		return -1;
	event_active(n->flush, EV_WRITE, 0);	/* once a turn: already active is a no-op */
	return 0;
}

static void
cmd_deliver(struct rds_cmd *c, redisReply *reply)
{
	struct rds *r = c->r;

	r->inflight--;
	if (c->fn)
		c->fn(r, reply, c->priv);
	redisFreeCommand(c->buf);
	free(c);
}

/* MOVED <slot> <ip>:<port> / ASK <slot> <ip>:<port>: 0 when sent again. */
static int
cmd_redirect(struct rds_cmd *c, const redisReply *rep)
{
	struct rds *r = c->r;
	int ask = strncmp(rep->str, "ASK ", 4) == 0, slot;
	const char *sp;
	struct rds_addr a;
	struct rds_node *n;

	if ((!ask && strncmp(rep->str, "MOVED ", 6) != 0) || c->redirects >= RDS_MAX_REDIRECTS)
		return -1;
	slot = atoi(rep->str + (ask ? 4 : 6));
	if (!(sp = strchr(rep->str + (ask ? 4 : 6), ' ')) || slot < 0 || slot >= RDS_SLOTS ||
	    addr_parse(sp + 1, strlen(sp + 1), &a) < 0 || !(n = node_get(r, a.host, a.port)))
		return -1;
	c->redirects++;
	if (r->st.moved + r->st.ask < 10 || (r->st.moved + r->st.ask) % 1000 == 0)
		log_info("redis: slot %d: %s %s:%d (%lld MOVED, %lld ASK so far)", slot, ask ? "ASK" : "MOVED", a.host,
			 a.port, r->st.moved, r->st.ask);
	if (!n->ac)
		node_connect(n);
	if (ask) {
		r->st.ask++;
	} else {
		r->st.moved++;
		r->slots[slot] = (short)node_index(r, n);
		loop_timer_once(r->timer, RDS_BACKOFF_MS);	/* the rest of the map, once */
	}
	return cmd_send(c, n, ask);
}

/* Sentinel: a master that turned replica (READONLY) or lost its replicas
 * (NOREPLICAS, with min-replicas-to-write) is asked about again. */
static void
sentinel_check_reply(struct rds *r, redisAsyncContext *ac, const redisReply *rep)
{
	struct rds_node *n = r->nodes[0];

	if (strncmp(rep->str, "READONLY", 8) != 0 && strncmp(rep->str, "NOREPLICAS", 10) != 0)
		return;
	if (n && n->ac == ac && n->up) {
		log_warn("redis: %s:%d answered %.40s: resolving the master again", n->a.host, n->a.port, rep->str);
		n->up = 0;
		redisAsyncDisconnect(ac);
	}
}

static void
cmd_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds_cmd *c = arg;
	struct rds *r = c->r;
	redisReply *rep = reply;

	if (rep && rep->type == REDIS_REPLY_ERROR && !r->freeing) {
		if (r->kind == RDS_CLUSTER && cmd_redirect(c, rep) == 0)
			return;
		if (r->kind == RDS_CLUSTER && strncmp(rep->str, "CLUSTERDOWN", 11) == 0)
			cluster_refresh(r);
		if (r->kind == RDS_SENTINEL)
			sentinel_check_reply(r, ac, rep);
	}
	cmd_deliver(c, rep);
}

static struct rds_node *
node_for(struct rds *r, int slot)
{
	struct rds_node *n = NULL;

	if (r->freeing)		/* rds_free: no new link */
		return NULL;
	if (r->kind != RDS_CLUSTER) {
		n = r->nnodes ? r->nodes[0] : NULL;
	} else if (slot >= 0 && r->slots[slot] >= 0) {
		n = r->nodes[r->slots[slot]];
	} else if (slot < 0) {
		for (int i = 0; i < r->nnodes && !n; i++)
			if (r->nodes[i]->up)
				n = r->nodes[i];
	}
	/* (a sentinel's master is dialled only once the sentinels named it) */
	if (n && !n->ac && r->kind != RDS_SENTINEL && !evtimer_pending(n->retry, NULL))
		node_connect(n);
	/* a cluster node still connecting takes commands (hiredis queues them;
	 * a failed connect answers them NULL); a sentinel's master only once
	 * ROLE confirmed it */
	return n && (n->up || (r->kind == RDS_CLUSTER && n->ac)) ? n : NULL;
}

static int
cmd_submit(struct rds *r, const char *key, size_t keylen, rds_reply_fn fn, void *priv, char *buf, int len)
{
	struct rds_cmd *c;

	if (len < 0 || !buf)
		return -1;
	if (r->freeing || r->inflight >= RDS_MAX_INFLIGHT || !(c = calloc(1, sizeof(*c)))) {
		redisFreeCommand(buf);
		return -1;
	}
	c->r = r;
	c->fn = fn;
	c->priv = priv;
	c->buf = buf;
	c->len = (size_t)len;
	c->slot = key && r->kind == RDS_CLUSTER ? rds_slot(key, keylen) : -1;
	if (cmd_send(c, node_for(r, c->slot), 0) < 0) {
		r->st.failed++;
		redisFreeCommand(buf);
		free(c);
		return -1;
	}
	r->inflight++;
	r->st.sent++;
	return 0;
}

uint64_t
rds_link(struct rds *r, const char *key, size_t keylen)
{
	struct rds_node *n = node_for(r, key && r->kind == RDS_CLUSTER ? rds_slot(key, keylen) : -1);

	return n ? (uint64_t)(node_index(r, n) + 1) << 32 | n->gen : 0;
}

int
rds_command(struct rds *r, const char *key, size_t keylen, rds_reply_fn fn, void *priv, const char *fmt, ...)
{
	char *buf = NULL;
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = redisvFormatCommand(&buf, fmt, ap);
	va_end(ap);
	return cmd_submit(r, key, keylen, fn, priv, buf, len);
}

/* Writes the decimal digits of v ending at end; returns where they start. */
static char *
resp_digits(char *end, size_t v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

/* One length header ("*3\r\n", "$11\r\n") at p; returns its end. */
static char *
resp_header(char *p, char kind, size_t n)
{
	char tmp[24], *d = resp_digits(tmp + sizeof(tmp), n);
	size_t nd = (size_t)(tmp + sizeof(tmp) - d);

	*p++ = kind;
	memcpy(p, d, nd);
	p += nd;
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

/* hiredis formats each argument's length with sprintf (six calls for a
 * usage event's XADD: 2.6% of a request); this sizes the command first and
 * writes it in one pass. */
int
rds_format_argv(char **out, int argc, const char **argv, const size_t *argvlen)
{
	size_t total = 1 + 20 + 2;
	char *buf, *p;

	*out = NULL;
	if (argc < 0)
		return -1;
	for (int i = 0; i < argc; i++) {
		size_t n = argvlen ? argvlen[i] : strlen(argv[i]);

		if (n > (size_t)INT_MAX || total + n + 25 > (size_t)INT_MAX)
			return -1;
		total += 1 + 20 + 2 + n + 2;
	}
	if (!(buf = malloc(total)))
		return -1;
	p = resp_header(buf, '*', (size_t)argc);
	for (int i = 0; i < argc; i++) {
		size_t n = argvlen ? argvlen[i] : strlen(argv[i]);

		p = resp_header(p, '$', n);
		memcpy(p, argv[i], n);
		p += n;
		*p++ = '\r';
		*p++ = '\n';
	}
	*out = buf;
	return (int)(p - buf);
}

int
rds_command_argv(struct rds *r, const char *key, size_t keylen, rds_reply_fn fn, void *priv, int argc,
		 const char **argv, const size_t *argvlen)
{
	char *buf = NULL;
	int len = rds_format_argv(&buf, argc, argv, argvlen);

	return cmd_submit(r, key, keylen, fn, priv, buf, len);
}

/* ---- cluster: the slot map ---- */

/* CLUSTER SLOTS: [[start, end, [ip, port, id], replicas...], ...] */
static int
slots_apply(struct rds *r, const struct rds_node *asked, const redisReply *rep)
{
	short map[RDS_SLOTS];

	for (int s = 0; s < RDS_SLOTS; s++)
		map[s] = -1;
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i], *m;
		struct rds_node *n;
		const char *host;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[2]->type != REDIS_REPLY_ARRAY ||
		    e->element[2]->elements < 2)
			return -1;
		m = e->element[2];
		host = m->element[0]->type == REDIS_REPLY_STRING && m->element[0]->len ? m->element[0]->str
										     : asked->a.host;
		if (!(n = node_get(r, host, (int)m->element[1]->integer)))
			return -1;
		for (long long s = e->element[0]->integer; s <= e->element[1]->integer && s < RDS_SLOTS; s++)
			if (s >= 0)
				map[s] = (short)node_index(r, n);
	}
	memcpy(r->slots, map, sizeof(map));
	r->mapped = 1;
	for (int s = 0; s < RDS_SLOTS; s++)
		if (map[s] >= 0 && !r->nodes[map[s]]->ac && !evtimer_pending(r->nodes[map[s]]->retry, NULL))
			node_connect(r->nodes[map[s]]);
	return 0;
}

static void
slots_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds_node *n = arg;
	struct rds *r = n->r;
	redisReply *rep = reply;

	(void)ac;
	if (r->freeing)
		return;
	r->refreshing = 0;
	if (!rep || rep->type != REDIS_REPLY_ARRAY || slots_apply(r, n, rep) < 0) {
		log_warn("redis: CLUSTER SLOTS from %s:%d failed: %s", n->a.host, n->a.port,
			 rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "no map");
		loop_timer_in(r->timer, RDS_BACKOFF_MS);
		return;
	}
	r->st.refreshes++;
	log_debug("redis: slot map from %s:%d (%zu ranges)", n->a.host, n->a.port, rep->elements);
	if (r->refresh_again) {
		r->refresh_again = 0;
		cluster_refresh(r);
	}
	if (r->announce) {
		r->announce = 0;
		rds_up(r);
	}
}

static void
cluster_refresh(struct rds *r)
{
	struct rds_node *n = NULL;

	if (r->freeing)
		return;
	if (r->refreshing) {
		r->refresh_again = 1;
		return;
	}
	for (int i = 0; i < r->nnodes && !n; i++) {
		struct rds_node *c = r->nodes[(r->next_node + i) % r->nnodes];

		if (c->up)
			n = c;
	}
	if (!n) {	/* nobody to ask: (re)connect the seeds; a connect asks */
		for (int i = 0; i < r->nseeds; i++) {
			struct rds_node *s = node_get(r, r->seeds[i].host, r->seeds[i].port);

			if (s && !s->ac && !evtimer_pending(s->retry, NULL))
				node_connect(s);
		}
		return;
	}
	r->next_node = (node_index(r, n) + 1) % r->nnodes;
	if (redisAsyncCommand(n->ac, slots_cb, n, "CLUSTER SLOTS") == REDIS_OK)
		r->refreshing = 1;
}

/* ---- sentinel: who is the master ---- */

static void
sentinel_discard(struct rds *r, redisAsyncContext *ac)
{
	if (r->sac == ac)
		r->sac = NULL;
}

static void
sent_on_connect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;

	if (r && status != REDIS_OK) {
		log_warn("redis: sentinel: %s", ac->errstr);
		sentinel_discard(r, (redisAsyncContext *)ac);	/* its command answers NULL: next one */
	}
}

static void
sent_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;

	(void)status;
	if (r)
		sentinel_discard(r, (redisAsyncContext *)ac);
}

/* The master moved to host:port: connect there (ROLE checks it). */
static void
master_set(struct rds *r, const char *host, int port)
{
	struct rds_node *n = r->nodes[0];

	if (strcmp(n->a.host, host) != 0 || n->a.port != port) {
		log_info("redis: sentinels name %s:%d as master %s", host, port, r->master_name);
		node_detach(n);
		snprintf(n->a.host, sizeof(n->a.host), "%s", host);
		n->a.port = port;
	}
	r->st.resolves++;
	node_connect(n);
}

static void
sent_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds *r = arg;
	redisReply *rep = reply;

	if (r->freeing)
		return;
	if (rep)
		redisAsyncDisconnect(ac);
	sentinel_discard(r, ac);
	if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING) {
		if (!r->nodes[0]->up || r->nodes[0]->a.port != atoi(rep->element[1]->str) ||
		    strcmp(r->nodes[0]->a.host, rep->element[0]->str) != 0)
			master_set(r, rep->element[0]->str, atoi(rep->element[1]->str));
		return;
	}
	{
		const struct rds_addr *s = &r->seeds[(r->sidx + r->nseeds - 1) % r->nseeds];

		if (rep && rep->type == REDIS_REPLY_ERROR)	/* NOAUTH...: not an answer about the master */
			log_warn("redis: sentinel %s:%d: %s", s->host, s->port, rep->str);
		else
			log_warn("redis: sentinel %s:%d does not know master %s", s->host, s->port, r->master_name);
	}
	/* the next sentinel, at once unless a whole round failed */
	loop_timer_in(r->timer, r->sidx % r->nseeds == 0 ? RDS_BACKOFF_MS : 0);
}

static void
sent_auth_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds *r = arg;
	redisReply *rep = reply;

	if (!rep || r->freeing || rep->type != REDIS_REPLY_ERROR)
		return;
	log_error("redis: sentinel %s:%d refused AUTH as %s: %s", ac->c.tcp.host ? ac->c.tcp.host : "?",
		  ac->c.tcp.port, r->sent_user[0] ? r->sent_user : "the default user", rep->str);
	/* the question's link closes with its NOAUTH answer (sent_cb asks the
	 * next sentinel); the subscription's would stay open, subscribed to
	 * nothing */
	if (ac == r->sub)
		redisAsyncDisconnect(ac);
}

/* AUTH first on a new sentinel link, when the sentinels want one. 0, or -1. */
static int
sent_auth(struct rds *r, redisAsyncContext *ac)
{
	return r->sent_pass[0] ? auth_send(ac, sent_auth_cb, r, r->sent_user, r->sent_pass) : 0;
}

static void
sentinel_ask(struct rds *r)
{
	struct rds_addr *a;
	redisAsyncContext *ac;

	if (r->sac || r->freeing || r->nodes[0]->up)
		return;
	if (r->nodes[0]->ac) {		/* a master still connecting: ask later */
		loop_timer_in(r->timer, RDS_RESOLVE_MS);
		return;
	}
	a = &r->seeds[r->sidx];
	r->sidx = (r->sidx + 1) % r->nseeds;
	if (!(ac = ctx_open(r, a, r, sent_on_connect, sent_on_disconnect))) {
		loop_timer_in(r->timer, RDS_BACKOFF_MS);
		return;
	}
	r->sac = ac;
	r->sac_ms = clock_mono_ms();
	if (sent_auth(r, ac) < 0 ||
	    redisAsyncCommand(ac, sent_cb, r, "SENTINEL get-master-addr-by-name %s", r->master_name) != REDIS_OK) {
		r->sac = NULL;
		redisAsyncFree(ac);
		loop_timer_in(r->timer, RDS_BACKOFF_MS);
	}
}

/* +switch-master <name> <old ip> <old port> <new ip> <new port> */
static void
sub_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds *r = arg;
	redisReply *rep = reply;
	char name[128], oip[64], nip[64];
	int oport, nport;

	(void)ac;
	if (!rep || r->freeing || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
	    rep->element[2]->type != REDIS_REPLY_STRING || strcmp(rep->element[0]->str, "message") != 0)
		return;
	if (sscanf(rep->element[2]->str, "%127s %63s %d %63s %d", name, oip, &oport, nip, &nport) == 5 &&
	    strcmp(name, r->master_name) == 0) {
		log_info("redis: sentinel announces +switch-master to %s:%d", nip, nport);
		master_set(r, nip, nport);
	}
}

static void
sub_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;

	(void)status;
	if (!r || r->sub != ac)
		return;
	r->sub = NULL;
	if (!r->freeing)
		loop_timer_in(r->sub_timer, RDS_BACKOFF_MS);
}

static void
sub_on_connect(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK)
		sub_on_disconnect(ac, status);
}

static void
sub_connect(struct rds *r)
{
	struct rds_addr *a = &r->seeds[r->sub_idx];
	redisAsyncContext *ac;

	if (r->sub || r->freeing)
		return;
	r->sub_idx = (r->sub_idx + 1) % r->nseeds;
	if (!(ac = ctx_open(r, a, r, sub_on_connect, sub_on_disconnect))) {
		loop_timer_in(r->sub_timer, RDS_BACKOFF_MS);
		return;
	}
	/* AUTH refused: sent_auth_cb closes the link, sub_on_disconnect tries again later */
	if (sent_auth(r, ac) < 0 || redisAsyncCommand(ac, sub_cb, r, "SUBSCRIBE +switch-master") != REDIS_OK) {
		redisAsyncFree(ac);
		loop_timer_in(r->sub_timer, RDS_BACKOFF_MS);
		return;
	}
	r->sub = ac;
}

static void
sub_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sub_connect(arg);
}

/* ---- lifecycle ---- */

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rds *r = arg;

	(void)fd;
	(void)what;
	if (r->kind == RDS_SENTINEL)
		sentinel_ask(r);
	else if (r->kind == RDS_CLUSTER)
		cluster_refresh(r);
}

/* ---- watchdog ---- */

static void
ping_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds_node *n = arg;

	if (!reply || n->r->freeing || n->ac != ac)
		return;
	n->pong_ms = clock_mono_ms();
	n->ping_out = 0;
}

/* Gives up on a node's link: its commands answer NULL, the node is lost
 * (reconnect, or ask the sentinels / refresh the slot map again). */
static void
node_drop(struct rds_node *n, const char *why)
{
	redisAsyncContext *ac = n->ac;

	log_warn("redis: %s:%d %s for %d ms: link dropped", n->a.host, n->a.port, why, RDS_LINK_TIMEOUT_MS);
	n->ac = NULL;
	n->up = 0;
	ac->data = NULL;	/* its disconnect callback: not ours any more */
	redisAsyncFree(ac);
	node_lost(n);
}

static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rds *r = arg;
	int64_t now = clock_mono_ms();

	(void)fd;
	(void)what;
	for (int i = 0; i < r->nnodes && !r->freeing; i++) {
		struct rds_node *n = r->nodes[i];

		if (!n->ac)
			continue;
		if (!(n->ac->c.flags & REDIS_CONNECTED)) {
			if (now - n->opened_ms > RDS_LINK_TIMEOUT_MS)
				node_drop(n, "not connected");
		} else if (n->ping_out) {
			if (now - n->pong_ms > RDS_LINK_TIMEOUT_MS)
				node_drop(n, "not answering");
		} else if (redisAsyncCommand(n->ac, ping_cb, n, "PING") == REDIS_OK) {
			n->ping_out = 1;	/* behind a blocking read it answers late, not never */
		}
	}
	if (r->sac && now - r->sac_ms > RDS_LINK_TIMEOUT_MS) {
		redisAsyncContext *ac = r->sac;

		log_warn("redis: sentinel not answering for %d ms: the next one", RDS_LINK_TIMEOUT_MS);
		r->sac = NULL;
		redisAsyncFree(ac);	/* its query answers NULL: asks the next sentinel */
	}
}

static struct rds *
rds_alloc(struct event_base *base, enum rds_kind kind)
{
	struct rds *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->base = base;
	r->kind = kind;
	for (int s = 0; s < RDS_SLOTS; s++)
		r->slots[s] = -1;
	if (!(r->timer = evtimer_new(base, timer_cb, r)) || !(r->sub_timer = evtimer_new(base, sub_timer_cb, r)) ||
	    !(r->watch = event_new(base, -1, EV_PERSIST, watch_cb, r))) {
		rds_free(r);
		return NULL;
	}
	loop_timer_in(r->watch, RDS_WATCH_MS);
	return r;
}

struct rds *
rds_new_standalone(struct event_base *base, const char *host, int port)
{
	struct rds *r = rds_alloc(base, RDS_STANDALONE);

	if (r && !node_get(r, host, port)) {
		rds_free(r);
		return NULL;
	}
	return r;
}

struct rds *
rds_new(struct event_base *base, const struct agora_conf *c, char *err, size_t errlen)
{
	enum rds_kind kind = c->redis_cluster[0] ? RDS_CLUSTER : c->redis_sentinels[0] ? RDS_SENTINEL : RDS_STANDALONE;
	struct rds *r;

	if (!(r = kind == RDS_STANDALONE ? rds_new_standalone(base, c->redis_host, c->redis_port)
					 : rds_alloc(base, kind))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(r->user, sizeof(r->user), "%s", c->redis_user);
	snprintf(r->pass, sizeof(r->pass), "%s", c->redis_password);
	snprintf(r->sent_user, sizeof(r->sent_user), "%s", c->redis_sentinel_user);
	snprintf(r->sent_pass, sizeof(r->sent_pass), "%s", c->redis_sentinel_password);
	if (kind == RDS_STANDALONE)
		return r;
	if (seeds_parse(r, kind == RDS_CLUSTER ? c->redis_cluster : c->redis_sentinels, err, errlen) < 0)
		goto fail;
	snprintf(r->master_name, sizeof(r->master_name), "%s", c->redis_master_name);
	if (kind == RDS_SENTINEL && !node_get(r, "0.0.0.0", 1)) {	/* the master, once known */
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return r;
fail:
	rds_free(r);
	return NULL;
}

void
rds_connect(struct rds *r)
{
	if (r->kind == RDS_STANDALONE)
		node_connect(r->nodes[0]);
	else if (r->kind == RDS_SENTINEL)
		sentinel_ask(r), sub_connect(r);
	else
		cluster_refresh(r);
	log_info("redis: %s mode", rds_mode(r));
}

void
rds_set_connect_cb(struct rds *r, rds_connect_fn fn, void *arg)
{
	r->fn = fn;
	r->arg = arg;
}

int
rds_is_connected(const struct rds *r)
{
	if (r->freeing)
		return 0;
	if (r->kind != RDS_CLUSTER)
		return r->nnodes && r->nodes[0]->up;
	for (int i = 0; r->mapped && i < r->nnodes; i++)
		if (r->nodes[i]->up)
			return 1;
	return 0;
}

const char *
rds_mode(const struct rds *r)
{
	return r->kind == RDS_CLUSTER ? "cluster" : r->kind == RDS_SENTINEL ? "sentinel" : "standalone";
}

void
rds_stats(const struct rds *r, struct rds_stats *st)
{
	*st = r->st;
}

void
rds_free(struct rds *r)
{
	if (!r)
		return;
	r->freeing = 1;
	for (int i = 0; i < RDS_MAX_OLD; i++) {
		redisAsyncContext *ac = r->old[i];

		r->old[i] = NULL;
		if (ac)
			redisAsyncFree(ac);
	}
	if (r->sac)
		redisAsyncFree(r->sac);
	if (r->sub)
		redisAsyncFree(r->sub);
	/* every link first: pending callbacks get NULL and may still ask
	 * (rds_is_connected, rds_command) while later nodes are freed */
	for (int i = 0; i < r->nnodes; i++) {
		redisAsyncContext *ac = r->nodes[i]->ac;

		r->nodes[i]->ac = NULL;
		r->nodes[i]->up = 0;
		if (ac)
			redisAsyncFree(ac);
	}
	for (int i = 0; i < r->nnodes; i++) {
		event_free(r->nodes[i]->retry);
		event_free(r->nodes[i]->flush);
		free(r->nodes[i]);
	}
	r->nnodes = 0;
	if (r->timer)
		event_free(r->timer);
	if (r->sub_timer)
		event_free(r->sub_timer);
	if (r->watch)
		event_free(r->watch);
	explicit_bzero(r->pass, sizeof(r->pass));
	explicit_bzero(r->sent_pass, sizeof(r->sent_pass));
	free(r);
}

const redisReply *
rds_group_field(const redisReply *groups, const char *group, const char *field)
{
	for (size_t i = 0; groups && groups->type == REDIS_REPLY_ARRAY && i < groups->elements; i++) {
		const redisReply *g = groups->element[i], *name = NULL, *value = NULL;

		for (size_t j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements; j += 2) {
			const redisReply *k = g->element[j];

			if (k->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(k->str, "name") == 0)
				name = g->element[j + 1];
			else if (strcmp(k->str, field) == 0)
				value = g->element[j + 1];
		}
		if (name && name->type == REDIS_REPLY_STRING && strcmp(name->str, group) == 0)
			return value;
	}
	return NULL;
}
