/*
 * Card handles: connect, reconnect, disconnect, transactions, and what a
 * client leaves behind when it releases its context or dies. Checks and
 * bookkeeping happen on the loop in the reader model; anything that powers
 * the card becomes a job answered by its finish function.
 */
#include <stdlib.h>

#include <pcsclite.h>
#include <ifdhandler.h>
#include <reader.h>

#include "cmd_card.h"
#include "daemon.h"
#include "device.h"
#include "jobs.h"
#include "readers.h"
#include "requests.h"
#include "session.h"

#define PROTOCOL_ANY_LEGACY 0x1000u /* "any" from old clients, still accepted */

/*
 * How long a BEGIN waits for another handle's transaction before it is told
 * SCARD_E_SHARING_VIOLATION. pcsc-lite clients retry then, and must: a
 * client library holds its process-wide lock while it waits for an answer,
 * so the transaction's holder, if it lives in the same process, cannot end
 * it until this answer comes. An end from anywhere else is seen at once.
 */
#define BEGIN_WAIT_MS 100

static long event_warning(const struct handle *h)
{
	switch (h->event) {
	case HANDLE_EVENT_RESET: return SCARD_W_RESET_CARD;
	case HANDLE_EVENT_REMOVED: return SCARD_W_REMOVED_CARD;
	default: return SCARD_S_SUCCESS;
	}
}

/*
 * A handle whose reader left or does not answer. pcscd forgets the handles
 * of an unplugged USB reader and answers every card command on them with
 * SCARD_E_INVALID_VALUE; applications written for it expect that there.
 */
static long gone_rv(const struct reader *r)
{
	return r->unplugged ? SCARD_E_INVALID_VALUE : SCARD_E_READER_UNAVAILABLE;
}

long cmd_card_check(const struct handle *h, bool check_events)
{
	if (h->reader->removed || h->reader->unavailable)
		return gone_rv(h->reader);
	if (handle_locked_out(h))
		return SCARD_E_SHARING_VIOLATION;
	if (check_events)
		return event_warning(h);
	return SCARD_S_SUCCESS;
}

static bool protocols_usable(uint32_t preferred)
{
	return (preferred & (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1 | SCARD_PROTOCOL_RAW |
			     PROTOCOL_ANY_LEGACY)) != 0;
}

static uint32_t usable_protocols(uint32_t preferred)
{
	if (preferred & PROTOCOL_ANY_LEGACY)
		preferred |= SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1;
	return preferred;
}

struct job *cmd_card_job(enum job_kind kind, struct reader *r, job_finish_fn *finish)
{
	return device_job(r->device, kind, r->slot, finish);
}

/* Applies what a power-changing job did to the card, whoever asked for it. */
static void apply_power_result(struct reader *r, const struct job *job)
{
	enum card_power power = job->powered ? CARD_POWERED
				: job->mute  ? CARD_MUTE
					     : CARD_UNPOWERED;
	if (job->atr_changed || (!job->powered && reader_card_present(r) && reader_card_powered(r)))
		reader_card_repowered(r, job->atr, job->atr_len, power);
	if (job->rv == SCARD_S_SUCCESS && job->out_protocol)
		reader_set_protocol(r, job->out_protocol);
}

/* The reader learns first, then the client. */
static void finish_power_job(const struct job *job)
{
	struct reader *r = device_reader(job->dev, job->slot);
	if (r)
		apply_power_result(r, job);
}

/* ---- SCardConnect ---- */

static void connect_done(struct daemon *d, struct session *s, struct job *job)
{
	(void)d;
	finish_power_job(job);
	if (!s)
		return;
	struct wire_msg *msg = &job->msg;
	struct handle *h = handle_find(&s->handles, job->card);
	if (!h) {
		msg->u.connect.rv = SCARD_E_INVALID_HANDLE;
	} else if (job->rv != SCARD_S_SUCCESS) {
		handle_free(h);
		msg->u.connect.rv = (uint32_t)job->rv;
	} else {
		h->protocol = job->out_protocol;
		msg->u.connect.card = h->id;
		msg->u.connect.active_protocol = h->protocol;
		msg->u.connect.rv = SCARD_S_SUCCESS;
	}
	session_send_msg(s, msg);
}

void cmd_connect_timed_out(struct session *s, const struct job *job)
{
	struct handle *h = handle_find(&s->handles, job->card);
	if (h)
		handle_free(h);
}

/* The reader's card handles, all clients together, counted up to cap. */
static unsigned reader_handle_count(const struct reader *r, unsigned cap)
{
	unsigned n = 0;
	for (const struct handle *h = r->handles; h && n < cap; h = h->next_in_reader)
		n++;
	return n;
}

