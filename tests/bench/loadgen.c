/*
 * loadgen: the benchmark's own HTTP/1.1 load generator (libevent +
 * http_parser), for what wrk does not measure: time to the first body byte
 * of a streamed answer, body bytes per second, and connections held open
 * without a request. One process, one loop; every connection keeps one
 * request in flight on a keep-alive connection (closed loop), or, with -r,
 * requests leave at a fixed rate whatever the answers' speed (open loop).
 *
 *   loadgen -u http://127.0.0.1:PORT/path [-m POST] [-b BODY_FILE]
 *           [-H 'Name: value']... [-c CONNS] [-d SECONDS] [-w WARMUP_SECONDS]
 *           [-n REQUESTS] [-r RATE] load: one JSON line of figures on stdout
 *   loadgen -u URL --idle -c CONNS  open CONNS connections, print
 *           {"connected":N}, hold them until stdin closes (or -d), then exit
 *
 * Latency is from the request's first byte written to the answer's last
 * byte read; ttfb to the first body byte (for SSE: the first event). A
 * benchmark tool, not a test: it asserts nothing.
 *
 * Open loop (-r RATE, requests a second over all connections): request i is
 * due at start + i/RATE and leaves on an idle keep-alive connection; with
 * none idle it waits (the queue is the range of due, unsent schedule
 * indices: no memory per request) and its latency and ttfb still count from
 * the time it was due, as wrk2 does, so a stalled server cannot hide its
 * stall by slowing the load (coordinated omission). A timer armed for the
 * next due time (libevent's precise timer, not a 1 ms tick, which would add
 * up to 1 ms to every latency) sends what is due. Measured: the requests due
 * within the window; none leaves after it ("unsent"), answers in flight are
 * waited for. Extra fields: rate, late (left more than 1 ms after due),
 * max_backlog (most due and unsent at once), unsent, svc_p50/p99_ms (from
 * the request's first byte written, as in closed loop).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <http_parser.h>

#define MAX_HEADERS 16
#define MAX_CONNECTING 256	/* connects in flight at once (listen backlogs) */
#define LATE_S 0.001		/* open loop: a request leaving later than this is late */

struct samples {
	uint32_t *v;		/* microseconds */
	size_t n, cap;
};

struct conn {
	struct bufferevent *bev;
	http_parser parser;
	double t_sent, t_first;
	double t_sched;		/* when it was due (open loop); t_sent in closed loop */
	int got_first, complete, connected;
	int in_idle;		/* open loop: in the idle stack, nothing in flight */
	int index;
};

static struct event_base *base;
static struct sockaddr_storage addr;
static int addrlen;
static char *request;			/* the serialized request */
static size_t request_len;
static struct conn *conns;
static int nconns, idle_mode, connecting, next_connect;
static double t_start, t_measure, t_end, t_last;
static long long max_requests, sent, done_requests, errors, measured, statuses[6];
static unsigned long long body_bytes;
static struct samples lat, ttfb, svc;
static int stopping;
static http_parser_settings settings;
/* open loop: sent is the next request's index in the schedule */
static double rate;
static long long late, max_backlog;
static int *idle, nidle;		/* connections with nothing in flight */
static struct event *sched_ev;

static void conn_start(struct conn *c);
static void open_pump(void);

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sample_add(struct samples *s, double secs)
{
	double us = secs * 1e6;

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 65536;
		if (!(s->v = realloc(s->v, s->cap * sizeof(*s->v)))) {
			fprintf(stderr, "loadgen: out of memory\n");
			exit(1);
		}
	}
	s->v[s->n++] = us < 0 ? 0 : us > 4e9 ? 4000000000u : (uint32_t)us;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void
samples_sort(struct samples *s)
{
	if (s->n)	/* qsort's array may not be NULL */
		qsort(s->v, s->n, sizeof(*s->v), cmp_u32);
}

/* The q-quantile in milliseconds (nearest rank), -1 without samples. */
static double
quantile_ms(const struct samples *s, double q)
{
	size_t i;

	if (s->n == 0)
		return -1;
	i = (size_t)(q * (double)s->n);
	if (i >= s->n)
		i = s->n - 1;
	return s->v[i] / 1000.0;
}

/* ---- responses ---- */

static int
on_body(http_parser *p, const char *at, size_t n)
{
	struct conn *c = p->data;

	(void)at;
	double t = now_s();

	if (!c->got_first) {
		c->got_first = 1;
		c->t_first = t;
	}
	if (t >= t_measure && t <= t_end)
		body_bytes += n;
	return 0;
}

static int
on_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->complete = 1;
	http_parser_pause(p, 1);
	return 0;
}

static void
conn_reset(struct conn *c)
{
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = NULL;
	c->connected = 0;
}

static int
measuring_over(void)
{
	return stopping || (max_requests > 0 ? sent >= max_requests : now_s() >= t_end);
}

