/*
 * lsock: binding, inheriting and handing over listening sockets (lsock.h).
 */
#include "lsock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/util.h>

#include "log.h"

#define LSOCK_BACKLOG 1024
#define LSOCK_FIRST 3			/* SD_LISTEN_FDS_START */

int
lsock_bind(const char *addr, int reuseport, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss), fd = -1, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) < 0) {
		snprintf(err, errlen, "bad listen address '%s'", addr);
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen) < 0 || listen(fd, LSOCK_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "listen on %s: %s", addr, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int
lsock_inherited(int *fds, int max)
{
	const char *pid = getenv("LISTEN_PID"), *nfd = getenv("LISTEN_FDS");
	int n = nfd ? atoi(nfd) : 0;

	if (!pid || atol(pid) != (long)getpid() || n <= 0)
		n = 0;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n > max) {
		log_warn("%d inherited sockets, using the first %d", n, max);
		n = max;
	}
	for (int i = 0; i < n; i++) {
		fds[i] = LSOCK_FIRST + i;
		fcntl(fds[i], F_SETFD, FD_CLOEXEC);
		evutil_make_socket_nonblocking(fds[i]);
	}
	return n;
}

/* In the child: the sockets at 3.., the pipe after them, nothing else. */
static void
lsock_child(char *const argv[], const int *fds, int n, int wfd)
{
	int tmp[LSOCK_MAX + 1];
	char v[32];

	for (int i = 0; i <= n; i++)	/* out of the way of 3..3+n first */
		if ((tmp[i] = fcntl(i < n ? fds[i] : wfd, F_DUPFD, LSOCK_FIRST + n + 1)) < 0)
			_exit(127);
	for (int i = 0; i <= n; i++)
		if (dup2(tmp[i], LSOCK_FIRST + i) < 0)
			_exit(127);
	if (syscall(SYS_close_range, LSOCK_FIRST + n + 1, ~0U, 0) != 0) {	/* before Linux 5.9 */
		long max = sysconf(_SC_OPEN_MAX);

		for (long fd = LSOCK_FIRST + n + 1; fd < (max > 0 && max < 1048576 ? max : 1048576); fd++)
			close((int)fd);
	}
	snprintf(v, sizeof(v), "%d", n);
	setenv("LISTEN_FDS", v, 1);
	snprintf(v, sizeof(v), "%d", (int)getpid());
	setenv("LISTEN_PID", v, 1);
	snprintf(v, sizeof(v), "%d", LSOCK_FIRST + n);
	setenv("AGORA_UPGRADE_FD", v, 1);
	execv(argv[0], argv);
	_exit(127);
}

pid_t
lsock_exec(char *const argv[], const int *fds, int n, int *ready_fd)
{
	int p[2];
	pid_t pid;

	if (n > LSOCK_MAX || pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if ((pid = fork()) == 0)
		lsock_child(argv, fds, n, p[1]);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -1;
	}
	evutil_make_socket_nonblocking(p[0]);
	*ready_fd = p[0];
	return pid;
}

/* sd_notify(3)'s datagram, without libsystemd. */
static void
lsock_notify_systemd(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char msg[64];
	int fd, n;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, strlen(path));
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';	/* abstract namespace */
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	n = snprintf(msg, sizeof(msg), "MAINPID=%d\nREADY=1", (int)getpid());
	sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
	close(fd);
}

void
lsock_ready(void)
{
	const char *v = getenv("AGORA_UPGRADE_FD");

	lsock_notify_systemd();	/* first: the old main process is about to leave */
	if (v) {
		int fd = atoi(v);

		if (fd > 2 && write(fd, "1", 1) < 0)
			log_warn("upgrade: cannot tell the previous process: %s", strerror(errno));
		if (fd > 2)
			close(fd);
		unsetenv("AGORA_UPGRADE_FD");
	}
}
