/*
 * log: one logging macro family for every Agora process. Lines go to stderr,
 * prefixed with time, level and process name, one write() per line. Never log
 * prompt or completion text, nor API keys.
 *
 * Access lines (log_access: one per proxied request, at INFO) may be held in a
 * 32 KiB buffer instead (log_buffer), written when it fills, every flush_ms,
 * before any other line (order is kept) and at exit: what nginx's
 * `access_log ... buffer= flush=` does. A process killed by SIGKILL loses at
 * most flush_ms of access lines; every other line is written at once.
 */
#ifndef AGORA_LOG_H
#define AGORA_LOG_H

#include <stddef.h>

struct event_base;

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_init(const char *progname, enum log_level level);
/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int log_level_parse(const char *s);
enum log_level log_get_level(void);
void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* An access line (INFO), msg[0..len) written by the caller (printf was a
 * tenth of a proxied request): buffered once log_buffer() was called. */
void log_access(const char *msg, size_t len);
/* Buffers access lines on this loop, written at least every flush_ms.
 * -1 when the timer cannot be made (lines are then written at once). */
int log_buffer(struct event_base *base, int flush_ms);
/* Writes the buffered lines and stops buffering (before the loop is freed). */
void log_unbuffer(void);

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
