#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "event_loop.h"
#include "log.h"
#include "privileges.h"
#include "socket_spec.h"

struct listener {
	int fd;
	char *path;
	dev_t dev;
	ino_t ino;
	bool adopted; /* from systemd: the file stays when scardd stops */
	listener_accept_fn *fn;
	void *data;
	struct event_loop *loop;
	uint64_t pause_timer;
};

/* Creates dir if missing, open to every user whatever the umask (as /run/pcscd). */
static int make_dir(const char *dir)
{
	if (mkdir(dir, 0755) < 0)
		return errno == EEXIST ? 0 : -1;
	return chmod(dir, 0755);
}

static int make_parent_dirs(const char *path)
{
	char *dir = strdup(path);
	if (!dir)
		return -1;
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (make_dir(dir) < 0)
			goto fail;
		*p = '/';
	}
	if (make_dir(dir) < 0)
		goto fail;
	free(dir);
	return 0;
fail:
	log_error("cannot create directory %s: %s", dir, strerror(errno));
	free(dir);
	return -1;
}

static void fill_addr(struct sockaddr_un *addr, const char *path)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, path, strnlen(path, sizeof(addr->sun_path) - 1));
}

int listener_probe(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s exists and is not a socket; not touching it", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un addr;
	fill_addr(&addr, path);
	int rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	int err = errno;
	close(fd);
	if (rc == 0 || err == EAGAIN)
		return 1;
	return 0;
}

/* The file's group and mode come before listen(): no client connects in between. */
static int set_access(const char *path, mode_t mode, gid_t gid)
{
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) {
		log_crit("cannot give %s to group %u: %s", path, (unsigned)gid, strerror(errno));
		return -1;
	}
	if (chmod(path, mode) < 0) {
		log_crit("cannot set the mode of %s to %04o: %s", path, (unsigned)mode,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* Returns the listening fd and the socket file's identity, or -1. */
static int bind_and_listen(const char *path, mode_t mode, gid_t gid, struct stat *st)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_error("socket: %s", strerror(errno));
		return -1;
	}
	struct sockaddr_un addr;
	fill_addr(&addr, path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		log_crit("cannot bind %s: %s", addr.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	if (set_access(addr.sun_path, mode, gid) < 0) {
		unlink(addr.sun_path);
		close(fd);
		return -1;
	}
	if (stat(addr.sun_path, st) < 0 || listen(fd, SOMAXCONN) < 0) {
		log_crit("cannot listen on %s: %s", addr.sun_path, strerror(errno));
		unlink(addr.sun_path);
		close(fd);
		return -1;
	}
	return fd;
}

struct listener *listener_open(const struct socket_spec *spec)
{
	const char *path = spec->path;
	gid_t gid = (gid_t)-1;
	if (spec->group[0] && !privileges_group_id(spec->group, &gid)) {
		log_crit("socket %s: no such group '%s' (group= wants a group name or number)",
			 path, spec->group);
		return NULL;
	}
	if (make_parent_dirs(path) < 0)
		return NULL;
	switch (listener_probe(path)) {
	case 1:
		log_crit("another PC/SC daemon is already serving %s; not starting", path);
		return NULL;
	case -1: return NULL;
	default: break;
	}
	if (unlink(path) == 0)
		log_info("removed stale socket %s", path);

	struct stat st;
	int fd = bind_and_listen(path, (mode_t)spec->mode, gid, &st);
	if (fd < 0)
		return NULL;
	struct listener *l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		free(l);
		unlink(path);
		close(fd);
		return NULL;
	}
	l->fd = fd;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return l;
}

struct listener *listener_adopt(int fd, const char *path)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		log_crit("out of memory serving %s", path);
		free(l);
		return NULL;
	}
	l->fd = fd;
	l->adopted = true;
	return l;
}

static void fill_peer(int fd, struct peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	peer->fd = fd;
	peer->pid = -1;
	peer->uid = (uid_t)-1;
	peer->gid = (gid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		peer->pid = cred.pid;
		peer->uid = cred.uid;
		peer->gid = cred.gid;
	}
}

static void on_resume(struct event_loop *loop, uint64_t id, void *data)
{
	struct listener *l = data;
	(void)id;
	l->pause_timer = 0;
	el_mod_fd(loop, l->fd, EL_READ);
}

/* Out of descriptors: stop accepting for a moment instead of spinning. */
static void pause_accepting(struct listener *l)
{
	if (l->pause_timer)
		return;
	el_mod_fd(l->loop, l->fd, 0);
	l->pause_timer = el_add_timer(l->loop, 100, on_resume, l);
}

static void on_accept(struct event_loop *loop, int fd, void *data, int mask)
{
	struct listener *l = data;
	(void)loop;
	(void)mask;
	/* Bounded so a connection storm cannot starve the other sockets. */
	for (int i = 0; i < 64; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				log_error("accept: %s (raise the open-file limit)",
					  strerror(errno));
				pause_accepting(l);
			} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_error("accept: %s", strerror(errno));
			return;
		}
		struct peer peer;
		fill_peer(cfd, &peer);
		l->fn(l->data, &peer);
	}
}

int listener_start(struct listener *l, struct event_loop *loop, listener_accept_fn *fn, void *data)
{
	/*
	 * A client's SO_PEERCRED names whoever called listen() last: the process
	 * that bound the socket before daemon() forked, or whoever passed it.
	 * Listening again here makes it this process, after the switch of user.
	 */
	if (listen(l->fd, SOMAXCONN) < 0)
		log_error("cannot listen on %s again: %s (clients see an old pid)", l->path,
			  strerror(errno));
	l->fn = fn;
	l->data = data;
	l->loop = loop;
	return el_add_fd(loop, l->fd, EL_READ, on_accept, l);
}

void listener_close(struct listener *l, struct event_loop *loop)
{
	if (!l)
		return;
	if (loop) {
		el_del_fd(loop, l->fd);
		el_del_timer(loop, l->pause_timer);
	}
	close(l->fd);
	struct stat st;
	/* Only remove the file if a later daemon has not replaced it. */
	if (!l->adopted && stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->path);
	free(l->path);
	free(l);
}
