#include "pid_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"

bool pid_file_path(const char *socket_path, char *buf, size_t cap)
{
	size_t len = strlen(socket_path);
	const char *dot = strrchr(socket_path, '.');
	const char *slash = strrchr(socket_path, '/');
	if (dot && !strcmp(dot, ".comm") && (!slash || slash < dot))
		len = (size_t)(dot - socket_path);
	int n = snprintf(buf, cap, "%.*s.pid", (int)len, socket_path);
	return n > 0 && (size_t)n < cap;
}

int pid_file_write(const char *path)
{
	/* O_NOFOLLOW: a link planted in a shared directory is not followed */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_error("cannot write the pid file %s: %s (--hotplug will not find this daemon)",
			  path, strerror(errno));
		return -1;
	}
	char text[32];
	int n = snprintf(text, sizeof(text), "%d\n", (int)getpid());
	bool ok = write(fd, text, (size_t)n) == n;
	close(fd);
	if (!ok) {
		log_error("cannot write the pid file %s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* The pid the file names, or -1 (errno set when it cannot be read). */
static pid_t read_pid(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char text[32];
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0) {
		errno = EINVAL;
		return -1;
	}
	text[n] = '\0';
	char *end;
	long pid = strtol(text, &end, 10);
	if (end == text || pid <= 0 || (*end && *end != '\n')) {
		errno = EINVAL;
		return -1;
	}
	return (pid_t)pid;
}

void pid_file_remove(const char *path)
{
	if (read_pid(path) == getpid())
		unlink(path);
}

int pid_file_hotplug(const char *socket_path)
{
	char path[4096];
	if (!pid_file_path(socket_path, path, sizeof(path)))
		return -1;
	if (listener_probe(socket_path) != 1) {
		log_crit("no PC/SC daemon answers on %s: nothing to signal", socket_path);
		return -1;
	}
	pid_t pid = read_pid(path);
	if (pid < 0) {
		log_crit("cannot read the pid file %s of the daemon on %s: %s", path, socket_path,
			 strerror(errno));
		return -1;
	}
	if (kill(pid, SIGUSR1) < 0) {
		log_crit("cannot signal the daemon (pid %d from %s): %s", (int)pid, path,
			 strerror(errno));
		return -1;
	}
	log_info("asked the daemon on %s (pid %d) to rescan its readers", socket_path, (int)pid);
	return 0;
}
