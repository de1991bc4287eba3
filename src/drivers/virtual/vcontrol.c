#include "vcontrol.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A client that sends nothing for this long is dropped, so a stuck client
 * cannot hold the channel. */
#define CLIENT_IDLE_MS 5000

struct vcontrol {
	char *path;
	int listen_fd;
	int stop_fd; /* eventfd: written once to stop the thread */
	pthread_t thread;
	vcontrol_handler *handler;
	void *ctx;
	dev_t dev; /* identity of the socket file we bound, so that stop never */
	ino_t ino; /* unlinks a socket another instance created since */
};

static bool someone_listens(const struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool live = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0;
	close(fd);
	return live;
}

static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* 1 = readable, 0 = stop or idle timeout */
static int wait_readable(struct vcontrol *ctl, int fd, int timeout_ms)
{
	struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN },
				 { .fd = ctl->stop_fd, .events = POLLIN } };
	for (;;) {
		int n = poll(pfd, 2, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (pfd[1].revents & POLLIN))
			return 0;
		return 1;
	}
}

static void serve_client(struct vcontrol *ctl, int fd)
{
	char line[VCONTROL_MAX_LINE + 1];
	size_t len = 0;
	char *reply = malloc(VCONTROL_MAX_REPLY);
	if (!reply)
		return;
	for (;;) {
		char *nl = memchr(line, '\n', len);
		if (!nl) {
			if (len == VCONTROL_MAX_LINE) {
				const char msg[] = "error line too long\n";
				write_all(fd, msg, sizeof(msg) - 1);
				break;
			}
			if (!wait_readable(ctl, fd, CLIENT_IDLE_MS))
				break;
			ssize_t n = recv(fd, line + len, VCONTROL_MAX_LINE - len, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len += (size_t)n;
			continue;
		}
		*nl = 0;
		size_t used = (size_t)(nl - line) + 1;
		if (nl > line && nl[-1] == '\r')
			nl[-1] = 0;
		reply[0] = 0;
		ctl->handler(ctl->ctx, line, reply, VCONTROL_MAX_REPLY);
		if (!write_all(fd, reply, strlen(reply)))
			break;
		memmove(line, line + used, len - used);
		len -= used;
	}
	free(reply);
}

static void *control_main(void *arg)
{
	struct vcontrol *ctl = arg;
	for (;;) {
		if (!wait_readable(ctl, ctl->listen_fd, -1))
			break;
		int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
				continue;
			/* EMFILE and friends: do not spin */
			struct pollfd pfd = { .fd = ctl->stop_fd, .events = POLLIN };
			if (poll(&pfd, 1, 100) > 0)
				break;
			continue;
		}
		serve_client(ctl, fd);
		close(fd);
	}
	return NULL;
}

static struct vcontrol *fail(struct vcontrol *ctl, char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "control socket %s: %s: %s", ctl->path, what, strerror(errno));
	if (ctl->listen_fd >= 0)
		close(ctl->listen_fd);
	if (ctl->stop_fd >= 0)
		close(ctl->stop_fd);
	free(ctl->path);
	free(ctl);
	return NULL;
}

struct vcontrol *vcontrol_start(const char *path, unsigned mode, vcontrol_handler *handler,
				void *ctx, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "control socket path too long (%zu bytes, %zu at most)",
			 strlen(path), sizeof(addr.sun_path) - 1);
		return NULL;
	}
	strcpy(addr.sun_path, path);
	struct vcontrol *ctl = calloc(1, sizeof(*ctl));
	if (!ctl || !(ctl->path = strdup(path))) {
		free(ctl);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctl->listen_fd = ctl->stop_fd = -1;
	ctl->handler = handler;
	ctl->ctx = ctx;

	/* the directory: created (0755) if missing, one level only */
	char dir[sizeof(addr.sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return fail(ctl, err, errlen, "cannot create its directory");
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			errno = EEXIST;
			return fail(ctl, err, errlen, "exists and is not a socket");
		}
		if (someone_listens(&addr)) {
			errno = EADDRINUSE;
			return fail(ctl, err, errlen, "another driver instance serves it");
		}
		unlink(path); /* stale, from a daemon that died */
	}
	ctl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl->listen_fd < 0)
		return fail(ctl, err, errlen, "socket");
	/* no umask games: umask is per process and the daemon has other threads;
	 * connecting needs write permission, which the default umask withholds
	 * from others until the chmod below */
	if (bind(ctl->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return fail(ctl, err, errlen, "bind");
	if (chmod(path, mode & 0777) < 0 || listen(ctl->listen_fd, 8) < 0 || stat(path, &st) < 0) {
		int e = errno;
		unlink(path);
		errno = e;
		return fail(ctl, err, errlen, "set-up");
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	ctl->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (ctl->stop_fd < 0) {
		unlink(path);
		return fail(ctl, err, errlen, "eventfd");
	}
	if ((errno = pthread_create(&ctl->thread, NULL, control_main, ctl)) != 0) {
		unlink(path);
		return fail(ctl, err, errlen, "thread");
	}
	return ctl;
}

void vcontrol_stop(struct vcontrol *ctl)
{
	if (!ctl)
		return;
	uint64_t one = 1;
	ssize_t n = write(ctl->stop_fd, &one, sizeof(one));
	(void)n;
	pthread_join(ctl->thread, NULL);
	struct stat st;
	if (stat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
	close(ctl->listen_fd);
	close(ctl->stop_fd);
	free(ctl->path);
	free(ctl);
}
