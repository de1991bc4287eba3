#include "peer_identity.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "peer_info.h"
#include "text_out.h"

/* Linux 6.5; the generic value (alpha, mips, parisc and sparc number it otherwise). */
#if !defined(SO_PEERPIDFD) && !defined(__alpha__) && !defined(__mips__) && !defined(__hppa__) && \
	!defined(__sparc__)
#define SO_PEERPIDFD 77
#endif

#define EXE_MAX 4096             /* PATH_MAX: readlink gives no more */
#define CGROUP_MAX 8192          /* cgroup v1 lists a line per hierarchy */
#define FLATPAK_INFO_MAX 65536   /* flatpak writes a few hundred bytes */
#define MOUNTINFO_MAX (4u << 20) /* a container with thousands of mounts */
#define GROUPS_MAX 65536         /* NGROUPS_MAX */

/* ---- reading /proc within bounds ---- */

/* Reads up to cap - 1 bytes of dirfd/name; the length, or -1. */
static ssize_t read_at(int dirfd, const char *name, char *buf, size_t cap)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

static bool link_at(int dirfd, const char *name, char *buf, size_t cap)
{
	ssize_t n = readlinkat(dirfd, name, buf, cap - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

static bool all_of(const char *s, size_t len, const char *allowed_punct, bool upper)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (upper && c >= 'A' && c <= 'Z') || (c && strchr(allowed_punct, c));
		if (!ok)
			return false;
	}
	return true;
}

/* ---- flatpak: /.flatpak-info in the client's root ---- */

bool peer_flatpak_app_id(const char *text, size_t len, char *out, size_t cap)
{
	bool in_app = false;
	const char *end = text + len;
	for (const char *line = text; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *stop = nl ? nl : end;
		size_t n = (size_t)(stop - line);
		while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
			n--;
		if (n > 0 && line[0] == '[') {
			in_app = n == strlen("[Application]") && !memcmp(line, "[Application]", n);
		} else if (in_app && n > 4 && !memcmp(line, "name", 4)) {
			const char *v = line + 4;
			const char *vend = line + n;
			while (v < vend && (*v == ' ' || *v == '\t'))
				v++;
			if (v < vend && *v == '=') {
				v++;
				while (v < vend && (*v == ' ' || *v == '\t'))
					v++;
				size_t vlen = (size_t)(vend - v);
				/* an app id: reverse-DNS, at most 255 characters */
				if (vlen == 0 || vlen > 255 || vlen >= cap ||
				    !all_of(v, vlen, "._-", true))
					return false;
				memcpy(out, v, vlen);
				out[vlen] = '\0';
				return true;
			}
		}
		line = nl ? nl + 1 : end;
	}
	return false;
}

/*
 * File systems whose reads no process answers: a FUSE or network file
 * system (or an overlay that may stack on one) could keep the daemon
 * waiting, and a sandbox may mount one where /.flatpak-info would be.
 */
static bool fs_type_trusted(const char *type)
{
	static const char *const trusted[] = { "tmpfs", "ramfs", "ext2",     "ext3",  "ext4",
					       "xfs",   "btrfs", "squashfs", "erofs", "f2fs" };
	for (size_t i = 0; i < sizeof(trusted) / sizeof(trusted[0]); i++)
		if (!strcmp(type, trusted[i]))
			return true;
	return false;
}

/* The type of mount mnt_id in one mountinfo line ("ID PARENT ... - TYPE SOURCE OPTS"). */
static bool mountinfo_line_type(const char *line, size_t len, unsigned long long mnt_id, char *type,
				size_t cap)
{
	char idbuf[24];
	int idlen = snprintf(idbuf, sizeof(idbuf), "%llu ", mnt_id);
	if (len <= (size_t)idlen || memcmp(line, idbuf, (size_t)idlen) != 0)
		return false;
	const char *end = line + len;
	for (const char *p = line; p + 3 <= end; p++) {
		if (memcmp(p, " - ", 3) != 0)
			continue;
		const char *t = p + 3;
		const char *tend = memchr(t, ' ', (size_t)(end - t));
		size_t tlen = (size_t)((tend ? tend : end) - t);
		if (tlen == 0 || tlen >= cap)
			return false;
		memcpy(type, t, tlen);
		type[tlen] = '\0';
		return true;
	}
	return false;
}

