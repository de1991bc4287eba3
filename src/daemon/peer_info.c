#include "peer_info.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Copies the run of id characters at p (up to a separator) into out. */
static void take_id(const char *p, const char *stops, char *out, size_t cap)
{
	size_t n = strcspn(p, stops);
	if (cap == 0)
		return;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

const char *peer_sandbox_from_cgroup(const char *cgroup, char *name, size_t cap)
{
	const char *p;

	if (cap)
		name[0] = '\0';
	/* systemd puts each flatpak app in app-flatpak-<app id>-<n>.scope */
	if ((p = strstr(cgroup, "app-flatpak-"))) {
		const char *id = p + strlen("app-flatpak-");
		const char *end = strstr(id, ".scope");
		size_t n = end ? (size_t)(end - id) : strcspn(id, "/\n");
		/* drop the trailing -<number> */
		while (n > 0 && id[n - 1] >= '0' && id[n - 1] <= '9')
			n--;
		if (n > 0 && id[n - 1] == '-')
			n--;
		if (cap) {
			if (n >= cap)
				n = cap - 1;
			memcpy(name, id, n);
			name[n] = '\0';
		}
		return "flatpak app";
	}
	if ((p = strstr(cgroup, "/snap."))) {
		take_id(p + strlen("/snap."), "./\n", name, cap);
		return "snap";
	}
	if (strstr(cgroup, "docker"))
		return "docker container";
	if (strstr(cgroup, "libpod"))
		return "podman container";
	if (strstr(cgroup, "kubepods"))
		return "kubernetes pod";
	if (strstr(cgroup, "lxc"))
		return "lxc container";
	return NULL;
}

static bool read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return true;
}

static bool same_link(const char *a, const char *b)
{
	char la[64], lb[64];
	ssize_t na = readlink(a, la, sizeof(la) - 1), nb = readlink(b, lb, sizeof(lb) - 1);
	return na > 0 && nb > 0 && na == nb && memcmp(la, lb, (size_t)na) == 0;
}

void peer_describe(pid_t pid, uid_t uid, char *buf, size_t cap)
{
	char path[64], exe[256] = "?", cgroup[2048], name[128], other[64];
	const char *box = NULL;
	ssize_t n;

	if (pid <= 0) {
		snprintf(buf, cap, "pid ? uid %d", (int)uid);
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 1] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	if (read_small(path, cgroup, sizeof(cgroup)))
		box = peer_sandbox_from_cgroup(cgroup, name, sizeof(name));
	if (!box) {
		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
		snprintf(other, sizeof(other), "/proc/%d/ns/mnt", (int)getpid());
		if (access(path, F_OK) == 0 && !same_link(path, other))
			box = "own mount namespace";
		name[0] = '\0';
	}
	snprintf(buf, cap, "pid %d uid %d exe %s%s%s%s%s", (int)pid, (int)uid, exe, box ? ", " : "",
		 box ? box : "", box && name[0] ? " " : "", box ? name : "");
}
