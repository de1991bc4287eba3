#include "access.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>

#include "audit.h"
#include "daemon.h"
#include "handles.h"
#include "log.h"
#include "options.h"
#include "peer_identity.h"
#include "policy.h"
#include "readers.h"
#include "session.h"

/* Denials logged per client connection; a client in a loop must not flood the log. */
#define DENIALS_LOGGED 8u

/* What one reader's rule gives this client; serial 0: not decided yet. */
struct access_entry {
	uint64_t serial; /* the reader's (positions are reused) */
	uint32_t rights;
	const struct policy_rule *rule; /* NULL: no rule fits, nothing allowed */
};

void access_state_free(struct access_state *a)
{
	free(a->rules);
	free(a->by_position);
	*a = (struct access_state){ 0 };
}

/* The rules that fit the client, once per policy read (a SIGHUP changes them). */
static void refresh(struct session *s)
{
	struct access_state *a = &s->access;
	const struct policy *p = s->d->policy;
	if (a->gen == s->d->policy_gen)
		return;
	a->gen = s->d->policy_gen;
	a->n_rules = 0;
	a->refused = !policy_admits(p, &s->identity, NULL);
	if (a->by_position)
		memset(a->by_position, 0, a->cap * sizeof(*a->by_position));
	if (a->refused)
		return;
	size_t n = policy_rule_count(p);
	uint32_t *rules = realloc(a->rules, (n ? n : 1) * sizeof(*rules));
	if (!rules) {
		a->refused = true; /* nothing known to be allowed */
		return;
	}
	a->rules = rules;
	for (size_t i = 0; i < n; i++)
		if (policy_rule_fits_peer(policy_rule_at(p, i), &s->identity))
			a->rules[a->n_rules++] = (uint32_t)i;
}

static const struct access_entry *entry(struct session *s, const struct reader *r)
{
	static const struct access_entry nothing = { 0 };
	struct access_state *a = &s->access;
	refresh(s);
	if (a->refused)
		return &nothing;
	if (r->position >= a->cap) {
		size_t cap = a->cap ? a->cap : 16;
		while (cap <= r->position)
			cap *= 2;
		struct access_entry *n = realloc(a->by_position, cap * sizeof(*n));
		if (!n)
			return &nothing;
		memset(n + a->cap, 0, (cap - a->cap) * sizeof(*n));
		a->by_position = n;
		a->cap = cap;
	}
	struct access_entry *e = &a->by_position[r->position];
	if (e->serial != r->serial) {
		*e = (struct access_entry){ .serial = r->serial };
		const struct policy *p = s->d->policy;
		for (size_t i = 0; i < a->n_rules && !e->rule; i++) {
			const struct policy_rule *rule = policy_rule_at(p, a->rules[i]);
			if (policy_rule_fits_reader(rule, r->name)) {
				e->rule = rule;
				e->rights = policy_rule_rights(rule);
			}
		}
	}
	return e;
}

bool access_refused(struct session *s)
{
	if (!s->d->policy)
		return false;
	refresh(s);
	return s->access.refused;
}

bool access_sees(void *ctx, const struct reader *r)
{
	struct session *s = ctx;
	return !s->d->policy || (entry(s, r)->rights & POLICY_LIST);
}

/* ---- denials ---- */

static const char *code_name(long rv)
{
	switch (rv) {
	case SCARD_W_SECURITY_VIOLATION: return "SCARD_W_SECURITY_VIOLATION";
	case SCARD_E_UNKNOWN_READER: return "SCARD_E_UNKNOWN_READER";
	case SCARD_E_INVALID_HANDLE: return "SCARD_E_INVALID_HANDLE";
	default: return "?";
	}
}

/* Which rule said no: "denied by FILE:LINE", "not granted by FILE:LINE", "no rule of FILE fits". */
static void rule_words(const struct policy *p, const struct policy_rule *rule, char *buf,
		       size_t cap)
{
	if (!rule)
		snprintf(buf, cap, "no rule of %s fits", policy_source(p));
	else
		snprintf(buf, cap, "%s by %s:%d",
			 policy_rule_rights(rule) ? "not granted" : "denied", policy_source(p),
			 policy_rule_line(rule));
}

/* policy: client 3 (pid 42 uid 1000 ...): SCardConnect(EXCLUSIVE) on "R 00 00": WHY; CODE */
static void log_denial(struct session *s, const char *what, const struct reader *r, const char *why,
		       long rv)
{
	struct access_state *a = &s->access;
	if (a->denials_logged >= DENIALS_LOGGED)
		return;
	a->denials_logged++;
	char who[600];
	peer_identity_format(&s->identity, who, sizeof(who));
	log_error("policy: client %" PRIu64 " (%s): %s%s%s%s: %s; %s%s", s->id, who, what,
		  r ? " on \"" : "", r ? r->name : "", r ? "\"" : "", why, code_name(rv),
		  a->denials_logged == DENIALS_LOGGED ? " (further denials of this client are "
							"not logged)"
						      : "");
}