static bool mount_fs_type(int dirfd, unsigned long long mnt_id, char *type, size_t cap)
{
	int fd = openat(dirfd, "mountinfo", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return false;
	char buf[8192];
	size_t have = 0, total = 0;
	bool found = false, skipping = false;
	while (!found && total < MOUNTINFO_MAX) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* a last line without its newline is no whole line */
		have += (size_t)n;
		total += (size_t)n;
		size_t start = 0;
		char *nl;
		while (!found && (nl = memchr(buf + start, '\n', have - start))) {
			size_t len = (size_t)(nl - (buf + start));
			/* the tail of an overlong line is not a line of its own */
			if (!skipping)
				found = mountinfo_line_type(buf + start, len, mnt_id, type, cap);
			skipping = false;
			start += len + 1;
		}
		if (start == 0 && have == sizeof(buf)) {
			skipping = true;
			have = 0;
		} else {
			memmove(buf, buf + start, have - start);
			have -= start;
		}
	}
	close(fd);
	return found;
}

/*
 * /.flatpak-info as the client sees it. 1 with the app id in app (empty if
 * it names none); 0 if there is no such file, or it cannot be looked up
 * without asking its file system; -1 if it is there but cannot be read
 * without risk of waiting (or is no small regular file).
 */
static int read_flatpak_info(int dirfd, char *app, size_t cap)
{
	int rootfd = openat(dirfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return 0;
	/* Only through the name cache: a lookup that would ask the file system fails. */
	struct open_how how = {
		.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_CACHED | RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS,
	};
	int pfd = (int)syscall(SYS_openat2, rootfd, ".flatpak-info", &how, sizeof(how));
	close(rootfd);
	/* ENOENT, or EAGAIN: not in the name cache (its namespaces tell then) */
	if (pfd < 0)
		return 0;

	int rc = -1;
	struct statx stx;
	char type[64];
	if (statx(pfd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC,
		  STATX_TYPE | STATX_SIZE | STATX_MNT_ID, &stx) == 0 &&
	    S_ISREG(stx.stx_mode) && stx.stx_size <= FLATPAK_INFO_MAX &&
	    (stx.stx_mask & STATX_MNT_ID) &&
	    mount_fs_type(dirfd, (unsigned long long)stx.stx_mnt_id, type, sizeof(type)) &&
	    fs_type_trusted(type)) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", pfd);
		char *text = malloc(FLATPAK_INFO_MAX + 1);
		ssize_t n = text ? read_at(AT_FDCWD, path, text, FLATPAK_INFO_MAX + 1) : -1;
		if (n >= 0) {
			if (!peer_flatpak_app_id(text, (size_t)n, app, cap))
				app[0] = '\0';
			rc = 1;
		}
		free(text);
	}
	close(pfd);
	return rc;
}

/* ---- snaps and containers ---- */

/* "snap.NAME.APP (enforce)": the AppArmor label snapd gives a snap's processes. */
static bool snap_from_label(const char *label, char *name, size_t cap)
{
	if (strncmp(label, "snap.", 5) != 0)
		return false;
	const char *p = label + 5;
	size_t n = strcspn(p, ". \n");
	if (n == 0 || p[n] != '.' || n >= cap || n > 64 || !all_of(p, n, "-", false))
		return false;
	memcpy(name, p, n);
	name[n] = '\0';
	return true;
}

static const char *container_from_cgroup(const char *box, const char *cgroup)
{
	if (strstr(cgroup, "systemd-nspawn@"))
		return "nspawn";
	if (!box)
		return NULL;
	static const struct {
		const char *box, *kind;
	} kinds[] = { { "docker container", "docker" },
		      { "podman container", "podman" },
		      { "kubernetes pod", "kubernetes" },
		      { "lxc container", "lxc" } };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(box, kinds[i].box))
			return kinds[i].kind;
	return NULL;
}

/*
 * Whether the client's pid, mount or user namespace is not the daemon's
 * reference: those of PID 1 where they can be read (so that a daemon in a
 * namespace of its own, systemd's PrivateTmp= say, does not see every
 * client as contained), else its own.
 */
