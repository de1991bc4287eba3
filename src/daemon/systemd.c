/* What scardd does with the sockets and notifications of systemd (systemd.h). */
#include "systemd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "systemd_proto.h"

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
	int n = systemd_proto_listen_fds(out, cap);
	if (n > 0 && (size_t)n > cap) {
		log_crit("systemd passed %d sockets; scardd serves at most %zu; not starting", n,
			 cap);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		struct inherited_socket *s = &out[i];
		if (!check_socket(s) || !prepare_fd(s->fd))
			return -1;
		log_info("socket %s from systemd (descriptor %d, %s; %s)", s->path, s->fd,
			 s->name[0] ? s->name : "no name", systemd_proto_name);
	}
	return n;
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

void systemd_notify_init(void)
{
	systemd_proto_notify_init();
}

static void notify(bool last, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notify(bool last, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	int err = systemd_proto_notify(msg, last);
	if (err < 0)
		log_error("cannot notify systemd (%.*s): %s", (int)strcspn(msg, "\n"), msg,
			  strerror(-err));
}

void systemd_notify_ready(size_t readers, size_t sockets, bool detached)
{
	if (detached)
		notify(false, "READY=1\nMAINPID=%d\nSTATUS=Serving %zu reader(s) on %zu socket(s)",
		       (int)getpid(), readers, sockets);
	else
		notify(false, "READY=1\nSTATUS=Serving %zu reader(s) on %zu socket(s)", readers,
		       sockets);
}

void systemd_notify_stopping(void)
{
	notify(true, "STOPPING=1\nSTATUS=Stopping");
}