/* t_sched: when it was due (open loop), 0: now (closed loop) */
static void
send_request(struct conn *c, double t_sched)
{
	sent++;
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	c->got_first = c->complete = 0;
	c->t_sent = now_s();
	c->t_sched = t_sched > 0 ? t_sched : c->t_sent;
	bufferevent_write(c->bev, request, request_len);
}

/* Whether an answer at t counts: sent (closed loop) or due (open loop) in
 * the window. */
static int
counted(const struct conn *c, double t)
{
	if (c->t_sched < t_measure)
		return 0;
	if (max_requests > 0)
		return 1;
	return rate > 0 ? c->t_sched < t_end : t <= t_end;
}

/* A connection free for a request: closed loop sends one at once. */
static void
conn_ready(struct conn *c)
{
	if (rate <= 0) {
		if (measuring_over())
			conn_reset(c);
		else
			send_request(c, 0);
		return;
	}
	if (!c->in_idle && nidle < nconns) {
		c->in_idle = 1;
		idle[nidle++] = c->index;
	}
	open_pump();
}

static void
answer_done(struct conn *c)
{
	double t = now_s();
	int st = c->parser.status_code;

	done_requests++;
	if (t > t_last)
		t_last = t;
	if (counted(c, t)) {
		measured++;
		statuses[st >= 100 && st < 600 ? st / 100 : 0]++;
		if (st >= 200 && st < 300) {
			sample_add(&lat, t - c->t_sched);
			sample_add(&ttfb, (c->got_first ? c->t_first : t) - c->t_sched);
			if (rate > 0)
				sample_add(&svc, t - c->t_sent);
		} else {
			errors++;
		}
	}
	if (!http_should_keep_alive(&c->parser)) {
		conn_reset(c);
		conn_start(c);
		return;
	}
	conn_ready(c);
}

/* ---- open loop ---- */

static double
sched_time(long long i)
{
	return t_start + (double)i / rate;
}

/* Requests due by t (indices below the result), within -n. */
static long long
due_by(double t)
{
	long long n = t < t_start ? 0 : (long long)((t - t_start) * rate) + 1;

	return max_requests > 0 && n > max_requests ? max_requests : n;
}

/* A connected idle connection, NULL without one (closed ones are dropped). */
static struct conn *
idle_pop(void)
{
	while (nidle > 0) {
		struct conn *c = &conns[idle[--nidle]];

		c->in_idle = 0;
		if (c->connected && c->bev)
			return c;
	}
	return NULL;
}

static void
sched_arm(double delay)
{
	struct timeval tv;

	if (delay < 0)
		delay = 0;
	tv.tv_sec = (time_t)delay;
	tv.tv_usec = (suseconds_t)((delay - (double)tv.tv_sec) * 1e6);
	event_add(sched_ev, &tv);
}

/* Sends every due request an idle connection can take (the oldest first,
 * each timed from when it was due), then sleeps until the next is due or
 * a connection frees up; once the schedule is over, closes the idle ones. */
static void
open_pump(void)
{
	double t = now_s();
	struct conn *c;

	while (!measuring_over() && sched_time(sent) <= t && (c = idle_pop())) {
		double due = sched_time(sent);

		send_request(c, due);
		if (c->t_sent - due > LATE_S && counted(c, due))
			late++;
	}
	if (measuring_over()) {
		while ((c = idle_pop()))
			conn_reset(c);
		return;
	}
	if (t >= t_measure && due_by(t) - sent > max_backlog)
		max_backlog = due_by(t) - sent;
	if (nidle > 0)
		sched_arm(sched_time(sent) - t);
}

static void
sched_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	open_pump();
}

/* Requests due within the window that never left. */
static long long
unsent(void)
{
	long long first = (long long)ceil((t_measure - t_start) * rate);
	long long end = max_requests > 0 ? max_requests : (long long)ceil((t_end - t_start) * rate);

	if (sent > first)
		first = sent;
	return end > first ? end - first : 0;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (c->bev && evbuffer_get_length(in) > 0) {
		size_t avail = evbuffer_get_contiguous_space(in), n;
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);

		n = http_parser_execute(&c->parser, &settings, data, avail);
		evbuffer_drain(in, n);
		if (c->complete) {
			http_parser_pause(&c->parser, 0);
			answer_done(c);
			if (c->bev != bev)	/* closed, or reconnecting */
				return;
			continue;
		}
		if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
			if (c->t_sched >= t_measure)
				errors++;
			conn_reset(c);
			conn_start(c);
			return;
		}
	}
}

