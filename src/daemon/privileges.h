/*
 * Who scardd runs as. Drivers are code scardd does not control, so they never
 * run as root unless asked for: `--user USER[:GROUP]` switches to that account
 * after the sockets are bound and before any driver is loaded; started as root
 * without --user, scardd switches to the default account when it exists, and
 * refuses to start when it does not; `--user root` keeps root on purpose. The
 * switch is checked to be irreversible.
 */
#ifndef SCARDD_PRIVILEGES_H
#define SCARDD_PRIVILEGES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* pcsc-lite's account: CCID's udev rules give its group the readers. */
#define PRIVILEGES_DEFAULT_USER "pcscd"

enum privileges_plan {
	PRIV_STAY,       /* not root: nothing to drop */
	PRIV_SWITCH,     /* become uid/gid */
	PRIV_ROOT_ASKED, /* --user root */
};

struct privileges {
	enum privileges_plan plan;
	uid_t uid;
	gid_t gid;
	char user[64];    /* the account's name, or its number */
	bool has_account; /* a passwd entry: its supplementary groups come along */
	bool by_default;  /* the default account, not --user */
};

/*
 * Decides from --user (NULL: not given) and who runs scardd. Run before
 * anything is bound; false (logged) when --user cannot be honoured, or when
 * root without --user has no default account to become.
 */
bool privileges_resolve(const char *user, struct privileges *p);

/*
 * Becomes p's account (groups, gid, uid) and checks there is no way back:
 * every uid and gid is the target, setuid(0) fails, no capability is left.
 * Run before threads start and before any driver is loaded. false: logged,
 * scardd must stop.
 */
bool privileges_apply(const struct privileges *p);

/* A group by name or number; false if there is none. */
bool privileges_group_id(const char *text, gid_t *gid);

#endif
