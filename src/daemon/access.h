/*
 * The access policy (policy.h) applied to clients: the one gate in front of
 * the request table (requests.c), the reader filter of the state arrays
 * (cmd_states.c), and the policy's life: read at start-up, read again on
 * SIGHUP without dropping a client.
 *
 * Without a policy file nothing here runs: every client may do everything,
 * as with pcscd. With one, what a client may do on a reader is decided once
 * per client, reader and policy read, and kept with its session, so a
 * request costs a table lookup, never a string match.
 *
 * Denials answer what pcsc-lite answers when polkit refuses:
 * SCARD_W_SECURITY_VIOLATION (a reader the client may not see is answered
 * SCARD_E_UNKNOWN_READER: it is not there, for that client). Each denial is
 * logged once, with the client's identity and the rule that decided.
 */
#ifndef SCARDD_ACCESS_H
#define SCARDD_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "requests.h"

struct daemon;
struct options;
struct policy;
struct reader;
struct session;
struct access_entry;

/* A session's decisions (kept by access.c, freed with the session). */
struct access_state {
	uint32_t gen;    /* the policy read these were made for; 0: none yet */
	bool refused;    /* no rule gives this client anything */
	uint32_t *rules; /* the rules that fit the client, in file order */
	size_t n_rules;
	struct access_entry *by_position; /* per reader position */
	size_t cap;
	unsigned denials_logged;
};

void access_state_free(struct access_state *a);

/*
 * The gate (requests.c), before the request's handler: true when the policy
 * denies rq, which is then answered (or *out is OUT_CLOSE).
 */
bool access_denies(struct request *rq, enum outcome *out);

/* Whether the policy refuses the session's client outright (no rule gives it anything). */
bool access_refused(struct session *s);

/* Whether the session's client may see reader r (state arrays; ctx: the session). */
bool access_sees(void *ctx, const struct reader *r);

/*
 * A new client: the rest of who it is (groups, executable, sandbox:
 * peer_identity.h) is read now if a policy or an audit log will judge or
 * record it. That reading costs some 30 system calls on /proc; a daemon
 * with neither (pcscd's setup) skips it, and the session has its pid, uid
 * and gid only until access_identify.
 */
void access_connected(struct session *s);

/*
 * Reads the rest of who the session's client is, once, as /proc shows it
 * now: for a policy that appears later (SIGHUP) and polkit's refusal logs.
 */
void access_identify(struct session *s);

/* What scardd reads and opens as root, before it binds its sockets. */
struct access_setup {
	struct policy *policy; /* NULL: no file at the default path, everything allowed */
	struct audit *audit;   /* --audit, or NULL */
};

/* Start-up: the policy file and the audit log. false: a start-up error, logged (stderr). */
bool access_setup_open(const struct options *opts, struct access_setup *setup);
/* The daemon owns them from now on. */
void access_setup_install(struct daemon *d, struct access_setup *setup);
/* A start that failed after access_setup_open. */
void access_setup_drop(struct access_setup *setup);
/*
 * SIGHUP: reads the policy file again (a file that cannot be read or parsed
 * keeps the policy in force, logged with its line) and opens the audit log
 * again (log rotation).
 */
void access_reload(struct daemon *d);
/* daemon_free. */
void access_release(struct daemon *d);

#endif