/* Idle mode: more connects, and the line the driver waits for. */
static void
idle_progress(void)
{
	while (connecting < MAX_CONNECTING && next_connect < nconns)
		conn_start(&conns[next_connect++]);
	if (next_connect == nconns && connecting == 0) {
		int up = 0;

		for (int i = 0; i < nconns; i++)
			up += conns[i].connected;
		printf("{\"connected\":%d}\n", up);
		fflush(stdout);
		next_connect++;	/* said once */
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;

		setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->connected = 1;
		connecting--;
		if (idle_mode) {
			idle_progress();
			return;
		}
		conn_ready(c);
		return;
	}
	if (!c->connected) {	/* a connect failed: that slot stays closed */
		connecting--;
		errors++;
		conn_reset(c);
		if (idle_mode)
			idle_progress();
		return;
	}
	if ((what & BEV_EVENT_EOF) && c->connected && !c->complete && c->t_sent > 0) {
		http_parser_execute(&c->parser, &settings, NULL, 0);	/* close-delimited */
		if (c->complete) {
			answer_done(c);	/* not keep-alive: reconnects */
			return;
		}
	}
	if (c->t_sched >= t_measure && !idle_mode && !c->in_idle)
		errors++;
	conn_reset(c);
	if (idle_mode) {
		if (!stopping)
			fprintf(stderr, "loadgen: connection %d lost\n", c->index);
		return;
	}
	conn_start(c);
}

static void
conn_start(struct conn *c)
{
	if (!idle_mode && measuring_over())
		return;
	c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	c->connected = 0;
	c->t_sent = c->t_sched = 0;
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	connecting++;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&addr, addrlen) < 0) {
		connecting--;
		errors++;
		conn_reset(c);
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	int busy = 0;

	(void)fd;
	(void)what;
	(void)arg;
	if (rate > 0)
		open_pump();	/* the end of the schedule, whatever is pending */
	for (int i = 0; i < nconns; i++)
		busy += conns[i].bev != NULL;
	if (!busy || (idle_mode && stopping) || now_s() > t_end + 30)
		event_base_loopbreak(base);
}

static void
stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	(void)what;
	(void)arg;
	if (read(fd, buf, sizeof(buf)) <= 0) {
		stopping = 1;
		event_base_loopbreak(base);
	}
}

/* ---- setup ---- */

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
		fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
		exit(2);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
print_closed(double secs)
{
	printf("{\"requests\":%lld,\"errors\":%lld,\"seconds\":%.3f,\"rps\":%.1f,"
	       "\"lat_p50_ms\":%.3f,\"lat_p90_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_max_ms\":%.3f,"
	       "\"ttfb_p50_ms\":%.3f,\"ttfb_p99_ms\":%.3f,\"body_bytes\":%llu,\"body_bytes_per_s\":%.0f,"
	       "\"status_2xx\":%lld,\"status_4xx\":%lld,\"status_5xx\":%lld}\n",
	       measured, errors, secs, secs > 0 ? (double)lat.n / secs : 0,
	       quantile_ms(&lat, 0.5), quantile_ms(&lat, 0.9), quantile_ms(&lat, 0.99),
	       quantile_ms(&lat, 1.0), quantile_ms(&ttfb, 0.5), quantile_ms(&ttfb, 0.99),
	       body_bytes, secs > 0 ? (double)body_bytes / secs : 0,
	       statuses[2], statuses[4], statuses[5]);
}

/* rps: answered (2xx) requests due in the window, a second: the rate achieved */
static void
print_open(double secs, long long not_sent)
{
	printf("{\"rate\":%.1f,\"requests\":%lld,\"errors\":%lld,\"seconds\":%.3f,\"rps\":%.1f,"
	       "\"late\":%lld,\"max_backlog\":%lld,\"unsent\":%lld,"
	       "\"lat_p50_ms\":%.3f,\"lat_p90_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_max_ms\":%.3f,"
	       "\"ttfb_p50_ms\":%.3f,\"ttfb_p99_ms\":%.3f,\"svc_p50_ms\":%.3f,\"svc_p99_ms\":%.3f,"
	       "\"body_bytes\":%llu,\"body_bytes_per_s\":%.0f,"
	       "\"status_2xx\":%lld,\"status_4xx\":%lld,\"status_5xx\":%lld}\n",
	       rate, measured, errors, secs, secs > 0 ? (double)lat.n / secs : 0,
	       late, max_backlog, not_sent,
	       quantile_ms(&lat, 0.5), quantile_ms(&lat, 0.9), quantile_ms(&lat, 0.99),
	       quantile_ms(&lat, 1.0), quantile_ms(&ttfb, 0.5), quantile_ms(&ttfb, 0.99),
	       quantile_ms(&svc, 0.5), quantile_ms(&svc, 0.99),
	       body_bytes, secs > 0 ? (double)body_bytes / secs : 0,
	       statuses[2], statuses[4], statuses[5]);
}

/* The loop's base; open loop's timer needs finer than epoll's 1 ms, no
 * timer slack (a timer is 50 us late by default), and deadlines from the
 * clock, not from the loop turn's cached time. */
