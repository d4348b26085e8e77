/*
 * money: integer money arithmetic. Prices are micro-USD per million tokens
 * (uusd/Mtok); amounts are nano-USD (nusd). One token at P uusd/Mtok costs
 * P / 1000 nusd, so cost_nusd = tokens * P / 1000 (rounded down). No double
 * ever touches an amount; decimal strings are produced exactly.
 */
#ifndef AGORA_MONEY_H
#define AGORA_MONEY_H

#include <stddef.h>
#include <stdint.h>

/* Cost in nano-USD of `tokens` at `price_uusd_per_mtok`. Returns -1 when an
 * argument is negative or the result would overflow int64. */
int64_t money_cost_nusd(int64_t tokens, int64_t price_uusd_per_mtok);

/* Formats value / 10^scale as a plain decimal string ("0.0000008", "-1.5",
 * "12"), trailing zeros removed, at least one digit before the point. Returns
 * the length, or -1 if buf is too small (at least 48 bytes always suffices). */
int money_format_scaled(int64_t value, int scale, char *buf, size_t len);

/* Nano-USD as a USD decimal string, e.g. 1234 -> "0.000001234". */
int money_format_usd(int64_t nusd, char *buf, size_t len);

/* A price in uusd/Mtok as USD per token, e.g. 800000 -> "0.0000008". */
int money_format_price_per_token(int64_t uusd_per_mtok, char *buf, size_t len);

/* Parses a decimal USD string ("12.5", "0.000000001") into nano-USD exactly.
 * More than 9 decimals, signs other than a leading '-', or overflow: -1. */
int money_parse_usd(const char *s, int64_t *nusd_out);

#endif
