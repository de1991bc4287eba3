/* polkit's verdicts applied to sessions (see polkit_gate.h). */
#include "polkit_gate.h"

#include <inttypes.h>
#include <stdio.h>

#include <pcsclite.h>

#include "access.h"
#include "daemon.h"
#include "event_loop.h"
#include "log.h"
#include "peer_identity.h"
#include "polkit_check.h"
#include "session.h"

/* After no answer, polkitd is asked again only this much later: meanwhile
 * clients do not wait for a question that cannot be answered. */
#define POLKIT_RETRY_MS 5000

/* Whether to ask now (polkit is on and not known to be silent). */
static bool asking(struct daemon *d)
{
	return d->polkit && (!d->polkit_silent || el_now_ms() >= d->polkit_retry_at);
}

/* Refusals logged per client, as the policy's denials. */
#define REFUSALS_LOGGED 8

static void log_refusal(struct session *s, const char *action, const char *reader, const char *why)
{
	if (s->polkit_logged >= REFUSALS_LOGGED)
		return;
	bool last = ++s->polkit_logged == REFUSALS_LOGGED;
	char who[600], because[360] = "";
	access_identify(s); /* polkit itself is asked with pid and uid only */
	peer_identity_format(&s->identity, who, sizeof(who));
	if (*why)
		snprintf(because, sizeof(because), " (polkitd: %s)", why);
	if (reader)
		log_error("polkit: client %" PRIu64 " (%s): %s refused on \"%s\"%s: "
			  "SCARD_W_SECURITY_VIOLATION%s",
			  s->id, who, action, reader, because,
			  last ? " (further refusals of this client are not logged)" : "");
	else
		log_error("polkit: client %" PRIu64 " (%s): %s refused%s; closing its connection, "
			  "as pcscd does",
			  s->id, who, action, because);
}

static void on_answer(void *ctx, uint64_t session_id, enum polkit_verdict verdict, const char *why)
{
	struct daemon *d = ctx;
	if (verdict == POLKIT_NO_ANSWER) {
		/* A machine without polkitd is usual (info); one that stops answering is not. */
		if (!d->polkit_silent && d->polkit_answered)
			log_error("polkit gives no answer any more (%s): clients are served as "
				  "without polkit (the access policy still applies) until polkitd "
				  "answers again",
				  why);
		else if (!d->polkit_silent)
			log_info("polkit gives no answer (%s): clients are served as without "
				 "polkit (the access policy still applies) until polkitd answers",
				 why);
		d->polkit_silent = true;
		d->polkit_retry_at = el_now_ms() + POLKIT_RETRY_MS;
	} else {
		if (d->polkit_silent)
			log_info("polkit answers: clients are checked by it");
		d->polkit_silent = false;
		d->polkit_answered = true;
	}
	struct session *s = session_by_id(d, session_id);
	if (!s)
		return; /* it left meanwhile */
	if (verdict == POLKIT_REFUSED)
		log_refusal(s, s->auth_for_request ? POLKIT_ACTION_CARD : POLKIT_ACTION_PCSC,
			    s->auth_for_request ? s->parked.u.connect.reader : NULL, why);
	session_auth_answered(s, verdict != POLKIT_REFUSED);
}

void polkit_gate_start(struct daemon *d)
{
	if (d->opts->no_polkit)
		return;
	d->polkit = polkit_check_start(d->loop, on_answer, d);
	if (d->polkit)
		log_info("polkit: clients are checked against %s and %s", POLKIT_ACTION_PCSC,
			 POLKIT_ACTION_CARD);
}

void polkit_gate_stop(struct daemon *d)
{
	polkit_check_stop(d->polkit, d->loop);
	d->polkit = NULL;
}

enum polkit_gate_result polkit_gate_accept(struct session *s)
{
	struct daemon *d = s->d;
	if (!asking(d) || access_refused(s))
		return POLKIT_GATE_PASS; /* (the policy refuses it at its first request) */
	if (!polkit_check_ask(d->polkit, s->id, s->pid, s->uid, POLKIT_ACTION_PCSC, NULL)) {
		log_refusal(s, POLKIT_ACTION_PCSC, NULL, "not asked: too many questions waiting");
		return POLKIT_GATE_REFUSE;
	}
	return POLKIT_GATE_WAIT;
}

void polkit_gate_forget(struct session *s)
{
	if (s->park == PARK_AUTH)
		polkit_check_forget(s->d->polkit, s->id);
}

bool polkit_gate_request(struct request *rq, enum outcome *out)
{
	struct session *s = rq->s;
	if (rq->msg->cmd != WIRE_CONNECT || !asking(s->d))
		return false;
	if (s->auth_granted) /* the retry of a connect polkit allowed */
		return false;
	if (!polkit_check_ask(s->d->polkit, s->id, s->pid, s->uid, POLKIT_ACTION_CARD,
			      rq->msg->u.connect.reader)) {
		/* not asked (too many waiting, a name polkit cannot carry): refused */
		log_refusal(s, POLKIT_ACTION_CARD, rq->msg->u.connect.reader,
			    "not asked: too many questions waiting, or a reader name not in UTF-8");
		*out = reply_rv(s, rq->msg, SCARD_W_SECURITY_VIOLATION);
		return true;
	}
	*out = OUT_AUTH;
	return true;
}