static struct event_base *
new_base(void)
{
	struct event_config *cfg;
	struct event_base *b;

	if (rate <= 0)
		return event_base_new();
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);	/* not 50 us late */
	cfg = event_config_new();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME);	/* else it fires early */
	b = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return b;
}

static void
usage(void)
{
	fprintf(stderr, "usage: loadgen -u http://HOST:PORT/PATH [-m METHOD] [-b BODY_FILE] [-H 'N: v']...\n"
			"  [-c CONNS] [-d SECONDS] [-w WARMUP_SECONDS] [-n REQUESTS] [-r RATE] [--idle]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "idle", no_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	const char *url = NULL, *method = "GET", *body_file = NULL, *headers[MAX_HEADERS];
	double duration = 10, warmup = 0;
	struct http_parser_url u;
	struct evbuffer *b;
	struct event *tick, *in_ev = NULL;
	struct timeval one = { 0, 100000 };
	struct rlimit rl;
	char *body = NULL, hostport[300], target[2048];
	size_t body_len = 0;
	long long not_sent;
	int nh = 0, o;

	nconns = 32;
	while ((o = getopt_long(argc, argv, "u:m:b:H:c:d:w:n:r:", opts, NULL)) != -1) {
		switch (o) {
		case 'u': url = optarg; break;
		case 'm': method = optarg; break;
		case 'b': body_file = optarg; break;
		case 'H': if (nh < MAX_HEADERS) headers[nh++] = optarg; break;
		case 'c': nconns = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'n': max_requests = atoll(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'i': idle_mode = 1; break;
		default: usage();
		}
	}
	if (!url || nconns < 1 || rate < 0 || (rate > 0 && idle_mode))
		usage();
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
	    !(u.field_set & (1 << UF_PORT)))
		usage();
	snprintf(hostport, sizeof(hostport), "%.*s:%u", (int)u.field_data[UF_HOST].len,
		 url + u.field_data[UF_HOST].off, u.port);
	snprintf(target, sizeof(target), "%s", (u.field_set & (1 << UF_PATH)) ? url + u.field_data[UF_PATH].off : "/");
	addrlen = sizeof(addr);
	if (evutil_parse_sockaddr_port(hostport, (struct sockaddr *)&addr, &addrlen) < 0)
		usage();
	if (body_file)
		body = read_file(body_file, &body_len);
	b = evbuffer_new();
	evbuffer_add_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, hostport);
	for (int i = 0; i < nh; i++)
		evbuffer_add_printf(b, "%s\r\n", headers[i]);
	if (body || strcmp(method, "POST") == 0)
		evbuffer_add_printf(b, "Content-Length: %zu\r\n", body_len);
	evbuffer_add(b, "\r\n", 2);
	if (body_len)
		evbuffer_add(b, body, body_len);
	request_len = evbuffer_get_length(b);
	request = malloc(request_len);
	evbuffer_remove(b, request, request_len);
	evbuffer_free(b);
	free(body);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	settings.on_body = on_body;
	settings.on_message_complete = on_complete;
	base = new_base();
	conns = calloc((size_t)nconns, sizeof(*conns));
	idle = calloc((size_t)nconns, sizeof(*idle));
	sched_ev = evtimer_new(base, sched_cb, NULL);
	if (!base || !conns || !idle || !sched_ev) {
		fprintf(stderr, "loadgen: out of memory\n");
		return 1;
	}
	t_start = now_s();
	t_measure = t_start + warmup;
	t_end = t_measure + duration;
	for (int i = 0; i < nconns; i++)
		conns[i].index = i;
	if (idle_mode) {
		t_measure = t_end = t_start + duration;
		in_ev = event_new(base, STDIN_FILENO, EV_READ | EV_PERSIST, stdin_cb, NULL);
		event_add(in_ev, NULL);
		idle_progress();
	} else {
		for (int i = 0; i < nconns; i++)
			conn_start(&conns[i]);
	}
	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &one);
	event_base_dispatch(base);
	not_sent = rate > 0 ? unsent() : 0;
	if (max_requests > 0)
		t_end = t_last;
	stopping = 1;
	for (int i = 0; i < nconns; i++)
		conn_reset(&conns[i]);
	if (!idle_mode) {
		double secs = t_end - t_measure;

		samples_sort(&lat);
		samples_sort(&ttfb);
		samples_sort(&svc);
		if (rate > 0)
			print_open(secs, not_sent);
		else
			print_closed(secs);
	}
	free(conns);
	free(idle);
	free(svc.v);
	event_free(sched_ev);
	free(request);
	free(lat.v);
	free(ttfb.v);
	event_free(tick);
	if (in_ev)
		event_free(in_ev);
	event_base_free(base);
	return 0;
}
