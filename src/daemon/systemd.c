#include "systemd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* sd_listen_fds(3): the first passed descriptor */
#define LISTEN_FDS_START 3

static void unset_listen_env(void)
{
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

static bool parse_long(const char *text, long min, long max, long *out)
{
	if (!text || *text < '0' || *text > '9')
		return false;
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* The i-th colon-separated name of LISTEN_FDNAMES into out, or "". */
static void fd_name(const char *names, size_t i, char *out, size_t cap)
{
	out[0] = '\0';
	for (size_t k = 0; names && k < i; k++) {
		names = strchr(names, ':');
		if (names)
			names++;
	}
	if (!names)
		return;
	size_t len = strcspn(names, ":");
	snprintf(out, cap, "%.*s", (int)len, names);
}

/* What makes fd unfit to serve, or NULL: then addr and alen hold its address. */
static const char *socket_problem(int fd, struct sockaddr_un *addr, socklen_t *alen)
{
	if (fcntl(fd, F_GETFD) < 0)
		return "is not open";
	if (getsockname(fd, (struct sockaddr *)addr, alen) < 0)
		return "is not a socket";
	if (addr->sun_family != AF_UNIX)
		return "is not a Unix socket (a ListenStream= with a path is)";
	int value = 0;
	socklen_t len = sizeof(value);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) < 0 || value != SOCK_STREAM)
		return "is not a stream socket (ListenStream=)";
	if (*alen <= offsetof(struct sockaddr_un, sun_path) || addr->sun_path[0] == '\0')
		return "has no path (abstract or unnamed): clients find scardd by path";
	len = sizeof(value);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) < 0 || !value)
		return "is not listening (Accept=no is what scardd wants)";
	return NULL;
}

/* A listening AF_UNIX stream socket on a path: its path into s->path. */
static bool check_socket(struct inherited_socket *s)
{
	struct sockaddr_un addr;
	socklen_t alen = sizeof(addr);
	memset(&addr, 0, sizeof(addr));
	const char *problem = socket_problem(s->fd, &addr, &alen);
	if (problem) {
		log_crit("descriptor %d from systemd (%s) %s; not starting", s->fd,
			 s->name[0] ? s->name : "no name", problem);
		return false;
	}
	size_t plen = alen - offsetof(struct sockaddr_un, sun_path);
	if (plen >= sizeof(addr.sun_path))
		plen = sizeof(addr.sun_path) - 1;
	addr.sun_path[plen] = '\0';
	snprintf(s->path, sizeof(s->path), "%s", addr.sun_path);
	return true;
}

/* Close-on-exec for what drivers start; non-blocking for the accept loop. */
static bool prepare_fd(int fd)
{
	int fdfl = fcntl(fd, F_GETFD);
	int fl = fcntl(fd, F_GETFL);
	if (fdfl < 0 || fl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_crit("cannot set up descriptor %d from systemd: %s", fd, strerror(errno));
		return false;
	}
	return true;
}

int systemd_take_sockets(struct inherited_socket *out, size_t cap)
{
	const char *pid_text = getenv("LISTEN_PID");
	const char *fds_text = getenv("LISTEN_FDS");
	long pid, n;
	if (!pid_text || !fds_text) {
		unset_listen_env();
		return 0;
	}
	if (!parse_long(pid_text, 1, INT32_MAX, &pid) || pid != (long)getpid()) {
		/* meant for the process that started us (a wrapper that did not exec) */
		log_info("LISTEN_PID=%s is not scardd's pid %d: not taking the descriptors",
			 pid_text, (int)getpid());
		unset_listen_env();
		return 0;
	}
	if (!parse_long(fds_text, 0, INT32_MAX - LISTEN_FDS_START, &n)) {
		log_crit("LISTEN_FDS=%s from systemd is not a count; not starting", fds_text);
		unset_listen_env();
		return -1;
	}
	if ((size_t)n > cap) {
		log_crit("systemd passed %ld sockets; scardd serves at most %zu", n, cap);
		unset_listen_env();
		return -1;
	}
	/* names are only for log lines: ignored if their count is wrong */
	const char *names = getenv("LISTEN_FDNAMES");
	if (names) {
		size_t count = 1;
		for (const char *p = names; *p; p++)
			count += *p == ':';
		if (count != (size_t)n)
			names = NULL;
	}
	for (long i = 0; i < n; i++) {
		struct inherited_socket *s = &out[i];
		s->fd = LISTEN_FDS_START + (int)i;
		fd_name(names, (size_t)i, s->name, sizeof(s->name));
		if (!check_socket(s) || !prepare_fd(s->fd)) {
			unset_listen_env();
			return -1;
		}
		log_info("socket %s from systemd (descriptor %d, %s)", s->path, s->fd,
			 s->name[0] ? s->name : "no name");
	}
	unset_listen_env();
	return (int)n;
}

