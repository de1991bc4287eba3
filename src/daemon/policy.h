/*
 * The access policy: who may use which reader, and how (docs/POLICY.md).
 *
 * A file of rules, one a line:
 *
 *   allow CONDITION... RIGHT...
 *   deny  CONDITION...
 *
 * For a client and a reader, the first rule whose conditions all hold
 * decides; a client no rule fits may do nothing. Parsing resolves user and
 * group names once; matching is pure and allocates nothing, so the daemon
 * decides once per client and reader and keeps the answer (access.c).
 */
#ifndef SCARDD_POLICY_H
#define SCARDD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct peer_identity;

/* Rights a rule grants on the readers it names. Any right lets the reader be seen. */
enum {
	POLICY_LIST = 1u << 0,         /* in the reader list and state arrays */
	POLICY_SHARED = 1u << 1,       /* SCardConnect SCARD_SHARE_SHARED (transactions included) */
	POLICY_EXCLUSIVE = 1u << 2,    /* SCARD_SHARE_EXCLUSIVE */
	POLICY_DIRECT = 1u << 3,       /* SCARD_SHARE_DIRECT */
	POLICY_TRANSMIT = 1u << 4,     /* SCardTransmit */
	POLICY_CONTROL = 1u << 5,      /* SCardControl with any code, SCardSetAttrib */
	POLICY_CONTROL_SOME = 1u << 6, /* SCardControl with the codes the rule lists */
	POLICY_ALL = POLICY_LIST | POLICY_SHARED | POLICY_EXCLUSIVE | POLICY_DIRECT |
		     POLICY_TRANSMIT | POLICY_CONTROL,
};

#define POLICY_LINE_MAX 4096u      /* longer lines are an error */
#define POLICY_FILE_MAX (1u << 20) /* policy_load reads no more */

struct policy;
struct policy_rule;

/* Name lookups, replaceable (tests, fuzzing). NULL members: the system's databases. */
struct policy_names {
	bool (*user)(const char *name, uid_t *uid);
	bool (*group)(const char *name, gid_t *gid);
};

/*
 * Parses text (len bytes, any bytes). NULL on error, with "SOURCE:LINE:
 * what is wrong" in err. names may be NULL.
 */
struct policy *policy_parse(const char *text, size_t len, const char *source,
			    const struct policy_names *names, char *err, size_t err_cap);
/*
 * Reads and parses the file at path. NULL on error with the reason in err;
 * errno is ENOENT when the file does not exist (and err says so).
 */
struct policy *policy_load(const char *path, char *err, size_t err_cap);
void policy_free(struct policy *p);

const char *policy_source(const struct policy *p);
size_t policy_rule_count(const struct policy *p);
const struct policy_rule *policy_rule_at(const struct policy *p, size_t i);

/* Whether every condition of r on the client holds (reader= aside). */
bool policy_rule_fits_peer(const struct policy_rule *r, const struct peer_identity *id);
/* Whether r's reader= conditions, if any, hold for this reader name. */
bool policy_rule_fits_reader(const struct policy_rule *r, const char *reader);
/* What r grants: 0 for deny, else its rights with POLICY_LIST. */
uint32_t policy_rule_rights(const struct policy_rule *r);
/* Whether r grants SCardControl with this code (POLICY_CONTROL, or the code listed). */
bool policy_rule_allows_control(const struct policy_rule *r, uint32_t code);
int policy_rule_line(const struct policy_rule *r);

/* The rule that decides what the client may do on reader: NULL if none does (nothing). */
const struct policy_rule *policy_decide(const struct policy *p, const struct peer_identity *id,
					const char *reader);
/*
 * Whether some reader could get the client a right; if not, it is refused
 * outright. *deny (if not NULL) gets the deny rule that ended the search, or
 * NULL when no rule fits.
 */
bool policy_admits(const struct policy *p, const struct peer_identity *id,
		   const struct policy_rule **deny);

/*
 * Shell-style match: * (any characters, '/' included), ?, [set], [!set],
 * [a-z], \ quoting. Time at most proportional to pattern times string.
 */
bool policy_glob(const char *pattern, const char *s);

#endif
