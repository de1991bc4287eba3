/*
 * The card-handle commands. Checks and bookkeeping happen here on the loop;
 * anything that talks to the card becomes a job for the reader's worker and
 * is answered from the job's completion.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>
#include <ifdhandler.h>
#include <reader.h>

#include "daemon.h"
#include "dispatch.h"
#include "event_loop.h"
#include "handles.h"
#include "log.h"
#include "reader_worker.h"
#include "readers.h"
#include "session.h"

#define PROTOCOL_ANY_LEGACY 0x1000u /* "any" from old clients, still accepted */

static enum dispatch_result reply(struct session *s, const struct wire_msg *msg)
{
	session_send_msg(s, msg);
	return DISPATCH_DONE;
}

/* Every reply struct ends with rv; set it wherever the command keeps it. */
static uint32_t *rv_of(struct wire_msg *msg)
{
	switch (msg->cmd) {
	case WIRE_CONNECT: return &msg->u.connect.rv;
	case WIRE_RECONNECT: return &msg->u.reconnect.rv;
	case WIRE_DISCONNECT: return &msg->u.disconnect.rv;
	case WIRE_BEGIN_TRANSACTION: return &msg->u.begin.rv;
	case WIRE_END_TRANSACTION: return &msg->u.end.rv;
	case WIRE_TRANSMIT: return &msg->u.transmit.rv;
	case WIRE_CONTROL: return &msg->u.control.rv;
	case WIRE_STATUS: return &msg->u.status.rv;
	default: return &msg->u.getset.rv;
	}
}

static enum dispatch_result fail(struct session *s, struct wire_msg *msg, long rv)
{
	*rv_of(msg) = (uint32_t)rv;
	return reply(s, msg);
}

static long event_warning(const struct handle *h)
{
	switch (h->event) {
	case HANDLE_EVENT_RESET: return SCARD_W_RESET_CARD;
	case HANDLE_EVENT_REMOVED: return SCARD_W_REMOVED_CARD;
	default: return SCARD_S_SUCCESS;
	}
}

/* The common gate: another handle's transaction, then this handle's warnings. */
static long check_handle(const struct handle *h, bool check_events)
{
	if (handle_locked_out(h))
		return SCARD_E_SHARING_VIOLATION;
	if (check_events)
		return event_warning(h);
	return SCARD_S_SUCCESS;
}

static bool card_present(const struct reader *r)
{
	return (r->state & SCARD_PRESENT) != 0;
}