/* The same string, or the same socket file reached through another path. */
static bool same_socket(const char *a, const char *b)
{
	if (!strcmp(a, b))
		return true;
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && S_ISSOCK(sa.st_mode) &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool systemd_match_sockets(struct options *opts, const struct inherited_socket *inh, size_t n,
			   int fd_of[OPTIONS_MAX_SOCKETS])
{
	for (size_t i = 0; i < OPTIONS_MAX_SOCKETS; i++)
		fd_of[i] = -1;
	if (n == 0)
		return true;
	if (!opts->sockets_given)
		opts->n_sockets = 0; /* systemd chose the sockets, not the defaults */
	bool used[OPTIONS_MAX_SOCKETS] = { false };
	for (size_t i = 0; i < opts->n_sockets; i++) {
		for (size_t k = 0; k < n && fd_of[i] < 0; k++) {
			if (!used[k] && same_socket(opts->sockets[i].path, inh[k].path)) {
				used[k] = true;
				fd_of[i] = inh[k].fd;
			}
		}
		if (fd_of[i] < 0)
			log_info(
				"--socket %s is not among the sockets systemd passed: scardd binds "
				"it itself (it is there only while scardd runs)",
				opts->sockets[i].path);
	}
	for (size_t k = 0; k < n; k++) {
		if (used[k])
			continue;
		if (opts->n_sockets == OPTIONS_MAX_SOCKETS) {
			log_crit("systemd's sockets and --socket make more than %u sockets; not "
				 "starting",
				 OPTIONS_MAX_SOCKETS);
			return false;
		}
		socket_spec_default(&opts->sockets[opts->n_sockets], inh[k].path);
		fd_of[opts->n_sockets++] = inh[k].fd;
		if (opts->sockets_given)
			log_info("socket %s from systemd is named by no --socket: serving it with "
				 "default options",
				 inh[k].path);
	}
	return true;
}

/* ---- notifications ---- */

static struct sockaddr_un notify_addr;
static socklen_t notify_len; /* 0: no $NOTIFY_SOCKET */

void systemd_notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return;
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		log_error("NOTIFY_SOCKET=%s is not a Unix socket path or @name scardd can reach: "
			  "systemd will not hear that scardd is ready",
			  path);
		unsetenv("NOTIFY_SOCKET");
		return;
	}
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, len);
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0'; /* abstract: the name is the bytes after it */
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	unsetenv("NOTIFY_SOCKET");
}

static void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void notify(const char *fmt, ...)
{
	if (!notify_len)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
			     notify_len) != n)
		log_error("cannot notify systemd (%.*s): %s", (int)strcspn(msg, "\n"), msg,
			  strerror(errno));
	if (fd >= 0)
		close(fd);
}

void systemd_notify_ready(size_t readers, size_t sockets, bool detached)
{
	if (detached)
		notify("READY=1\nMAINPID=%d\nSTATUS=Serving %zu reader(s) on %zu socket(s)",
		       (int)getpid(), readers, sockets);
	else
		notify("READY=1\nSTATUS=Serving %zu reader(s) on %zu socket(s)", readers, sockets);
}

void systemd_notify_stopping(void)
{
	notify("STOPPING=1\nSTATUS=Stopping");
}