static bool own_namespaces(int dirfd, const char *proc)
{
	static const char *const kinds[] = { "ns/pid", "ns/mnt", "ns/user" };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		char theirs[64], ours[64], path[4200];
		if (!link_at(dirfd, kinds[i], theirs, sizeof(theirs)))
			continue;
		snprintf(path, sizeof(path), "%s/1/%s", proc, kinds[i]);
		if (!link_at(AT_FDCWD, path, ours, sizeof(ours))) {
			snprintf(path, sizeof(path), "%s/self/%s", proc, kinds[i]);
			if (!link_at(AT_FDCWD, path, ours, sizeof(ours)))
				continue;
		}
		if (strcmp(theirs, ours) != 0)
			return true;
	}
	return false;
}

static void set_app(struct peer_identity *id, const char *name)
{
	free(id->app);
	id->app = name && *name ? strdup(name) : NULL;
}

/* What the client's /proc directory says (dirfd), sandbox first. */
static void read_process(struct peer_identity *id, int dirfd, const char *proc)
{
	char *buf = malloc(EXE_MAX + CGROUP_MAX);
	if (!buf)
		return;
	if (link_at(dirfd, "exe", buf, EXE_MAX))
		id->exe = strdup(buf);

	char *cgroup = buf + EXE_MAX;
	if (read_at(dirfd, "cgroup", cgroup, CGROUP_MAX) < 0)
		cgroup[0] = '\0';
	char boxname[256], app[256], label[256];
	const char *box = peer_sandbox_from_cgroup(cgroup, boxname, sizeof(boxname));

	int flatpak = read_flatpak_info(dirfd, app, sizeof(app));
	if (flatpak == 1) {
		id->sandbox = PEER_FLATPAK;
		set_app(id, app);
	} else if (flatpak < 0 && !(box && !strcmp(box, "flatpak app"))) {
		id->sandbox = PEER_FLATPAK; /* a sandbox that names no app we could read */
	} else if (box && !strcmp(box, "flatpak app")) {
		/* systemd's app-flatpak-ID-N.scope, when the file cannot be read */
		id->sandbox = PEER_FLATPAK;
		set_app(id, all_of(boxname, strlen(boxname), "._-", true) ? boxname : NULL);
	} else if (box && !strcmp(box, "snap")) {
		id->sandbox = PEER_SNAP;
		set_app(id, all_of(boxname, strlen(boxname), "-", false) ? boxname : NULL);
	} else if ((read_at(dirfd, "attr/apparmor/current", label, sizeof(label)) > 0 ||
		    read_at(dirfd, "attr/current", label, sizeof(label)) > 0) &&
		   snap_from_label(label, app, sizeof(app))) {
		id->sandbox = PEER_SNAP;
		set_app(id, app);
	} else if ((id->container = container_from_cgroup(box, cgroup))) {
		id->sandbox = PEER_CONTAINER;
	} else if (own_namespaces(dirfd, proc)) {
		id->sandbox = PEER_CONTAINER;
		id->container = "namespaces";
	}
	free(buf);
}

/*
 * Whether the process in dirfd started after connected_ms (CLOCK_BOOTTIME):
 * then it cannot be the one that connected, and its pid was taken since.
 * Unknown (unreadable stat) counts as not.
 */
static bool started_after(int dirfd, uint64_t connected_ms)
{
	char stat[1024];
	ssize_t n = read_at(dirfd, "stat", stat, sizeof(stat));
	char *end = n > 0 ? strrchr(stat, ')') : NULL; /* the name may hold anything */
	if (!end)
		return false;
	/* starttime is field 22; field 3 is the first after the name */
	char *field = end + 1;
	for (int i = 3; i < 22 && field; i++)
		field = strchr(field + 1, ' ');
	if (!field)
		return false;
	errno = 0;
	unsigned long long ticks = strtoull(field + 1, NULL, 10);
	long hz = sysconf(_SC_CLK_TCK);
	if (errno || hz <= 0)
		return false;
	/* ticks are coarse: a start within the tick of the connect counts as before */
	return ticks * 1000 / (unsigned long long)hz > connected_ms + 1000 / (unsigned long long)hz;
}

/* Signal 0 checks without sending; EPERM (another user's process) is alive too. */
static bool process_alive(int pidfd)
{
	return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0 || errno != ESRCH;
}

