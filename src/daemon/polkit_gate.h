/*
 * Where polkit's answers meet the clients (polkit_check.h asks). A new
 * connection is read only once polkit allows it access_pcsc (refused: it is
 * closed, as pcscd closes it); each SCardConnect waits for access_card on
 * its reader (refused: SCARD_W_SECURITY_VIOLATION, pcscd's answer). Both
 * are asked every time, as pcscd asks: rules and temporary authorizations
 * are polkit's to keep.
 *
 * polkit is one gate beside the access policy (access.h), not instead of
 * it: a request passes both. When polkitd does not answer (no system bus,
 * polkitd not running) clients are served as without polkit, and that is
 * logged once, then once more when it answers again.
 */
#ifndef SCARDD_POLKIT_GATE_H
#define SCARDD_POLKIT_GATE_H

#include <stdbool.h>

#include "requests.h"

struct daemon;
struct session;

/* Start-up: asks polkit from now on, unless built without it or --disable-polkit. */
void polkit_gate_start(struct daemon *d);
void polkit_gate_stop(struct daemon *d);

enum polkit_gate_result {
	POLKIT_GATE_PASS,   /* polkit is not asked: go on */
	POLKIT_GATE_WAIT,   /* asked: the session waits (PARK_AUTH) */
	POLKIT_GATE_REFUSE, /* could not be asked (too many questions waiting): refused */
};

/* A new session (after the policy's outright refusal, which polkitd never hears of). */
enum polkit_gate_result polkit_gate_accept(struct session *s);
/* The session leaves: its questions are cancelled. */
void polkit_gate_forget(struct session *s);

/*
 * The gate before a request's handler: true when rq waits for polkit
 * (*out = OUT_AUTH) or could not be asked (answered SCARD_W_SECURITY_VIOLATION).
 */
bool polkit_gate_request(struct request *rq, enum outcome *out);

#endif
