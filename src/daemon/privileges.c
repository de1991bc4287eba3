#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* A decimal id; false for anything else (names are looked up first). */
static bool parse_id(const char *text, unsigned *out)
{
	if (*text < '0' || *text > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (*end || errno || v >= (unsigned long)(uid_t)-1)
		return false;
	*out = (unsigned)v;
	return true;
}

bool privileges_group_id(const char *text, gid_t *gid)
{
	const struct group *gr = *text ? getgrnam(text) : NULL;
	if (gr) {
		*gid = gr->gr_gid;
		return true;
	}
	unsigned id;
	if (!parse_id(text, &id))
		return false;
	*gid = (gid_t)id;
	return true;
}

/* Fills uid, user and, for an account, gid; false if there is no such user. */
static bool find_user(const char *text, struct privileges *p)
{
	const struct passwd *pw = *text ? getpwnam(text) : NULL;
	unsigned id;
	if (!pw && parse_id(text, &id)) {
		p->uid = (uid_t)id;
		pw = getpwuid(p->uid);
		if (!pw) {
			snprintf(p->user, sizeof(p->user), "%u", id);
			return true;
		}
	}
	if (!pw || strlen(pw->pw_name) >= sizeof(p->user))
		return false;
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	snprintf(p->user, sizeof(p->user), "%s", pw->pw_name);
	p->has_account = true;
	return true;
}

/* USER[:GROUP] into p; false (logged) when either does not exist. */
static bool parse_user_option(const char *text, struct privileges *p)
{
	char name[256];
	const char *colon = strchr(text, ':');
	size_t len = colon ? (size_t)(colon - text) : strlen(text);
	if (len == 0 || len >= sizeof(name)) {
		log_crit("--user %s: wants USER or USER:GROUP (a name or a number each)", text);
		return false;
	}
	memcpy(name, text, len);
	name[len] = '\0';
	if (!find_user(name, p)) {
		log_crit("--user %s: no such user %s (create the account, e.g. with "
			 "systemd-sysusers or useradd --system, or name another)",
			 text, name);
		return false;
	}
	if (colon) {
		if (!privileges_group_id(colon + 1, &p->gid)) {
			log_crit("--user %s: no such group '%s'", text, colon + 1);
			return false;
		}
	} else if (!p->has_account) {
		log_crit("--user %s: uid %s has no account to take a group from; name one "
			 "(--user %s:GROUP)",
			 text, name, name);
		return false;
	}
	return true;
}

/*
 * Root without --user and no usable default account: refuse, rather than run
 * the drivers as root unasked. What to do is on stderr (errors before anything
 * is bound reach it, also when detaching).
 */
static bool refuse_root_default(const struct privileges *p)
{
	const char *user = PRIVILEGES_DEFAULT_USER;
	if (p->has_account)
		log_crit("started as root without --user, and the account %s is uid 0: the reader "
			 "drivers would run as root; not starting. Give %s its own uid, name "
			 "another account (--user USER), or keep root on purpose (--user root)",
			 user, user);
	else
		log_crit("started as root without --user, and there is no account %s to run the "
			 "reader drivers as; not starting (drivers never run as root unless "
			 "asked). Create the account (systemd-sysusers %s, or useradd --system "
			 "--user-group --home-dir /nonexistent --shell /usr/sbin/nologin %s), or "
			 "keep root on purpose: --user root",
			 user, SCARDD_SYSUSERS_ENTRY, user);
	return false;
}

bool privileges_resolve(const char *user, struct privileges *p)
{
	*p = (struct privileges){ .plan = PRIV_STAY };
	bool root = geteuid() == 0;
	if (!user) {
		if (!root)
			return true;
		if (!find_user(PRIVILEGES_DEFAULT_USER, p) || p->uid == 0)
			return refuse_root_default(p);
		p->plan = PRIV_SWITCH;
		p->by_default = true;
		return true;
	}
	if (!parse_user_option(user, p))
		return false;
	if (p->uid == 0) {
		if (p->gid != 0) {
			log_crit("--user %s: root keeps root's group; drop the group or name "
				 "another user",
				 user);
			return false;
		}
		p->plan = root ? PRIV_ROOT_ASKED : PRIV_SWITCH;
	} else {
		p->plan = PRIV_SWITCH;
	}
	if (root)
		return true;
	/* Not root: only the identity scardd already has can be "switched" to. */
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	if (getresuid(&ruid, &euid, &suid) == 0 && getresgid(&rgid, &egid, &sgid) == 0 &&
	    ruid == p->uid && euid == p->uid && suid == p->uid && rgid == p->gid &&
	    egid == p->gid && sgid == p->gid) {
		p->plan = PRIV_STAY;
		return true;
	}
	log_crit("--user %s: only root can switch users, and scardd runs as uid %u gid %u", user,
		 (unsigned)geteuid(), (unsigned)getegid());
	return false;
}

/* The supplementary groups p should have: the account's (getgrouplist), or none. */
static gid_t *wanted_groups(const struct privileges *p, int *n)
{
	*n = 0;
	if (!p->has_account)
		return calloc(1, sizeof(gid_t));
	int cap = 32;
	for (;;) {
		gid_t *list = calloc((size_t)cap, sizeof(gid_t));
		if (!list)
			return NULL;
		int want = cap;
		if (getgrouplist(p->user, p->gid, list, &want) >= 0) {
			*n = want;
			return list;
		}
		free(list);
		if (want <= cap)
			return NULL;
		cap = want;
	}
}

static bool same_groups(const gid_t *want, int n)
{
	int got = getgroups(0, NULL);
	gid_t *have = got > 0 ? calloc((size_t)got, sizeof(gid_t)) : NULL;
	if (got < 0 || (got > 0 && (!have || getgroups(got, have) != got))) {
		free(have);
		return false;
	}
	bool same = true;
	for (int i = 0; i < got && same; i++) {
		bool found = false;
		for (int k = 0; k < n && !found; k++)
			found = have[i] == want[k];
		same = found;
	}
	for (int k = 0; k < n && same; k++) {
		bool found = false;
		for (int i = 0; i < got && !found; i++)
			found = have[i] == want[k];
		same = found;
	}
	free(have);
	return same;
}

static bool no_capabilities(void)
{
	struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { 0 };
	if (syscall(SYS_capget, &head, data) < 0)
		return false;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective || data[i].permitted || data[i].inheritable)
			return false;
	return true;
}

