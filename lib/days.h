/*
 * days: UTC calendar dates as day numbers (days since 1970-01-01), for the
 * analytics' date ranges and time buckets. Weeks start on Monday (ISO).
 * Pure functions; days_today() is the only one reading the clock.
 */
#ifndef AGORA_DAYS_H
#define AGORA_DAYS_H

#include <stdint.h>

enum days_interval { DAYS_DAY, DAYS_WEEK, DAYS_MONTH };

#define DAYS_DATE_LEN 11	/* "YYYY-MM-DD" and its NUL */
#define DAYS_MINUTE_LEN 21	/* "YYYY-MM-DDTHH:MM:00Z" and its NUL */

int32_t days_from_civil(int y, int m, int d);
void days_to_civil(int32_t days, int *y, int *m, int *d);
/* Strictly "YYYY-MM-DD", a real calendar date, years 1000-9999. 0 or -1. */
int days_parse(const char *s, int32_t *out);
void days_format(int32_t days, char out[DAYS_DATE_LEN]);
/* Today's UTC date. */
int32_t days_today(void);
/* 0 Monday ... 6 Sunday. */
int days_weekday(int32_t days);

/* "day", "week", "month"; -1 when unknown. */
int days_interval_parse(const char *s);
const char *days_interval_name(enum days_interval iv);
/* The first day of the bucket holding `days`. */
int32_t days_bucket(int32_t days, enum days_interval iv);
/* The first day of the bucket after the one starting at `start`. */
int32_t days_bucket_next(int32_t start, enum days_interval iv);
/* The starts of the buckets covering [from, to) (the first may begin
 * before `from`), into out. Returns their count, or -1 when there are more
 * than max (or from >= to). */
int days_buckets(int32_t from, int32_t to, enum days_interval iv, int32_t *out, int max);
/* The whole calendar months inside [from, to): [*m1, *m2), both first days
 * of months; m1 = m2 = from when there is none. */
void days_whole_months(int32_t from, int32_t to, int32_t *m1, int32_t *m2);
/* The months [*m1, *m2) whose monthly rollups cover [from, to) most
 * cheaply: the whole months inside it, plus an edge month when the days of
 * it outside the range (to subtract) are fewer than those inside (to add).
 * Then [from, to) = months [m1, m2) + days of [from, to) outside them - days
 * of [m1, m2) outside [from, to). m1 = m2 = from when no month helps. */
void days_month_cover(int32_t from, int32_t to, int32_t *m1, int32_t *m2);
/* Index of the bucket holding `days` among starts[0..n) (ascending), or -1. */
int days_bucket_index(const int32_t *starts, int n, int32_t days);

/* A Unix minute (seconds / 60) as ISO 8601 UTC: "2025-01-31T23:59:00Z". */
void days_iso_minute(int64_t unix_minute, char out[DAYS_MINUTE_LEN]);

#endif
