/*
 * agoractl simulate [--days N] [--seed S] [--rate EVENTS_PER_HOUR] [--end YYYY-MM-DD]
 *                   [--wait SECONDS] [--force]
 *
 * Months of realistic marketplace traffic for demos and the dashboards,
 * written through the same path as real traffic: usage events in the
 * router's JSON format are XADDed to the Redis stream `usage`, and
 * agora-billing bills them (events, ledger, rollups). A few simulated
 * accounts (sim-*), keys and apps are created and topped up through the
 * ledger so their credits cover their usage. Deterministic for a seed and
 * a period (--end fixes the period: [end - days, end), UTC; default now).
 * Synchronous libpq and hiredis: agoractl is not an event loop.
 */
#ifndef AGORA_SIMULATE_H
#define AGORA_SIMULATE_H

#include <stdint.h>

#include <libpq-fe.h>

#include "conf.h"

/* Credits an account (ledger top-up) dated `at` (NULL: now); agoractl's
 * own function, which exits on a database error. */
typedef void (*sim_credit_fn)(const char *account_id, int64_t nusd, const char *note, const char *at);

/* argv[0] is "simulate". Returns the exit status: 0, 1 (an error, said on
 * stderr) or 2 (bad usage). */
int ctl_simulate(PGconn *db, const struct agora_conf *conf, sim_credit_fn credit, int argc, char **argv);

#endif
