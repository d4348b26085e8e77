/*
 * days: civil-date arithmetic (see days.h), after Howard Hinnant's
 * days_from_civil / civil_from_days algorithms (proleptic Gregorian).
 */
#include "days.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int32_t
days_from_civil(int y, int m, int d)
{
	int era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int32_t)(era * 146097 + doe - 719468);
}

void
days_to_civil(int32_t days, int *y, int *m, int *d)
{
	int32_t z = days + 719468;
	int32_t era = (z >= 0 ? z : z - 146096) / 146097;
	int32_t doe = z - era * 146097;
	int32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int32_t mp = (5 * doy + 2) / 153;

	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

static int
digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int
days_parse(const char *s, int32_t *out)
{
	int y, m, d, cy, cm, cd;
	int32_t z;

	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) < 0 ||
	    digits(s + 5, 2, &m) < 0 || digits(s + 8, 2, &d) < 0)
		return -1;
	if (y < 1000 || m < 1 || m > 12 || d < 1 || d > 31)
		return -1;
	z = days_from_civil(y, m, d);
	days_to_civil(z, &cy, &cm, &cd);
	if (cy != y || cm != m || cd != d)	/* e.g. 2025-02-30 */
		return -1;
	*out = z;
	return 0;
}

void
days_format(int32_t days, char out[DAYS_DATE_LEN])
{
	int y, m, d;

	days_to_civil(days, &y, &m, &d);
	snprintf(out, DAYS_DATE_LEN, "%04u-%02u-%02u", (unsigned)y % 10000u, (unsigned)m % 100u,
		 (unsigned)d % 100u);
}

int32_t
days_today(void)
{
	time_t t = time(NULL);

	return (int32_t)(t >= 0 ? t / 86400 : (t - 86399) / 86400);
}

int
days_weekday(int32_t days)
{
	int w = (int)((days + 3) % 7);	/* 1970-01-01 was a Thursday */

	return w < 0 ? w + 7 : w;
}

int
days_interval_parse(const char *s)
{
	if (!s)
		return -1;
	if (strcmp(s, "day") == 0)
		return DAYS_DAY;
	if (strcmp(s, "week") == 0)
		return DAYS_WEEK;
	if (strcmp(s, "month") == 0)
		return DAYS_MONTH;
	return -1;
}

const char *
days_interval_name(enum days_interval iv)
{
	return iv == DAYS_WEEK ? "week" : iv == DAYS_MONTH ? "month" : "day";
}

int32_t
days_bucket(int32_t days, enum days_interval iv)
{
	int y, m, d;

	switch (iv) {
	case DAYS_WEEK:
		return days - days_weekday(days);
	case DAYS_MONTH:
		days_to_civil(days, &y, &m, &d);
		return days_from_civil(y, m, 1);
	default:
		return days;
	}
}

int32_t
days_bucket_next(int32_t start, enum days_interval iv)
{
	int y, m, d;

	switch (iv) {
	case DAYS_WEEK:
		return days_bucket(start, iv) + 7;
	case DAYS_MONTH:
		days_to_civil(start, &y, &m, &d);
		return m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1);
	default:
		return start + 1;
	}
}

int
days_buckets(int32_t from, int32_t to, enum days_interval iv, int32_t *out, int max)
{
	int n = 0;

	if (from >= to)
		return -1;
	for (int32_t b = days_bucket(from, iv); b < to; b = days_bucket_next(b, iv)) {
		if (n >= max)
			return -1;
		out[n++] = b;
	}
	return n;
}

void
days_whole_months(int32_t from, int32_t to, int32_t *m1, int32_t *m2)
{
	int32_t a = days_bucket(from, DAYS_MONTH), b = days_bucket(to, DAYS_MONTH);

	if (a < from)
		a = days_bucket_next(a, DAYS_MONTH);
	*m1 = a < b ? a : from;
	*m2 = a < b ? b : from;
}

void
days_month_cover(int32_t from, int32_t to, int32_t *m1, int32_t *m2)
{
	int32_t a = days_bucket(from, DAYS_MONTH), b = days_bucket(to, DAYS_MONTH);
	int32_t an = days_bucket_next(a, DAYS_MONTH), bn = days_bucket_next(b, DAYS_MONTH);

	if (a == b) {				/* within one month */
		if (an - a - (to - from) < to - from)
			b = an;
	} else {
		if (a < from && from - a >= an - from)	/* the head month: add its days */
			a = an;
		if (b < to && bn - to < to - b)		/* the tail month: subtract its rest */
			b = bn;
	}
	*m1 = a < b ? a : from;
	*m2 = a < b ? b : from;
}

int
days_bucket_index(const int32_t *starts, int n, int32_t days)
{
	int lo = 0, hi = n - 1, found = -1;

	while (lo <= hi) {	/* the last start <= days */
		int mid = lo + (hi - lo) / 2;

		if (starts[mid] <= days) {
			found = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return found;
}

void
days_iso_minute(int64_t unix_minute, char out[DAYS_MINUTE_LEN])
{
	int64_t day = unix_minute >= 0 ? unix_minute / 1440 : (unix_minute - 1439) / 1440;
	int mod = (int)(unix_minute - day * 1440);
	int y, m, d;

	days_to_civil((int32_t)day, &y, &m, &d);
	snprintf(out, DAYS_MINUTE_LEN, "%04u-%02u-%02uT%02u:%02u:00Z", (unsigned)y % 10000u, (unsigned)m % 100u,
		 (unsigned)d % 100u, (unsigned)(mod / 60) % 100u, (unsigned)mod % 60u);
}
