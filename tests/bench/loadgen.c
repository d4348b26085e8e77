/*
 * loadgen: the benchmark's own HTTP/1.1 load generator (libevent +
 * http_parser), for what wrk does not measure: time to the first body byte
 * of a streamed answer, body bytes per second, and connections held open
 * without a request. One process, one loop; every connection keeps one
 * request in flight on a keep-alive connection (closed loop).
 *
 *   loadgen -u http://127.0.0.1:PORT/path [-m POST] [-b BODY_FILE]
 *           [-H 'Name: value']... [-c CONNS] [-d SECONDS] [-w WARMUP_SECONDS]
 *           [-n REQUESTS]           load: one JSON line of figures on stdout
 *   loadgen -u URL --idle -c CONNS  open CONNS connections, print
 *           {"connected":N}, hold them until stdin closes (or -d), then exit
 *
 * Latency is from the request's first byte written to the answer's last
 * byte read; ttfb to the first body byte (for SSE: the first event). A
 * benchmark tool, not a test: it asserts nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct samples {
	uint32_t *v;		/* microseconds */
	size_t n, cap;
};

struct conn {
	struct bufferevent *bev;
	http_parser parser;
	double t_sent, t_first;
	int got_first, complete, connected;
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
static struct samples lat, ttfb;
static int stopping;
static http_parser_settings settings;

static void conn_start(struct conn *c);

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

static void
send_request(struct conn *c)
{
	if (measuring_over()) {
		conn_reset(c);
		return;
	}
	sent++;
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	c->got_first = c->complete = 0;
	c->t_sent = now_s();
	bufferevent_write(c->bev, request, request_len);
}

static void
answer_done(struct conn *c)
{
	double t = now_s();
	int st = c->parser.status_code;

	done_requests++;
	if (t > t_last)
		t_last = t;
	if (c->t_sent >= t_measure && (max_requests > 0 || t <= t_end)) {
		measured++;
		statuses[st >= 100 && st < 600 ? st / 100 : 0]++;
		if (st >= 200 && st < 300) {
			sample_add(&lat, t - c->t_sent);
			sample_add(&ttfb, (c->got_first ? c->t_first : t) - c->t_sent);
		} else {
			errors++;
		}
	}
	if (!http_should_keep_alive(&c->parser)) {
		conn_reset(c);
		conn_start(c);
		return;
	}
	send_request(c);
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
			if (c->t_sent >= t_measure)
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
		send_request(c);
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
	if (c->t_sent >= t_measure && !idle_mode)
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
	c->t_sent = 0;
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
usage(void)
{
	fprintf(stderr, "usage: loadgen -u http://HOST:PORT/PATH [-m METHOD] [-b BODY_FILE] [-H 'N: v']...\n"
			"  [-c CONNS] [-d SECONDS] [-w WARMUP_SECONDS] [-n REQUESTS] [--idle]\n");
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
	int nh = 0, o;

	nconns = 32;
	while ((o = getopt_long(argc, argv, "u:m:b:H:c:d:w:n:", opts, NULL)) != -1) {
		switch (o) {
		case 'u': url = optarg; break;
		case 'm': method = optarg; break;
		case 'b': body_file = optarg; break;
		case 'H': if (nh < MAX_HEADERS) headers[nh++] = optarg; break;
		case 'c': nconns = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'n': max_requests = atoll(optarg); break;
		case 'i': idle_mode = 1; break;
		default: usage();
		}
	}
	if (!url || nconns < 1)
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
	base = event_base_new();
	conns = calloc((size_t)nconns, sizeof(*conns));
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
	if (max_requests > 0)
		t_end = t_last;
	stopping = 1;
	for (int i = 0; i < nconns; i++)
		conn_reset(&conns[i]);
	if (!idle_mode) {
		double secs = t_end - t_measure;

		qsort(lat.v, lat.n, sizeof(*lat.v), cmp_u32);
		qsort(ttfb.v, ttfb.n, sizeof(*ttfb.v), cmp_u32);
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
	free(conns);
	free(request);
	free(lat.v);
	free(ttfb.v);
	event_free(tick);
	if (in_ev)
		event_free(in_ev);
	event_base_free(base);
	return 0;
}
