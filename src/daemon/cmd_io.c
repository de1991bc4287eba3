/* Talking to the card and the reader: transmit, control, status, attributes. */
#include <string.h>

#include <pcsclite.h>
#include <reader.h>

#include "apdu_log.h"
#include "cmd_card.h"
#include "device.h"
#include "jobs.h"
#include "log.h"
#include "readers.h"
#include "request_log.h"
#include "requests.h"
#include "session.h"

static void transmit_done(struct daemon *d, struct session *s, struct job *job)
{
	(void)d;
	struct reader *r = device_reader(job->dev, job->slot);
	if (job->card_lost && r && reader_card_present(r)) {
		/* Its handles must not go on as if nothing happened; the worker looks again. */
		reader_card_removed(r);
		log_info("card removed from %s (the driver found none during a transmit)", r->name);
	}
	if (!s)
		return;
	struct wire_transmit *t = &job->msg.u.transmit;
	t->rv = (uint32_t)job->rv;
	t->recv_length = job->rv == SCARD_S_SUCCESS ? (uint32_t)job->rx_len : 0;
	t->recv_pci_protocol = t->send_pci_protocol;
	if (log_apdu_enabled() && job->rv == SCARD_S_SUCCESS)
		request_log_apdu(s, "RAPDU", job->rx, job->rx_len);
	session_send_msg_data(s, &job->msg, job->rx, job->rv == SCARD_S_SUCCESS ? job->rx_len : 0);
}

static struct job *job_with_data(enum job_kind kind, struct reader *r, job_finish_fn *finish,
				 const uint8_t *data, size_t len)
{
	struct job *job = cmd_card_job(kind, r, finish);
	if (job && !job_set_tx(job, data, len)) {
		jobs_release(job);
		return NULL;
	}
	return job;
}

enum outcome cmd_transmit(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_transmit *t = &rq->msg->u.transmit;
	struct handle *h = handle_find(&s->handles, t->card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	long rv = cmd_card_check(h, true);
	if (rv != SCARD_S_SUCCESS)
		return reply_rv(s, rq->msg, rv);
	struct reader *r = h->reader;
	if (!reader_card_present(r))
		return reply_rv(s, rq->msg, SCARD_W_REMOVED_CARD);
	if (h->protocol == 0 ||
	    (t->send_pci_protocol != h->protocol && t->send_pci_protocol != SCARD_PROTOCOL_RAW))
		return reply_rv(s, rq->msg, SCARD_E_PROTO_MISMATCH);
	if (t->recv_length < 2)
		return reply_rv(s, rq->msg, SCARD_E_INSUFFICIENT_BUFFER);
	if (log_apdu_enabled())
		request_log_command_apdu(s, rq->data, rq->data_len);

	struct job *job = job_with_data(JOB_TRANSMIT, r, transmit_done, rq->data, rq->data_len);
	if (!job)
		return reply_rv(s, rq->msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->protocol = t->send_pci_protocol;
	job->rx_cap = t->recv_length;
	rq->job = job;
	return OUT_JOB;
}

static void control_done(struct daemon *d, struct session *s, struct job *job)
{
	(void)d;
	if (!s)
		return;
	struct wire_control *c = &job->msg.u.control;
	c->rv = (uint32_t)job->rv;
	c->bytes_returned = job->rv == SCARD_S_SUCCESS ? (uint32_t)job->rx_len : 0;
	session_send_msg_data(s, &job->msg, job->rx, job->rv == SCARD_S_SUCCESS ? job->rx_len : 0);
}

enum outcome cmd_control(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_control *c = &rq->msg->u.control;
	struct handle *h = handle_find(&s->handles, c->card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	long rv = cmd_card_check(h, false);
	if (rv != SCARD_S_SUCCESS)
		return reply_rv(s, rq->msg, rv);
	struct job *job = job_with_data(JOB_CONTROL, h->reader, control_done, rq->data,
					rq->data_len);
	if (!job)
		return reply_rv(s, rq->msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->code = c->control_code;
	job->rx_cap = c->recv_length;
	rq->job = job;
	return OUT_JOB;
}

enum outcome cmd_status(struct request *rq)
{
	struct session *s = rq->s;
	struct handle *h = handle_find(&s->handles, rq->msg->u.status.card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	return reply_rv(s, rq->msg, cmd_card_check(h, true));
}

/* Attributes the driver does not know but the daemon can answer itself. */
static long own_attribute(const struct reader *r, struct job *job, struct wire_getset *g)
{
	const void *value;
	size_t len;
	switch (job->code) {
	case SCARD_ATTR_DEVICE_FRIENDLY_NAME:
	case SCARD_ATTR_DEVICE_SYSTEM_NAME:
		value = r->name;
		len = strlen(r->name) + 1;
		break;
	case SCARD_ATTR_ATR_STRING:
		if (!reader_card_powered(r))
			return SCARD_E_UNSUPPORTED_FEATURE;
		value = r->atr;
		len = r->atr_len;
		break;
	default: return SCARD_E_UNSUPPORTED_FEATURE;
	}
	if (len > job->rx_cap)
		return SCARD_E_INSUFFICIENT_BUFFER;
	memset(g->attr, 0, sizeof(g->attr));
	memcpy(g->attr, value, len);
	g->attr_len = (uint32_t)len;
	return SCARD_S_SUCCESS;
}

static void attrib_done(struct daemon *d, struct session *s, struct job *job)
{
	(void)d;
	if (!s)
		return;
	struct wire_getset *g = &job->msg.u.getset;
	g->rv = (uint32_t)job->rv;
	if (job->msg.cmd == WIRE_GET_ATTRIB && job->rv == SCARD_S_SUCCESS) {
		memset(g->attr, 0, sizeof(g->attr));
		memcpy(g->attr, job->rx, job->rx_len);
		g->attr_len = (uint32_t)job->rx_len;
	} else if (job->unknown_tag) {
		struct reader *r = device_reader(job->dev, job->slot);
		g->rv = r ? (uint32_t)own_attribute(r, job, g) : SCARD_E_UNSUPPORTED_FEATURE;
	}
	session_send_msg(s, &job->msg);
}

enum outcome cmd_attrib(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_getset *g = &rq->msg->u.getset;
	struct handle *h = handle_find(&s->handles, g->card);
	if (!h)
		return reply_rv(s, rq->msg, SCARD_E_INVALID_HANDLE);
	long rv = cmd_card_check(h, true);
	if (rv != SCARD_S_SUCCESS)
		return reply_rv(s, rq->msg, rv);
	bool get = rq->msg->cmd == WIRE_GET_ATTRIB;
	struct job *job = get ? cmd_card_job(JOB_GET_ATTRIB, h->reader, attrib_done)
			      : job_with_data(JOB_SET_ATTRIB, h->reader, attrib_done, g->attr,
					      g->attr_len);
	if (!job)
		return reply_rv(s, rq->msg, SCARD_E_NO_MEMORY);
	job->card = h->id;
	job->code = g->attr_id;
	job->rx_cap = g->attr_len;
	rq->job = job;
	return OUT_JOB;
}
