/*
 * The audit log (--audit FILE): one line per SCardConnect, SCardReconnect,
 * transaction begin and end, and SCardControl, and per client the policy
 * refuses, each with the client's identity and the result, for whoever must
 * later answer "who used this card, when". Lines are key=value, appended
 * with one write each:
 *
 *   2026-12-02T08:30:00.123Z connect client=12 pid=4711 uid=1000 gid=1000
 *     exe="/usr/bin/opensc-tool" sandbox=none reader="Yubico 00 00"
 *     mode=exclusive card=0x1a2b3c4d result=SCARD_S_SUCCESS
 *
 * (one line). The file is opened before scardd gives up root and opened
 * again on SIGHUP (log rotation), when the account may.
 */
#ifndef SCARDD_AUDIT_H
#define SCARDD_AUDIT_H

#include <stddef.h>

struct audit;
struct session;
struct wire_msg;

/* Opens path for appending (created 0640). NULL with the reason in err. */
struct audit *audit_open(const char *path, char *err, size_t err_cap);
/* Opens the path again (log rotation); on failure keeps the old file and logs why. */
void audit_reopen(struct audit *a);
void audit_close(struct audit *a);

/* A reply the session sends: its line, if it is one of the audited requests. */
void audit_reply(struct audit *a, const struct session *s, const struct wire_msg *reply);

/* The text of one line for these parts (tests): returns its length, as snprintf. */
int audit_format(char *buf, size_t cap, const char *event, const struct session *s,
		 const char *details);

#endif
