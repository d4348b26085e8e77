/*
 * agoractl partitions: the monthly partitions of usage_events (and of any
 * table partitioned the same way, <table>_YYYYMM), and their retention:
 * export to a verified archive, detach, drop (deploy/postgres.md).
 * Synchronous libpq, like the rest of agoractl; safe to rerun after a crash
 * at any step.
 */
#ifndef AGORA_CTL_PARTITIONS_H
#define AGORA_CTL_PARTITIONS_H

#include <libpq-fe.h>

/* argv[0] is "partitions". default_keep: retention_months (0: none).
 * Returns the exit status: 0, 1 (an error, said on stderr) or 2 (bad usage:
 * the caller prints the usage). */
int ctl_partitions(PGconn *db, int default_keep, int argc, char **argv);

#endif