/* What is still wrong after the switch, or NULL: the way back is closed. */
static const char *still_privileged(const struct privileges *p, const gid_t *groups, int n)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	if (getresuid(&ruid, &euid, &suid) < 0 || ruid != p->uid || euid != p->uid ||
	    suid != p->uid)
		return "a user id is not the target's";
	if (getresgid(&rgid, &egid, &sgid) < 0 || rgid != p->gid || egid != p->gid ||
	    sgid != p->gid)
		return "a group id is not the target's";
	if (!same_groups(groups, n))
		return "the supplementary groups are not the target's";
	if (setuid(0) == 0 || seteuid(0) == 0)
		return "setuid(0) still succeeds";
	if (p->gid != 0 && (setgid(0) == 0 || setegid(0) == 0))
		return "setgid(0) still succeeds";
	if (!no_capabilities())
		return "capabilities are left";
	return NULL;
}

static bool switch_to(const struct privileges *p)
{
	int n;
	gid_t *groups = wanted_groups(p, &n);
	if (!groups) {
		log_crit("cannot read the groups of %s: %s", p->user,
			 errno ? strerror(errno) : "too many");
		return false;
	}
	const char *step = NULL;
	if (setgroups((size_t)n, groups) < 0)
		step = "setgroups";
	else if (setresgid(p->gid, p->gid, p->gid) < 0)
		step = "setresgid";
	else if (setresuid(p->uid, p->uid, p->uid) < 0)
		step = "setresuid";
	/* nor may a setuid program a driver runs give anything back */
	else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		step = "PR_SET_NO_NEW_PRIVS";
	if (step) {
		log_crit("cannot become user %s (uid %u gid %u): %s: %s", p->user, (unsigned)p->uid,
			 (unsigned)p->gid, step, strerror(errno));
		free(groups);
		return false;
	}
	const char *left = still_privileged(p, groups, n);
	free(groups);
	if (left) {
		log_crit("dropping root for user %s did not hold: %s; not starting", p->user, left);
		return false;
	}
	log_info("running as user %s (uid %u gid %u, %d supplementary group(s))%s", p->user,
		 (unsigned)p->uid, (unsigned)p->gid, n,
		 p->by_default ? ", the default account for a start as root" : "");
	return true;
}

bool privileges_apply(const struct privileges *p)
{
	switch (p->plan) {
	case PRIV_STAY: return true;
	case PRIV_ROOT_ASKED: log_info("drivers run as root, as --user root asks"); return true;
	case PRIV_SWITCH: return switch_to(p);
	}
	return false;
}
