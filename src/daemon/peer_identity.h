/*
 * Who a client is, read once when it connects and kept with its session:
 * the kernel's word for its pid, uid, gid and groups (SO_PEERCRED,
 * SO_PEERGROUPS), and what /proc said of that process then: its executable
 * and the sandbox it runs in (a flatpak app, a snap, a container). Read
 * later, /proc could describe whatever process has the pid by then.
 *
 * Reading never waits on the client: the files read are ones the kernel
 * writes, and the one file inside the client's own file system
 * (/.flatpak-info) is reached only through the kernel's name cache, on a
 * memory or block file system, with its size bounded. Whatever cannot be
 * read stays unknown; hostile contents are parsed within bounds.
 *
 * The uid, gid and groups are the kernel's and cannot be forged. The rest
 * is what the process, or whoever set up its sandbox, made it look like
 * (docs/POLICY.md says what each is worth).
 */
#ifndef SCARDD_PEER_IDENTITY_H
#define SCARDD_PEER_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum peer_sandbox {
	PEER_HOST = 0,  /* none seen */
	PEER_FLATPAK,   /* app: the flatpak app id, NULL if the sandbox names none */
	PEER_SNAP,      /* app: the snap's name */
	PEER_CONTAINER, /* container: its kind */
};

struct peer_identity {
	pid_t pid; /* <= 0: unknown */
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* supplementary groups when it connected */
	size_t n_groups;
	char *exe; /* the executable's path as /proc showed it; NULL: unknown */
	enum peer_sandbox sandbox;
	char *app;             /* flatpak app id or snap name, NULL if none */
	const char *container; /* "docker", "podman", "lxc", "kubernetes", "nspawn", or
				* "namespaces" (own pid, mount or user namespace only) */
	bool gone; /* the process had left (or its pid was taken) before /proc was read */
};

/*
 * Everything the connected socket fd (whose SO_PEERCRED gave pid, uid and
 * gid) and /proc say of the client on it. Never fails: parts that cannot be
 * read stay unknown. Frees nothing: clear a used identity first.
 *
 * connected_ms (CLOCK_BOOTTIME, 0: not checked) is when it connected: a
 * process at pid that started later is another one (the pid was taken
 * since), and the client counts as gone. Read long after connecting, on a
 * kernel without SO_PEERPIDFD (before 6.5), that is what tells them apart.
 */
void peer_identity_read(struct peer_identity *id, int fd, pid_t pid, uid_t uid, gid_t gid,
			uint64_t connected_ms);

/*
 * The same from given credentials and a /proc of one's choosing (tests):
 * PROC/PID/{exe,cgroup,attr,ns,root,mountinfo,stat}, the daemon's namespaces
 * in PROC/1/ns or else PROC/self/ns. pidfd (-1: none) is checked after the
 * reads: if its process has gone, what was read may be another's. Without
 * one, PROC/PID/stat's start time is checked against connected_ms (0: not
 * checked).
 */
void peer_identity_read_proc(struct peer_identity *id, const char *proc, pid_t pid, uid_t uid,
			     gid_t gid, const gid_t *groups, size_t n_groups, int pidfd,
			     uint64_t connected_ms);

void peer_identity_clear(struct peer_identity *id);

/* Whether gid is the client's group or one of its supplementary groups. */
bool peer_identity_in_group(const struct peer_identity *id, gid_t gid);

/* "none", "flatpak", "snap", "container": the words the policy file uses. */
const char *peer_sandbox_name(enum peer_sandbox sandbox);

/*
 * One line for logs and `scard status`:
 *   pid 42 uid 1000 gid 1000 exe /usr/bin/app, flatpak org.example.App
 * Characters a log must not carry (control bytes, newlines) are written as
 * \xNN. Returns the length it wanted (as snprintf).
 */
int peer_identity_format(const struct peer_identity *id, char *buf, size_t cap);

/* Reads the app id from a .flatpak-info text ([Application] name=); false if none. */
bool peer_flatpak_app_id(const char *text, size_t len, char *out, size_t cap);

#endif
