/*
 * lsock: listening sockets that outlive a process. A socket is bound here,
 * or inherited from systemd socket activation or from the previous binary
 * (the same protocol: LISTEN_PID = this pid, LISTEN_FDS = n, the sockets
 * are descriptors 3 .. 3+n-1), and handed to a new binary on upgrade: the
 * socket is never closed, so no connection waiting in its accept queue is
 * lost. The new binary says it is serving through a pipe (AGORA_UPGRADE_FD)
 * and, under systemd (NOTIFY_SOCKET), with MAINPID= and READY=1.
 */
#ifndef AGORA_LSOCK_H
#define AGORA_LSOCK_H

#include <stddef.h>
#include <sys/types.h>

#define LSOCK_MAX 64

/* A listening TCP socket on addr ("host:port"), non-blocking, close-on-exec;
 * reuseport: SO_REUSEPORT. -1 on error (in err). */
int lsock_bind(const char *addr, int reuseport, char *err, size_t errlen);
/* The sockets passed by systemd or the previous binary (at most max):
 * their count, 0 when none. Clears the environment variables. */
int lsock_inherited(int *fds, int max);
/* Starts argv[0] (an absolute path) with the n sockets and the write end
 * of a pipe whose read end is *ready_fd (non-blocking; a byte when the new
 * binary serves, EOF when it failed). Returns the child's pid, -1 on error. */
pid_t lsock_exec(char *const argv[], const int *fds, int n, int *ready_fd);
/* The new binary serves: tells the previous one (AGORA_UPGRADE_FD) and
 * systemd (NOTIFY_SOCKET: MAINPID, READY=1). Harmless when neither is set. */
void lsock_ready(void);

#endif