static long connect_checks(struct session *s, const struct wire_connect *c, struct reader *r)
{
	if (!s->has_context || c->context != s->context)
		return SCARD_E_INVALID_HANDLE;
	if (!r)
		return SCARD_E_UNKNOWN_READER;
	if (c->share_mode < SCARD_SHARE_EXCLUSIVE || c->share_mode > SCARD_SHARE_DIRECT)
		return SCARD_E_INVALID_VALUE;
	if (r->unavailable)
		return SCARD_E_READER_UNAVAILABLE;
	long rv = handles_may_share(r, c->share_mode);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (c->share_mode != SCARD_SHARE_DIRECT) {
		if (!reader_card_present(r))
			return SCARD_E_NO_SMARTCARD;
		if (!protocols_usable(c->preferred_protocols))
			return SCARD_E_PROTO_MISMATCH;
		if (r->protocol && !(usable_protocols(c->preferred_protocols) & r->protocol))
			return SCARD_E_PROTO_MISMATCH;
	}
	/* Counted like pcsc-lite: only a connect that could otherwise succeed hits a limit. */
	unsigned per_reader = s->d->opts->max_reader_handles;
	if (per_reader && reader_handle_count(r, per_reader) >= per_reader)
		return SCARD_F_INTERNAL_ERROR; /* pcscd's -r answer */
	if (s->handles.n >= s->d->opts->max_handles)
		return SCARD_E_NO_MEMORY;
	return SCARD_S_SUCCESS;
}

enum outcome cmd_connect(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_connect *c = &rq->msg->u.connect;
	struct reader *r = readers_find(&s->d->readers, c->reader);
	c->card = 0;
	c->active_protocol = 0;

	long rv = connect_checks(s, c, r);
	if (rv != SCARD_S_SUCCESS)
		return reply_rv(s, rq->msg, rv);
	/* pcsc-lite makes a connect wait while another handle holds a transaction. */
	if (r->lock_holder) {
		rq->lock_reader = r;
		rq->lock_wait_ms = 0;
		return OUT_WAIT_LOCK;
	}

	struct handle *h = handle_new(&s->handles, r, c->share_mode);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_NO_MEMORY);
	bool direct = c->share_mode == SCARD_SHARE_DIRECT;
	if (direct || (r->protocol && reader_card_powered(r))) {
		h->protocol = r->protocol;
		c->card = h->id;
		c->active_protocol = h->protocol;
		c->rv = SCARD_S_SUCCESS;
		return reply(s, rq->msg);
	}

	struct job *job = cmd_card_job(JOB_CONNECT, r, connect_done);
	if (!job) {
		handle_free(h);
		return reply_rv(s, rq->msg, SCARD_E_NO_MEMORY);
	}
	job->card = h->id;
	job->preferred = usable_protocols(c->preferred_protocols);
	rq->job = job;
	return OUT_JOB;
}

/* ---- SCardReconnect ---- */

static void reconnect_done(struct daemon *d, struct session *s, struct job *job)
{
	(void)d;
	finish_power_job(job);
	if (!s)
		return;
	struct wire_msg *msg = &job->msg;
	struct handle *h = handle_find(&s->handles, job->card);
	if (!h) {
		msg->u.reconnect.rv = SCARD_E_INVALID_HANDLE;
	} else {
		msg->u.reconnect.rv = (uint32_t)job->rv;
		if (job->rv == SCARD_S_SUCCESS) {
			h->event = HANDLE_EVENT_NONE;
			h->protocol = job->out_protocol;
			msg->u.reconnect.active_protocol = h->protocol;
		}
	}
	session_send_msg(s, msg);
}

static uint32_t power_action_for(uint32_t disposition)
{
	switch (disposition) {
	case SCARD_RESET_CARD: return IFD_RESET;
	case SCARD_UNPOWER_CARD:
	case SCARD_EJECT_CARD: return IFD_POWER_DOWN;
	default: return 0;
	}
}