void peer_identity_read_proc(struct peer_identity *id, const char *proc, pid_t pid, uid_t uid,
			     gid_t gid, const gid_t *groups, size_t n_groups, int pidfd,
			     uint64_t connected_ms)
{
	*id = (struct peer_identity){ .pid = pid, .uid = uid, .gid = gid };
	if (n_groups && (id->groups = malloc(n_groups * sizeof(*groups)))) {
		memcpy(id->groups, groups, n_groups * sizeof(*groups));
		id->n_groups = n_groups;
	}
	if (pid <= 0) {
		id->gone = true;
		return;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/%d", proc, (int)pid);
	/* Every read goes through this directory: all of one process, or nothing. */
	int dirfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		id->gone = true;
		return;
	}
	read_process(id, dirfd, proc);
	/* a pidfd pins the process itself; the start time stands in without one */
	bool newer = pidfd < 0 && connected_ms && started_after(dirfd, connected_ms);
	close(dirfd);
	/* Still alive now, so the pid was its own throughout the reads. */
	if (newer || (pidfd >= 0 && !process_alive(pidfd))) {
		free(id->exe);
		free(id->app);
		id->exe = id->app = NULL;
		id->sandbox = PEER_HOST;
		id->container = NULL;
		id->gone = true;
	}
}

static gid_t *peer_groups(int fd, size_t *n)
{
	socklen_t len = 16 * sizeof(gid_t);
	gid_t *groups = NULL;
	for (int tries = 0; tries < 3; tries++) {
		gid_t *bigger = realloc(groups, len ? len : sizeof(gid_t));
		if (!bigger)
			break;
		groups = bigger;
		socklen_t want = len;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &want) == 0) {
			*n = want / sizeof(gid_t);
			return groups;
		}
		/* ERANGE: want says how much it needs */
		if (errno != ERANGE || want > GROUPS_MAX * sizeof(gid_t))
			break;
		len = want;
	}
	free(groups);
	*n = 0;
	return NULL;
}

void peer_identity_read(struct peer_identity *id, int fd, pid_t pid, uid_t uid, gid_t gid,
			uint64_t connected_ms)
{
	int pidfd = -1;
#ifdef SO_PEERPIDFD
	socklen_t len = sizeof(pidfd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0)
		pidfd = -1;
#endif
	size_t n_groups = 0;
	gid_t *groups = peer_groups(fd, &n_groups);
	peer_identity_read_proc(id, "/proc", pid, uid, gid, groups, n_groups, pidfd, connected_ms);
	free(groups);
	if (pidfd >= 0)
		close(pidfd);
}

void peer_identity_clear(struct peer_identity *id)
{
	free(id->groups);
	free(id->exe);
	free(id->app);
	*id = (struct peer_identity){ .pid = -1 };
}

bool peer_identity_in_group(const struct peer_identity *id, gid_t gid)
{
	if (id->gid == gid)
		return true;
	for (size_t i = 0; i < id->n_groups; i++)
		if (id->groups[i] == gid)
			return true;
	return false;
}

const char *peer_sandbox_name(enum peer_sandbox sandbox)
{
	switch (sandbox) {
	case PEER_FLATPAK: return "flatpak";
	case PEER_SNAP: return "snap";
	case PEER_CONTAINER: return "container";
	default: return "none";
	}
}

/* ---- formatting ---- */

/* A string from the client, with what a log line must not hold escaped. */
static void put_escaped(struct text_out *o, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			text_put(o, "\\x%02x", *p);
		else
			text_put(o, "%c", *p);
	}
}

int peer_identity_format(const struct peer_identity *id, char *buf, size_t cap)
{
	struct text_out o = { buf, cap, 0 };
	if (cap)
		buf[0] = '\0';
	if (id->pid > 0)
		text_put(&o, "pid %d ", (int)id->pid);
	else
		text_put(&o, "pid ? ");
	text_put(&o, "uid %u gid %u", (unsigned)id->uid, (unsigned)id->gid);
	if (id->gone) {
		text_put(&o, ", gone before it could be seen");
	} else {
		text_put(&o, " exe ");
		put_escaped(&o, id->exe ? id->exe : "?");
	}
	switch (id->sandbox) {
	case PEER_FLATPAK:
	case PEER_SNAP:
		text_put(&o, ", %s ", peer_sandbox_name(id->sandbox));
		put_escaped(&o, id->app ? id->app : "?");
		break;
	case PEER_CONTAINER: text_put(&o, ", container %s", id->container); break;
	default: break;
	}
	return (int)o.len;
}
