/*
 * money: see money.h. Exact integer arithmetic and decimal formatting for
 * prices and amounts; used by the router (costs), billing and agoractl.
 */
#include "money.h"

#include <string.h>

int64_t
money_cost_nusd(int64_t tokens, int64_t price_uusd_per_mtok)
{
	__int128 v;

	if (tokens < 0 || price_uusd_per_mtok < 0)
		return -1;
	v = (__int128)tokens * price_uusd_per_mtok / 1000;
	if (v > INT64_MAX)
		return -1;
	return (int64_t)v;
}

int
money_format_scaled(int64_t value, int scale, char *buf, size_t len)
{
	char tmp[32], *digits = tmp + sizeof(tmp);
	uint64_t mag;
	int nd, intlen, pos = 0, end;

	if (scale < 0 || scale > 18 || len < 48)
		return -1;
	mag = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
	do {			/* at least scale + 1 digits, zeros in front ("%0*llu") */
		*--digits = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag || tmp + sizeof(tmp) - digits < scale + 1);
	nd = (int)(tmp + sizeof(tmp) - digits);
	intlen = nd - scale;
	if (value < 0)
		buf[pos++] = '-';
	memcpy(buf + pos, digits, (size_t)intlen);
	pos += intlen;
	end = nd;
	while (end > intlen && digits[end - 1] == '0')
		end--;
	if (end > intlen) {
		buf[pos++] = '.';
		memcpy(buf + pos, digits + intlen, (size_t)(end - intlen));
		pos += end - intlen;
	}
	buf[pos] = '\0';
	return pos;
}

int
money_format_usd(int64_t nusd, char *buf, size_t len)
{
	return money_format_scaled(nusd, 9, buf, len);
}

int
money_format_price_per_token(int64_t uusd_per_mtok, char *buf, size_t len)
{
	return money_format_scaled(uusd_per_mtok, 12, buf, len);
}

int
money_parse_usd(const char *s, int64_t *nusd_out)
{
	__int128 v = 0;
	int neg = 0, frac = -1, digits = 0;

	if (*s == '-') {
		neg = 1;
		s++;
	}
	for (; *s; s++) {
		if (*s == '.') {
			if (frac >= 0)
				return -1;
			frac = 0;
			continue;
		}
		if (*s < '0' || *s > '9')
			return -1;
		if (frac >= 0 && ++frac > 9)
			return -1;
		v = v * 10 + (*s - '0');
		digits++;
		if (v > INT64_MAX)
			return -1;
	}
	if (digits == 0)
		return -1;
	for (int i = frac < 0 ? 0 : frac; i < 9; i++) {
		v *= 10;
		if (v > INT64_MAX)
			return -1;
	}
	*nusd_out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}