enum outcome cmd_reconnect(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_reconnect *rc = &rq->msg->u.reconnect;
	struct handle *h = handle_find(&s->handles, rc->card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	struct reader *r = h->reader;
	if (rc->share_mode < SCARD_SHARE_EXCLUSIVE || rc->share_mode > SCARD_SHARE_DIRECT ||
	    rc->initialization > SCARD_UNPOWER_CARD)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_VALUE);
	long rv = cmd_card_check(h, false);
	if (rv != SCARD_S_SUCCESS)
		return reply_rv(s, rq->msg, rv);
	if (rc->share_mode == SCARD_SHARE_EXCLUSIVE && h->share_mode != SCARD_SHARE_EXCLUSIVE &&
	    r->sharing > 1)
		return reply_rv(s, rq->msg, SCARD_E_SHARING_VIOLATION);
	bool direct = rc->share_mode == SCARD_SHARE_DIRECT;
	if (!direct && !reader_card_present(r))
		return reply_rv(s, rq->msg, SCARD_E_NO_SMARTCARD);
	if (!direct && !protocols_usable(rc->preferred_protocols))
		return reply_rv(s, rq->msg, SCARD_E_PROTO_MISMATCH);

	handle_set_share_mode(h, rc->share_mode);

	uint32_t action = power_action_for(rc->initialization);
	bool settled = r->protocol && reader_card_powered(r);
	if (action == 0 && (direct || settled)) {
		if (!direct && !(usable_protocols(rc->preferred_protocols) & r->protocol))
			return reply_rv(s, rq->msg, SCARD_E_PROTO_MISMATCH);
		h->event = HANDLE_EVENT_NONE;
		h->protocol = r->protocol;
		rc->active_protocol = h->protocol;
		rc->rv = SCARD_S_SUCCESS;
		return reply(s, rq->msg);
	}
	if (action != 0) {
		/* Everyone else learns of the reset from their next call. */
		handles_flag_all(r, HANDLE_EVENT_RESET, h);
		reader_set_protocol(r, 0);
	}
	struct job *job = cmd_card_job(JOB_RECONNECT, r, reconnect_done);
	if (!job)
		return reply_rv(s, rq->msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->action = action;
	job->preferred = direct ? 0 : usable_protocols(rc->preferred_protocols);
	rq->job = job;
	return OUT_JOB;
}

/* ---- dispositions: disconnect, end transaction, client death ---- */

static void dispose_done(struct daemon *d, struct session *s, struct job *job)
{
	(void)d;
	finish_power_job(job);
	if (s)
		session_send_msg(s, &job->msg);
}

/*
 * The card-side effect of a disposition, as a job: NULL when there is none
 * (leave, no card, reader gone) or memory ran out.
 */
static struct job *dispose_job(struct reader *r, uint32_t disposition)
{
	uint32_t action = power_action_for(disposition);
	if (action == 0 || !reader_card_present(r) || r->removed)
		return NULL;
	reader_set_protocol(r, 0);
	struct job *job = cmd_card_job(JOB_DISPOSE, r, dispose_done);
	if (job)
		job->action = action;
	return job;
}

/* Answers msg once the disposition is done (at once when there is none). */
static enum outcome dispose(struct request *rq, struct reader *r, uint32_t disposition)
{
	rq->job = dispose_job(r, disposition);
	return rq->job ? OUT_JOB : reply(rq->s, rq->msg);
}

enum outcome cmd_disconnect(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_disconnect *dc = &rq->msg->u.disconnect;
	struct handle *h = handle_find(&s->handles, dc->card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	if (dc->disposition > SCARD_EJECT_CARD)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_VALUE);
	struct reader *r = h->reader;
	reader_ref(r);
	uint32_t disposition = dc->disposition;
	/* Never reset a card under another handle's transaction, nor a card that left. */
	if (handle_locked_out(h) || h->event == HANDLE_EVENT_REMOVED)
		disposition = SCARD_LEAVE_CARD;
	if (disposition != SCARD_LEAVE_CARD)
		handles_flag_all(r, HANDLE_EVENT_RESET, h);
	handle_free(h);
	dc->rv = SCARD_S_SUCCESS;
	enum outcome out = dispose(rq, r, disposition);
	reader_unref(r);
	return out;
}

enum outcome cmd_begin(struct request *rq)
{
	struct session *s = rq->s;
	struct handle *h = handle_find(&s->handles, rq->msg->u.begin.card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	if (h->reader->removed || h->reader->unavailable)
		return reply_rv(s, rq->msg, gone_rv(h->reader));
	long rv = event_warning(h);
	if (rv != SCARD_S_SUCCESS)
		return reply_rv(s, rq->msg, rv);
	if (!handle_lock(h)) {
		/* Wait for the holder's end, without polling: its release wakes us. */
		rq->lock_reader = h->reader;
		rq->lock_wait_ms = BEGIN_WAIT_MS;
		return OUT_WAIT_LOCK;
	}
	return reply_rv(s, rq->msg, SCARD_S_SUCCESS);
}

enum outcome cmd_end(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_end *e = &rq->msg->u.end;
	struct handle *h = handle_find(&s->handles, e->card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	if (e->disposition > SCARD_EJECT_CARD)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_VALUE);
	if (h->reader->removed || h->reader->unavailable)
		return reply_rv(s, rq->msg, gone_rv(h->reader));
	long rv = event_warning(h);
	if (rv != SCARD_S_SUCCESS)
		return reply_rv(s, rq->msg, rv);
	struct reader *r = h->reader;
	if (handle_locked_out(h))
		return reply_rv(s, rq->msg, SCARD_E_SHARING_VIOLATION);
	if (!handle_unlock(h))
		return reply_rv(s, rq->msg, SCARD_E_NOT_TRANSACTED);
	e->rv = SCARD_S_SUCCESS;
	if (e->disposition != SCARD_LEAVE_CARD && reader_card_present(r))
		handles_flag_all(r, HANDLE_EVENT_RESET, NULL);
	return dispose(rq, r, e->disposition);
}

void session_release_handles(struct session *s)
{
	while (s->handles.head) {
		struct handle *h = s->handles.head;
		struct reader *r = h->reader;
		uint32_t disposition = SCARD_LEAVE_CARD;
		/* A client gone inside its transaction leaves the card reset, as pcsc-lite does. */
		if (r->lock_holder == h && h->event == HANDLE_EVENT_NONE && reader_card_present(r))
			disposition = SCARD_RESET_CARD;
		if (disposition != SCARD_LEAVE_CARD)
			handles_flag_all(r, HANDLE_EVENT_RESET, h);
		reader_ref(r);
		handle_free(h);
		struct job *job = dispose_job(r, disposition);
		if (job)
			jobs_submit(&s->d->jobs, job);
		reader_unref(r);
	}
}