static uint32_t share_right(uint32_t share_mode)
{
	switch (share_mode) {
	case SCARD_SHARE_SHARED: return POLICY_SHARED;
	case SCARD_SHARE_EXCLUSIVE: return POLICY_EXCLUSIVE;
	case SCARD_SHARE_DIRECT: return POLICY_DIRECT;
	default: return 0;
	}
}

static const char *share_name(uint32_t share_mode)
{
	switch (share_mode) {
	case SCARD_SHARE_SHARED: return "SHARED";
	case SCARD_SHARE_EXCLUSIVE: return "EXCLUSIVE";
	default: return "DIRECT";
	}
}

static enum outcome deny(struct request *rq, const char *what, const struct reader *r,
			 const struct access_entry *e, long rv)
{
	char why[600];
	rule_words(rq->s->d->policy, e->rule, why, sizeof(why));
	log_denial(rq->s, what, r, why, rv);
	return reply_rv(rq->s, rq->msg, rv);
}

static bool gate_connect(struct request *rq, enum outcome *out)
{
	struct session *s = rq->s;
	struct wire_connect *c = &rq->msg->u.connect;
	struct reader *r = readers_find(&s->d->readers, c->reader);
	uint32_t need = share_right(c->share_mode);
	if (!r || !need)
		return false; /* the handler says what is wrong */
	const struct access_entry *e = entry(s, r);
	if (e->rights & need)
		return false;
	char what[64];
	snprintf(what, sizeof(what), "SCardConnect(%s)", share_name(c->share_mode));
	c->card = 0;
	c->active_protocol = 0;
	*out = deny(rq, what, r, e,
		    e->rights & POLICY_LIST ? SCARD_W_SECURITY_VIOLATION : SCARD_E_UNKNOWN_READER);
	return true;
}

/* Whether the handle's reader's rights allow the request (RECONNECT ... SET_ATTRIB). */
static bool handle_allows(const struct wire_msg *m, const struct handle *h,
			  const struct access_entry *e)
{
	switch (m->cmd) {
	case WIRE_RECONNECT: {
		uint32_t need = share_right(m->u.reconnect.share_mode);
		return !need || (e->rights & need); /* a bad mode: the handler answers */
	}
	case WIRE_BEGIN_TRANSACTION: return e->rights & share_right(h->share_mode);
	case WIRE_TRANSMIT: return e->rights & POLICY_TRANSMIT;
	case WIRE_CONTROL:
		return e->rule && policy_rule_allows_control(e->rule, m->u.control.control_code);
	default: return e->rights & POLICY_CONTROL; /* WIRE_SET_ATTRIB */
	}
}

static void describe_request(const struct wire_msg *m, char *buf, size_t cap)
{
	switch (m->cmd) {
	case WIRE_RECONNECT:
		snprintf(buf, cap, "SCardReconnect(%s)", share_name(m->u.reconnect.share_mode));
		break;
	case WIRE_BEGIN_TRANSACTION: snprintf(buf, cap, "SCardBeginTransaction"); break;
	case WIRE_TRANSMIT: snprintf(buf, cap, "SCardTransmit"); break;
	case WIRE_CONTROL:
		snprintf(buf, cap, "SCardControl(0x%08" PRIX32 ")", m->u.control.control_code);
		break;
	default: snprintf(buf, cap, "SCardSetAttrib(0x%08" PRIX32 ")", m->u.getset.attr_id); break;
	}
}

/* A request on a card handle: the rights of its reader, as the policy now says. */
static bool gate_handle(struct request *rq, int32_t card, enum outcome *out)
{
	struct session *s = rq->s;
	struct handle *h = handle_find(&s->handles, card);
	if (!h || h->reader->removed)
		return false; /* the handler answers */
	const struct access_entry *e = entry(s, h->reader);
	if (handle_allows(rq->msg, h, e))
		return false;
	char what[64];
	describe_request(rq->msg, what, sizeof(what));
	*out = deny(rq, what, h->reader, e, SCARD_W_SECURITY_VIOLATION);
	return true;
}

/*
 * SCardCancel comes on a connection of its own from the process that holds
 * the context. With a policy, it reaches only that process's contexts: a
 * client cannot end another's waits.
 */
static bool gate_cancel(struct request *rq, enum outcome *out)
{
	struct session *s = rq->s;
	struct wire_cancel *c = &rq->msg->u.cancel;
	struct session *target = session_by_context(s->d, (uint32_t)c->context);
	if (!target || target == s)
		return false;
	const struct peer_identity *a = &s->identity, *b = &target->identity;
	if (a->uid == b->uid && a->pid > 0 && a->pid == b->pid)
		return false;
	log_denial(s, "SCardCancel", NULL, "the context is another process's",
		   SCARD_E_INVALID_HANDLE);
	c->rv = SCARD_E_INVALID_HANDLE; /* as if there were no such context */
	*out = reply(s, rq->msg);
	return true;
}

