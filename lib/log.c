/*
 * log: stderr logging with a level filter. Formats one whole line per call so
 * lines from several processes sharing a file do not interleave; access lines
 * may be gathered in a buffer written whole (see log.h).
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define LOG_LINE_MAX 2048
#define LOG_BUF_SIZE (32 * 1024)

static const char *log_prog = "agora";
static enum log_level log_level_cur = LOG_INFO;
static const char *const log_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
static pid_t log_pid;			/* 0: not known in this process yet */
static pid_t log_who_pid;		/* the pid log_prefix's names hold (0: none) */
static time_t log_sec = -1;		/* the second log_stamp holds */
static char log_stamp[64];		/* "YYYY-MM-DDTHH:MM:SS" */

static char log_buf[LOG_BUF_SIZE];	/* access lines not yet written */
static size_t log_buf_len;
static struct event *log_flush_ev;	/* non-NULL: access lines are buffered */

static void
log_forked(void)
{
	log_pid = 0;
	log_buf_len = 0;	/* the parent writes them */
}

void
log_init(const char *progname, enum log_level level)
{
	static int once;

	log_prog = progname;
	log_level_cur = level;
	log_who_pid = 0;
	if (!once++)
		pthread_atfork(NULL, NULL, log_forked);
}

int
log_level_parse(const char *s)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

enum log_level
log_get_level(void)
{
	return log_level_cur;
}

static void
log_out(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void
log_flush(void)
{
	if (log_buf_len) {
		log_out(log_buf, log_buf_len);
		log_buf_len = 0;
	}
}

/* Writes a line's prefix into out (LOG_LINE_MAX bytes): "time prog[pid]
 * LEVEL: ". The time is formatted once a second, the rest once a process
 * (printf was a third of an access line's cost). Returns its length. */
static size_t
log_prefix(char *out, enum log_level level)
{
	static char who[4][96];		/* "Z prog[pid] LEVEL: " */
	static size_t who_len[4];
	struct timeval tv;
	unsigned ms;
	size_t n;

	gettimeofday(&tv, NULL);
	if (tv.tv_sec != log_sec) {
		struct tm tm;

		gmtime_r(&tv.tv_sec, &tm);
		snprintf(log_stamp, sizeof(log_stamp), "%04d-%02d-%02dT%02d:%02d:%02d",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		log_sec = tv.tv_sec;
	}
	if (!log_pid)
		log_pid = getpid();
	if (log_who_pid != log_pid) {
		for (int i = 0; i < 4; i++)
			who_len[i] = (size_t)snprintf(who[i], sizeof(who[i]), "Z %.40s[%d] %s: ", log_prog,
						      (int)log_pid, log_names[i]);
		log_who_pid = log_pid;
	}
	n = strlen(log_stamp);
	memcpy(out, log_stamp, n);
	ms = (unsigned)(tv.tv_usec / 1000);
	out[n++] = '.';
	out[n++] = (char)('0' + ms / 100);
	out[n++] = (char)('0' + ms / 10 % 10);
	out[n++] = (char)('0' + ms % 10);
	memcpy(out + n, who[level], who_len[level]);
	return n + who_len[level];
}

/* Formats one line into out (LOG_LINE_MAX bytes); returns its length, '\n'
 * included. */
static size_t
log_format(char *out, enum log_level level, const char *fmt, va_list ap)
{
	int n = (int)log_prefix(out, level), m;

	m = vsnprintf(out + n, LOG_LINE_MAX - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > LOG_LINE_MAX - 2)
		n = LOG_LINE_MAX - 2;
	out[n++] = '\n';
	return (size_t)n;
}

void
log_write(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;
	size_t n;

	if (level > log_level_cur)
		return;
	va_start(ap, fmt);
	n = log_format(line, level, fmt, ap);
	va_end(ap);
	log_flush();		/* buffered access lines came first */
	log_out(line, n);
}

void
log_access(const char *msg, size_t len)
{
	char line[LOG_LINE_MAX], *out = line;
	size_t n;

	if (LOG_INFO > log_level_cur)
		return;
	if (log_flush_ev) {
		if (sizeof(log_buf) - log_buf_len < LOG_LINE_MAX)
			log_flush();
		out = log_buf + log_buf_len;
	}
	n = log_prefix(out, LOG_INFO);
	if (len > LOG_LINE_MAX - n - 1)
		len = LOG_LINE_MAX - n - 1;
	memcpy(out + n, msg, len);
	n += len;
	out[n++] = '\n';
	if (log_flush_ev)
		log_buf_len += n;
	else
		log_out(line, n);
}

static void
log_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_flush();
}

int
log_buffer(struct event_base *base, int flush_ms)
{
	struct timeval tv = { flush_ms / 1000, (flush_ms % 1000) * 1000 };
	static int once;

	log_unbuffer();
	if (!(log_flush_ev = event_new(base, -1, EV_PERSIST, log_flush_cb, NULL)))
		return -1;
	if (event_add(log_flush_ev, &tv) < 0) {
		event_free(log_flush_ev);
		log_flush_ev = NULL;
		return -1;
	}
	if (!once++)
		atexit(log_flush);
	return 0;
}

void
log_unbuffer(void)
{
	log_flush();
	if (log_flush_ev) {
		event_free(log_flush_ev);
		log_flush_ev = NULL;
	}
}
