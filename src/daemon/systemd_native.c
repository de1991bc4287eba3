/* systemd's socket-activation and notification protocols, without libsystemd. */
#include "systemd_proto.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

const char systemd_proto_name[] = "built-in";

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

/* The i-th colon-separated name of names into out, or "". */
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

static int listen_fds(struct inherited_socket *out, size_t cap)
{
	const char *pid_text = getenv("LISTEN_PID");
	const char *fds_text = getenv("LISTEN_FDS");
	long pid, n;
	if (!pid_text || !fds_text)
		return 0;
	if (!parse_long(pid_text, 1, INT32_MAX, &pid) || pid != (long)getpid()) {
		/* meant for the process that started us (a wrapper that did not exec) */
		log_info("LISTEN_PID=%s is not scardd's pid %d: not taking the descriptors",
			 pid_text, (int)getpid());
		return 0;
	}
	if (!parse_long(fds_text, 0, INT32_MAX - SYSTEMD_FIRST_FD, &n)) {
		log_crit("LISTEN_FDS=%s from systemd is not a count; not starting", fds_text);
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
	for (size_t i = 0; i < cap && i < (size_t)n; i++) {
		out[i].fd = SYSTEMD_FIRST_FD + (int)i;
		fd_name(names, i, out[i].name, sizeof(out[i].name));
	}
	return (int)n;
}

int systemd_proto_listen_fds(struct inherited_socket *out, size_t cap)
{
	int n = listen_fds(out, cap);
	unset_listen_env();
	return n;
}

static struct sockaddr_un notify_addr;
static socklen_t notify_len; /* 0: no $NOTIFY_SOCKET */

bool systemd_proto_notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	notify_len = 0;
	if (!path || !*path)
		return true;
	size_t len = strlen(path);
	bool ok = (path[0] == '/' || path[0] == '@') && len < sizeof(notify_addr.sun_path);
	if (ok) {
		memset(&notify_addr, 0, sizeof(notify_addr));
		notify_addr.sun_family = AF_UNIX;
		memcpy(notify_addr.sun_path, path, len);
		if (path[0] == '@')
			notify_addr.sun_path[0] =
				'\0'; /* abstract: the name is the bytes after it */
		notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		log_error("NOTIFY_SOCKET=%s is not a Unix socket path or @name scardd can reach: "
			  "systemd will not hear that scardd is ready",
			  path);
	}
	/* read once: drivers and what they start do not see it */
	unsetenv("NOTIFY_SOCKET");
	return ok;
}

int systemd_proto_notify(const char *msg, bool last)
{
	(void)last;
	if (!notify_len)
		return 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	size_t len = strlen(msg);
	ssize_t sent = sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
			      notify_len);
	int err = sent < 0 ? -errno : (size_t)sent == len ? 0 : -EMSGSIZE;
	close(fd);
	return err;
}