bool access_denies(struct request *rq, enum outcome *out)
{
	struct session *s = rq->s;
	if (!s->d->policy)
		return false;
	refresh(s);
	struct wire_msg *m = rq->msg;
	/* Refused outright: pcsc-lite's polkit refusal, at the first request. */
	if (s->access.refused && !s->versioned) {
		if (m->cmd != WIRE_VERSION) {
			*out = OUT_CLOSE;
			return true;
		}
		char why[600];
		const struct policy_rule *rule = NULL;
		policy_admits(s->d->policy, &s->identity, &rule);
		rule_words(s->d->policy, rule, why, sizeof(why));
		log_denial(s, s->identity.gone ? "connection (its process is gone)" : "connection",
			   NULL, why, SCARD_W_SECURITY_VIOLATION);
		m->u.version.rv = SCARD_W_SECURITY_VIOLATION;
		*out = reply(s, m);
		return true;
	}
	switch (m->cmd) {
	case WIRE_CONNECT: return gate_connect(rq, out);
	case WIRE_RECONNECT: return gate_handle(rq, m->u.reconnect.card, out);
	case WIRE_BEGIN_TRANSACTION: return gate_handle(rq, m->u.begin.card, out);
	case WIRE_TRANSMIT: return gate_handle(rq, m->u.transmit.card, out);
	case WIRE_CONTROL: return gate_handle(rq, m->u.control.card, out);
	case WIRE_SET_ATTRIB: return gate_handle(rq, m->u.getset.card, out);
	case WIRE_CANCEL: return gate_cancel(rq, out);
	default: return false;
	}
}

/* ---- the policy's life ---- */

static bool policy_open(const struct options *opts, struct policy **out)
{
	char err[700];
	*out = policy_load(opts->policy_path, err, sizeof(err));
	if (*out) {
		log_info("policy %s: %zu rule(s)", opts->policy_path, policy_rule_count(*out));
		return true;
	}
	if (errno == ENOENT && !opts->policy_given) {
		log_info("no policy file %s: every client may use every reader, as with pcscd",
			 opts->policy_path);
		return true;
	}
	log_crit("policy: %s; not starting (docs/POLICY.md describes the file)", err);
	return false;
}

bool access_setup_open(const struct options *opts, struct access_setup *setup)
{
	*setup = (struct access_setup){ 0 };
	if (!policy_open(opts, &setup->policy))
		return false;
	if (opts->audit_path) {
		char err[700];
		if (!(setup->audit = audit_open(opts->audit_path, err, sizeof(err)))) {
			log_crit("audit log %s; not starting", err);
			access_setup_drop(setup);
			return false;
		}
		log_info("audit log: %s", opts->audit_path);
	}
	return true;
}

void access_setup_drop(struct access_setup *setup)
{
	policy_free(setup->policy);
	audit_close(setup->audit);
	*setup = (struct access_setup){ 0 };
}

void access_identify(struct session *s)
{
	if (s->identified)
		return;
	peer_identity_read(&s->identity, s->fd, s->pid, s->uid, s->gid, s->connected_ms);
	s->identified = true;
}

void access_connected(struct session *s)
{
	if (s->d->policy || s->d->audit)
		access_identify(s);
}

static void install_policy(struct daemon *d, struct policy *p)
{
	d->policy = p;
	d->policy_gen++;
	for (struct session *s = d->sessions; s; s = s->next)
		access_identify(s);
}

void access_setup_install(struct daemon *d, struct access_setup *setup)
{
	install_policy(d, setup->policy);
	d->audit = setup->audit;
	*setup = (struct access_setup){ 0 };
}

void access_release(struct daemon *d)
{
	policy_free(d->policy);
	audit_close(d->audit);
	d->policy = NULL;
	d->audit = NULL;
}

static void reload_policy(struct daemon *d)
{
	const char *path = d->opts->policy_path;
	char err[700];
	struct policy *p = policy_load(path, err, sizeof(err));
	if (!p) {
		if (errno == ENOENT && !d->policy)
			return; /* still none: everything allowed */
		if (errno == ENOENT)
			log_error("policy: %s is gone; the policy read before stays in force "
				  "(restart scardd to run without one)",
				  path);
		else
			log_error("policy: %s; the policy read before stays in force", err);
		return;
	}
	policy_free(d->policy);
	install_policy(d, p);
	/* Waiting clients fetch their arrays again, through the new policy. */
	readers_mark_changed(&d->readers);
	log_info("policy %s read again: %zu rule(s)", path, policy_rule_count(p));
}

void access_reload(struct daemon *d)
{
	reload_policy(d);
	audit_reopen(d->audit);
}