static bool card_powered(const struct reader *r)
{
	return (r->state & SCARD_POWERED) != 0;
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

/*
 * The driver never answered: the client gets SCARD_E_TIMEOUT and goes on;
 * the job's late answer, if any, still updates the reader but reaches nobody.
 */
static void on_job_timeout(struct event_loop *loop, uint64_t id, void *data)
{
	struct session *s = data;
	struct job *job = s->job;
	(void)loop;
	(void)id;
	s->job_timer = 0;
	if (!job)
		return;
	log_error("client %" PRIu64 " (pid %d): %s on %s got no answer from the driver in %u s",
		  s->id, (int)s->pid, wire_cmd_name(job->msg.cmd), job->dev->friendly_name,
		  s->d->opts->driver_timeout_s);
	job->session = NULL;
	s->job = NULL;
	s->park = PARK_NONE;
	struct wire_msg msg = job->msg;
	if (msg.cmd == WIRE_CONNECT) {
		struct handle *h = handle_find(s, job->card);
		if (h)
			handle_free(s->d, h);
	}
	job_abandon(job);
	*rv_of(&msg) = SCARD_E_TIMEOUT;
	session_send_msg(s, &msg);
	session_resume(s);
}

static enum dispatch_result park_job(struct session *s, struct job *job, struct wire_msg *msg)
{
	job->session = s;
	job->msg = *msg;
	s->park = PARK_JOB;
	s->job = job;
	s->job_timer = el_add_timer(s->d->loop, (uint64_t)s->d->opts->driver_timeout_s * 1000,
				    on_job_timeout, s);
	worker_submit(job->dev, job);
	return DISPATCH_PARKED;
}

static struct job *reader_job(enum job_kind kind, struct reader *r, job_done_fn *done)
{
	return job_new(kind, r->dev, r->slot, done);
}

/* Ends a job that was answering a session: unparks it. NULL if the session is gone. */
static struct session *job_session(struct job *job)
{
	struct session *s = job->session;
	if (s) {
		s->park = PARK_NONE;
		s->job = NULL;
		el_del_timer(s->d->loop, s->job_timer);
		s->job_timer = 0;
	}
	return s;
}

static struct reader *job_reader(const struct job *job)
{
	return job->slot < job->dev->n_slots ? job->dev->slots[job->slot] : NULL;
}

/* Applies what a power-changing job did to the card, whoever asked for it. */
static void apply_power_result(struct daemon *d, struct reader *r, const struct job *job)
{
	enum card_power power = job->powered ? CARD_POWERED
				: job->mute  ? CARD_MUTE
					     : CARD_UNPOWERED;
	if (job->atr_changed || (!job->powered && card_present(r) && card_powered(r)))
		reader_card_repowered(r, job->atr, job->atr_len, power);
	if (job->rv == SCARD_S_SUCCESS && job->out_protocol)
		r->protocol = job->out_protocol;
	readers_changed(d);
}

/* Ends a job that may have powered the card: the reader learns first, then the client. */
static struct session *finish_power_job(struct daemon *d, struct job *job)
{
	struct reader *r = job_reader(job);
	if (r)
		apply_power_result(d, r, job);
	return job_session(job);
}

/* ---- SCardConnect ---- */

static void connect_done(struct daemon *d, struct job *job)
{
	struct session *s = finish_power_job(d, job);
	if (!s)
		return;
	struct wire_msg *msg = &job->msg;
	struct handle *h = handle_find(s, job->card);
	if (!h) {
		msg->u.connect.rv = SCARD_E_INVALID_HANDLE;
	} else if (job->rv != SCARD_S_SUCCESS) {
		handle_free(d, h);
		msg->u.connect.rv = (uint32_t)job->rv;
	} else {
		h->pending = false;
		h->protocol = job->out_protocol;
		msg->u.connect.card = h->id;
		msg->u.connect.active_protocol = h->protocol;
		msg->u.connect.rv = SCARD_S_SUCCESS;
	}
	session_send_msg(s, msg);
	session_resume(s);
}

static long connect_checks(struct session *s, const struct wire_connect *c, struct reader *r)
{
	if (!s->has_context || c->context != s->context)
		return SCARD_E_INVALID_HANDLE;
	if (!r)
		return SCARD_E_UNKNOWN_READER;
	if (c->share_mode < SCARD_SHARE_EXCLUSIVE || c->share_mode > SCARD_SHARE_DIRECT)
		return SCARD_E_INVALID_VALUE;
	if (s->n_handles >= s->d->opts->max_handles)
		return SCARD_E_NO_MEMORY;
	long rv = handles_may_share(r, c->share_mode);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (c->share_mode == SCARD_SHARE_DIRECT)
		return SCARD_S_SUCCESS;
	if (!card_present(r))
		return SCARD_E_NO_SMARTCARD;
	if (!protocols_usable(c->preferred_protocols))
		return SCARD_E_PROTO_MISMATCH;
	if (r->protocol && !(usable_protocols(c->preferred_protocols) & r->protocol))
		return SCARD_E_PROTO_MISMATCH;
	return SCARD_S_SUCCESS;
}

enum dispatch_result cmd_connect(struct session *s, struct wire_msg *msg)
{
	struct wire_connect *c = &msg->u.connect;
	struct reader *r = readers_find(&s->d->readers, c->reader);
	c->card = 0;
	c->active_protocol = 0;

	long rv = connect_checks(s, c, r);
	if (rv != SCARD_S_SUCCESS)
		return fail(s, msg, rv);
	/* pcsc-lite makes a connect wait while another handle holds a transaction. */
	if (r->lock_holder) {
		s->parked = *msg;
		lock_wait_enqueue(r, s);
		return DISPATCH_PARKED;
	}

	struct handle *h = handle_new(s->d, s, r, c->share_mode);
	if (!h)
		return fail(s, msg, SCARD_E_NO_MEMORY);
	bool direct = c->share_mode == SCARD_SHARE_DIRECT;
	if (direct || (r->protocol && card_powered(r))) {
		h->protocol = r->protocol;
		c->card = h->id;
		c->active_protocol = h->protocol;
		c->rv = SCARD_S_SUCCESS;
		return reply(s, msg);
	}

	struct job *job = reader_job(JOB_CONNECT, r, connect_done);
	if (!job) {
		handle_free(s->d, h);
		return fail(s, msg, SCARD_E_NO_MEMORY);
	}
	h->pending = true;
	job->card = h->id;
	job->preferred = usable_protocols(c->preferred_protocols);
	return park_job(s, job, msg);
}

/* ---- SCardReconnect ---- */

static void reconnect_done(struct daemon *d, struct job *job)
{
	struct session *s = finish_power_job(d, job);
	if (!s)
		return;
	struct wire_msg *msg = &job->msg;
	struct handle *h = handle_find(s, job->card);
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
	session_resume(s);
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

enum dispatch_result cmd_reconnect(struct session *s, struct wire_msg *msg)
{
	struct wire_reconnect *rc = &msg->u.reconnect;
	struct handle *h = handle_find(s, rc->card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	struct reader *r = h->reader;
	if (rc->share_mode < SCARD_SHARE_EXCLUSIVE || rc->share_mode > SCARD_SHARE_DIRECT ||
	    rc->initialization > SCARD_UNPOWER_CARD)
		return fail(s, msg, SCARD_E_INVALID_VALUE);
	if (handle_locked_out(h))
		return fail(s, msg, SCARD_E_SHARING_VIOLATION);
	if (rc->share_mode == SCARD_SHARE_EXCLUSIVE && h->share_mode != SCARD_SHARE_EXCLUSIVE &&
	    r->sharing > 1)
		return fail(s, msg, SCARD_E_SHARING_VIOLATION);
	bool direct = rc->share_mode == SCARD_SHARE_DIRECT;
	if (!direct && !card_present(r))
		return fail(s, msg, SCARD_E_NO_SMARTCARD);
	if (!direct && !protocols_usable(rc->preferred_protocols))
		return fail(s, msg, SCARD_E_PROTO_MISMATCH);

	h->share_mode = rc->share_mode;
	handles_recount(s->d, r);

	uint32_t action = power_action_for(rc->initialization);
	bool settled = r->protocol && card_powered(r);
	if (action == 0 && (direct || settled)) {
		if (!direct && !(usable_protocols(rc->preferred_protocols) & r->protocol))
			return fail(s, msg, SCARD_E_PROTO_MISMATCH);
		h->event = HANDLE_EVENT_NONE;
		h->protocol = r->protocol;
		rc->active_protocol = h->protocol;
		rc->rv = SCARD_S_SUCCESS;
		return reply(s, msg);
	}
	if (action != 0) {
		/* Everyone else learns of the reset from their next call. */
		handles_flag_all(r, HANDLE_EVENT_RESET, h);
		r->protocol = 0;
	}
	struct job *job = reader_job(JOB_RECONNECT, r, reconnect_done);
	if (!job)
		return fail(s, msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->action = action;
	job->preferred = direct ? 0 : usable_protocols(rc->preferred_protocols);
	return park_job(s, job, msg);
}

/* ---- dispositions: disconnect, end transaction, client death ---- */

static void dispose_done(struct daemon *d, struct job *job)
{
	struct session *s = finish_power_job(d, job);
	if (!s)
		return;
	session_send_msg(s, &job->msg);
	session_resume(s);
}

/*
 * Starts the card-side effect of a disposition. With a session, the session
 * is parked and answered with msg once the card is done; without one (the
 * client is gone) it runs on its own.
 */
static enum dispatch_result dispose(struct session *s, struct reader *r, uint32_t disposition,
				    struct wire_msg *msg)
{
	uint32_t action = power_action_for(disposition);
	if (action == 0 || !card_present(r)) {
		if (s)
			return reply(s, msg);
		return DISPATCH_DONE;
	}
	r->protocol = 0;
	struct job *job = reader_job(JOB_DISPOSE, r, dispose_done);
	if (!job) {
		if (s)
			return reply(s, msg);
		return DISPATCH_DONE;
	}
	job->action = action;
	if (!s) {
		worker_submit(job->dev, job);
		return DISPATCH_DONE;
	}
	return park_job(s, job, msg);
}

enum dispatch_result cmd_disconnect(struct session *s, struct wire_msg *msg)
{
	struct wire_disconnect *dc = &msg->u.disconnect;
	struct handle *h = handle_find(s, dc->card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	if (dc->disposition > SCARD_EJECT_CARD)
		return fail(s, msg, SCARD_E_INVALID_VALUE);
	struct reader *r = h->reader;
	uint32_t disposition = dc->disposition;
	/* Never reset a card under another handle's transaction, nor a card that left. */
	if (handle_locked_out(h) || h->event == HANDLE_EVENT_REMOVED)
		disposition = SCARD_LEAVE_CARD;
	if (disposition != SCARD_LEAVE_CARD)
		handles_flag_all(r, HANDLE_EVENT_RESET, h);
	handle_free(s->d, h);
	dc->rv = SCARD_S_SUCCESS;
	return dispose(s, r, disposition, msg);
}

/*
 * How long a BEGIN waits for another handle's transaction before it is told
 * SCARD_E_SHARING_VIOLATION. pcsc-lite clients retry then, and must: a
 * client library holds its process-wide lock while it waits for an answer,
 * so the transaction's holder, if it lives in the same process, cannot end
 * it until this answer comes. An end from anywhere else is seen at once.
 */
#define BEGIN_WAIT_MS 100

static void on_begin_wait_timeout(struct event_loop *loop, uint64_t id, void *data)
{
	struct session *s = data;
	(void)loop;
	(void)id;
	s->lock_timer = 0;
	struct wire_msg msg = s->parked;
	lock_wait_remove(s);
	fail(s, &msg, SCARD_E_SHARING_VIOLATION);
	session_resume(s);
}

enum dispatch_result cmd_begin(struct session *s, struct wire_msg *msg)
{
	struct handle *h = handle_find(s, msg->u.begin.card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	long rv = event_warning(h);
	if (rv != SCARD_S_SUCCESS)
		return fail(s, msg, rv);
	if (!handle_lock(h)) {
		/* Wait for the holder's end, without polling: its release wakes us. */
		s->parked = *msg;
		lock_wait_enqueue(h->reader, s);
		s->lock_timer = el_add_timer(s->d->loop, BEGIN_WAIT_MS, on_begin_wait_timeout, s);
		return DISPATCH_PARKED;
	}
	msg->u.begin.rv = SCARD_S_SUCCESS;
	return reply(s, msg);
}

enum dispatch_result cmd_end(struct session *s, struct wire_msg *msg)
{
	struct wire_end *e = &msg->u.end;
	struct handle *h = handle_find(s, e->card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	if (e->disposition > SCARD_EJECT_CARD)
		return fail(s, msg, SCARD_E_INVALID_VALUE);
	long rv = event_warning(h);
	if (rv != SCARD_S_SUCCESS)
		return fail(s, msg, rv);
	struct reader *r = h->reader;
	if (handle_locked_out(h))
		return fail(s, msg, SCARD_E_SHARING_VIOLATION);
	if (!handle_unlock(s->d, h))
		return fail(s, msg, SCARD_E_NOT_TRANSACTED);
	e->rv = SCARD_S_SUCCESS;
	if (e->disposition != SCARD_LEAVE_CARD && card_present(r))
		handles_flag_all(r, HANDLE_EVENT_RESET, NULL);
	return dispose(s, r, e->disposition, msg);
}

void session_release_handles(struct session *s)
{
	struct daemon *d = s->d;
	while (s->handles) {
		struct handle *h = s->handles;
		struct reader *r = h->reader;
		uint32_t disposition = SCARD_LEAVE_CARD;
		/* A client gone inside its transaction leaves the card reset, as pcsc-lite does. */
		if (r->lock_holder == h && h->event == HANDLE_EVENT_NONE && card_present(r))
			disposition = SCARD_RESET_CARD;
		if (disposition != SCARD_LEAVE_CARD)
			handles_flag_all(r, HANDLE_EVENT_RESET, h);
		handle_free(d, h);
		dispose(NULL, r, disposition, NULL);
	}
}

/* ---- transmit, control, status, attributes ---- */

static void transmit_done(struct daemon *d, struct job *job)
{
	(void)d;
	struct session *s = job_session(job);
	if (!s)
		return;
	struct wire_transmit *t = &job->msg.u.transmit;
	t->rv = (uint32_t)job->rv;
	t->recv_length = job->rv == SCARD_S_SUCCESS ? (uint32_t)job->rx_len : 0;
	t->recv_pci_protocol = t->send_pci_protocol;
	if (log_apdu_enabled() && job->rv == SCARD_S_SUCCESS)
		log_hex("RAPDU", job->rx, job->rx_len);
	session_send_msg(s, &job->msg);
	if (job->rv == SCARD_S_SUCCESS)
		session_send(s, job->rx, job->rx_len);
	session_resume(s);
}

static struct job *job_with_data(enum job_kind kind, struct reader *r, job_done_fn *done,
				 const uint8_t *data, size_t len)
{
	struct job *job = reader_job(kind, r, done);
	if (!job)
		return NULL;
	job->tx = malloc(len ? len : 1);
	if (!job->tx) {
		job_free(job);
		return NULL;
	}
	memcpy(job->tx, data, len);
	job->tx_len = len;
	return job;
}

enum dispatch_result cmd_transmit(struct session *s, struct wire_msg *msg, const uint8_t *data,
				  size_t len)
{
	struct wire_transmit *t = &msg->u.transmit;
	struct handle *h = handle_find(s, t->card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	long rv = check_handle(h, true);
	if (rv != SCARD_S_SUCCESS)
		return fail(s, msg, rv);
	struct reader *r = h->reader;
	if (!card_present(r))
		return fail(s, msg, SCARD_W_REMOVED_CARD);
	if (h->protocol == 0 || (t->send_pci_protocol != h->protocol &&
				 t->send_pci_protocol != SCARD_PROTOCOL_RAW))
		return fail(s, msg, SCARD_E_PROTO_MISMATCH);
	if (t->recv_length < 2)
		return fail(s, msg, SCARD_E_INSUFFICIENT_BUFFER);
	if (log_apdu_enabled())
		log_hex("APDU", data, len);

	struct job *job = job_with_data(JOB_TRANSMIT, r, transmit_done, data, len);
	if (!job)
		return fail(s, msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->protocol = t->send_pci_protocol;
	job->rx_cap = t->recv_length;
	return park_job(s, job, msg);
}

static void control_done(struct daemon *d, struct job *job)
{
	(void)d;
	struct session *s = job_session(job);
	if (!s)
		return;
	struct wire_control *c = &job->msg.u.control;
	c->rv = (uint32_t)job->rv;
	c->bytes_returned = job->rv == SCARD_S_SUCCESS ? (uint32_t)job->rx_len : 0;
	session_send_msg(s, &job->msg);
	if (job->rv == SCARD_S_SUCCESS)
		session_send(s, job->rx, job->rx_len);
	session_resume(s);
}

enum dispatch_result cmd_control(struct session *s, struct wire_msg *msg, const uint8_t *data,
				 size_t len)
{
	struct wire_control *c = &msg->u.control;
	struct handle *h = handle_find(s, c->card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	long rv = check_handle(h, false);
	if (rv != SCARD_S_SUCCESS)
		return fail(s, msg, rv);
	struct job *job = job_with_data(JOB_CONTROL, h->reader, control_done, data, len);
	if (!job)
		return fail(s, msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->code = c->control_code;
	job->rx_cap = c->recv_length;
	return park_job(s, job, msg);
}

enum dispatch_result cmd_status(struct session *s, struct wire_msg *msg)
{
	struct handle *h = handle_find(s, msg->u.status.card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	return fail(s, msg, check_handle(h, true));
}

static void attrib_done(struct daemon *d, struct job *job)
{
	(void)d;
	struct session *s = job_session(job);
	if (!s)
		return;
	struct wire_getset *g = &job->msg.u.getset;
	g->rv = (uint32_t)job->rv;
	if (job->msg.cmd == WIRE_GET_ATTRIB && job->rv == SCARD_S_SUCCESS) {
		memset(g->attr, 0, sizeof(g->attr));
		memcpy(g->attr, job->rx, job->rx_len);
		g->attr_len = (uint32_t)job->rx_len;
	}
	session_send_msg(s, &job->msg);
	session_resume(s);
}

enum dispatch_result cmd_getset_attrib(struct session *s, struct wire_msg *msg)
{
	struct wire_getset *g = &msg->u.getset;
	struct handle *h = handle_find(s, g->card);
	if (!h)
		return fail(s, msg, SCARD_E_INVALID_HANDLE);
	long rv = check_handle(h, true);
	if (rv != SCARD_S_SUCCESS)
		return fail(s, msg, rv);
	bool get = msg->cmd == WIRE_GET_ATTRIB;
	struct job *job = get ? reader_job(JOB_GET_ATTRIB, h->reader, attrib_done)
			      : job_with_data(JOB_SET_ATTRIB, h->reader, attrib_done, g->attr,
					      g->attr_len);
	if (!job)
		return fail(s, msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->code = g->attr_id;
	job->rx_cap = g->attr_len;
	return park_job(s, job, msg);
}

enum dispatch_result dispatch_retry_parked(struct session *s)
{
	struct wire_msg msg = s->parked;
	if (msg.cmd == WIRE_CONNECT)
		return cmd_connect(s, &msg);
	return cmd_begin(s, &msg);
}
