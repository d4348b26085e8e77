/*
 * agoractl reconcile: import a provider's usage/invoice CSV and report it
 * against our usage (README, "Reconciliation"). Synchronous libpq, like the
 * rest of agoractl.
 */
#ifndef AGORA_RECONCILE_CMD_H
#define AGORA_RECONCILE_CMD_H

#include <libpq-fe.h>

/* argv[0] is "reconcile". Returns the exit status: 0, 1 (an error, said on
 * stderr) or 2 (bad usage: the caller prints the usage). */
int ctl_reconcile(PGconn *db, int argc, char **argv);

#endif
