#include "card_ops.h"

#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>
#include <reader.h>

#include "atr.h"
#include "driver.h"
#include "job.h"
#include "log.h"
#include "worker.h"

long card_ops_power(struct worker *w, unsigned slot, uint32_t action)
{
	struct slot_state *ss = &w->slots[slot];
	uint8_t atr[WIRE_MAX_ATR_SIZE + 31];
	DWORD len = sizeof(atr);
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.power_icc(worker_lun(w, slot), action, atr, &len);
	worker_drv_leave(w);
	ss->protocol = 0;
	if (action == IFD_POWER_DOWN) {
		ss->powered = false;
		return rc;
	}
	ss->powered = rc == IFD_SUCCESS;
	ss->mute = !ss->powered;
	ss->atr_len = 0;
	if (ss->powered) {
		ss->atr_len = len < WIRE_MAX_ATR_SIZE ? len : WIRE_MAX_ATR_SIZE;
		memcpy(ss->atr, atr, ss->atr_len);
	}
	return rc;
}

void card_ops_report(struct job *job, const struct worker *w, unsigned slot, bool atr_changed)
{
	const struct slot_state *ss = &w->slots[slot];
	job->present = ss->present;
	job->powered = ss->powered;
	job->mute = ss->present && ss->mute;
	job->unavailable = ss->gone;
	job->atr_changed = atr_changed;
	job->atr_len = ss->atr_len;
	memcpy(job->atr, ss->atr, ss->atr_len);
}

/* ---- protocol negotiation ---- */

static long negotiate(struct worker *w, unsigned slot, uint32_t preferred, uint32_t *out)
{
	struct slot_state *ss = &w->slots[slot];
	if (ss->protocol) {
		if (!(preferred & ss->protocol) && !(preferred & SCARD_PROTOCOL_RAW))
			return SCARD_E_PROTO_MISMATCH;
		*out = (preferred & ss->protocol) ? ss->protocol : SCARD_PROTOCOL_RAW;
		return SCARD_S_SUCCESS;
	}
	struct atr_info info;
	if (atr_parse(ss->atr, ss->atr_len, &info) < 0) {
		/* An ATR we cannot read: assume the ISO default, T=0. */
		memset(&info, 0, sizeof(info));
		info.protocols = info.default_protocol = SCARD_PROTOCOL_T0;
	}
	uint32_t chosen = 0;
	bool need_pps = false;
	long rv = atr_choose_protocol(&info, preferred, &chosen, &need_pps);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (chosen != SCARD_PROTOCOL_RAW && w->cfg.drv->ops.set_protocol_parameters) {
		worker_drv_enter(w);
		RESPONSECODE rc = w->cfg.drv->ops.set_protocol_parameters(worker_lun(w, slot),
									  chosen, 0, 0, 0, 0);
		worker_drv_leave(w);
		if (rc == IFD_NOT_SUPPORTED || rc == IFD_ERROR_NOT_SUPPORTED) {
			/* The reader cannot switch: only the card's default works. */
			if (need_pps) {
				if (!(preferred & info.default_protocol))
					return SCARD_E_PROTO_MISMATCH;
				chosen = info.default_protocol;
			}
		} else if (rc == IFD_PROTOCOL_NOT_SUPPORTED) {
			return SCARD_E_PROTO_MISMATCH;
		} else if (rc != IFD_SUCCESS) {
			/* The card did not take the switch (PPS failed): pcscd's answer. */
			log_error("protocol negotiation failed on %s (driver code %ld)", w->name,
				  (long)rc);
			return SCARD_W_UNRESPONSIVE_CARD;
		}
	}
	ss->protocol = chosen;
	*out = chosen;
	return SCARD_S_SUCCESS;
}

/* ---- the jobs ---- */

static void run_connect(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	bool repowered = false;
	if (!ss->present) {
		job->rv = SCARD_E_NO_SMARTCARD;
		return;
	}
	if (!ss->powered) {
		/* Also a second chance for a card that was mute at insertion, as pcscd gives. */
		repowered = true;
		if (card_ops_power(w, job->slot, IFD_POWER_UP) != IFD_SUCCESS) {
			job->rv = SCARD_W_UNPOWERED_CARD;
			card_ops_report(job, w, job->slot, true);
			return;
		}
	}
	job->rv = negotiate(w, job->slot, job->preferred, &job->out_protocol);
	card_ops_report(job, w, job->slot, repowered);
}

static void run_reconnect(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	bool repowered = false;
	if (!ss->present) {
		job->rv = SCARD_E_NO_SMARTCARD;
		return;
	}
	if (job->action == IFD_RESET || job->action == IFD_POWER_DOWN || !ss->powered) {
		if (job->action == IFD_POWER_DOWN)
			card_ops_power(w, job->slot, IFD_POWER_DOWN);
		DWORD up = job->action == IFD_RESET && ss->powered ? IFD_RESET : IFD_POWER_UP;
		repowered = true;
		if (card_ops_power(w, job->slot, up) != IFD_SUCCESS) {
			job->rv = SCARD_W_UNRESPONSIVE_CARD;
			card_ops_report(job, w, job->slot, true);
			return;
		}
	}
	job->rv = SCARD_S_SUCCESS;
	if (job->preferred)
		job->rv = negotiate(w, job->slot, job->preferred, &job->out_protocol);
	else
		job->out_protocol = ss->protocol;
	card_ops_report(job, w, job->slot, repowered);
}

static void run_dispose(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	job->rv = SCARD_S_SUCCESS;
	if (!ss->present) {
		card_ops_report(job, w, job->slot, false);
		return;
	}
	RESPONSECODE rc = card_ops_power(w, job->slot, job->action);
	if (rc != IFD_SUCCESS)
		log_error("%s: power action %lu failed (driver code %ld)", w->name,
			  (unsigned long)job->action, (long)rc);
	card_ops_report(job, w, job->slot, job->action != IFD_POWER_DOWN);
}

static long map_transmit_rc(RESPONSECODE rc)
{
	switch (rc) {
	case IFD_SUCCESS: return SCARD_S_SUCCESS;
	case IFD_NO_SUCH_DEVICE: return SCARD_E_READER_UNAVAILABLE;
	case IFD_ICC_NOT_PRESENT: return SCARD_E_NO_SMARTCARD;
	default: return SCARD_E_NOT_TRANSACTED;
	}
}

/* Keeps the answer: the scratch buffer is the driver's, the copy the job's. */
static bool keep_rx(struct job *job, const uint8_t *rx, size_t len)
{
	job->rx = malloc(len ? len : 1);
	if (!job->rx)
		return false;
	memcpy(job->rx, rx, len);
	job->rx_len = len;
	return true;
}

/*
 * The driver's receive buffer, cleared (0.5 us for the largest), so that a
 * length the driver reports but did not write shows zeros, never an earlier
 * answer: the buffer is the device's, and that answer another client's.
 */
static size_t rx_buffer(struct worker *w, uint32_t rx_cap)
{
	size_t cap = rx_cap < WIRE_MAX_BUFFER_SIZE_EXTENDED ? rx_cap
							    : WIRE_MAX_BUFFER_SIZE_EXTENDED;
	memset(w->scratch, 0, cap);
	return cap;
}

/* The card the driver just told us about is gone: as a removal, then a fresh look. */
static void card_lost(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	ss->present = ss->powered = ss->mute = false;
	ss->protocol = 0;
	ss->atr_len = 0;
	job->card_lost = true;
	worker_check_presence(w);
}

static void run_transmit(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	if (!ss->present) {
		job->rv = ss->gone ? SCARD_E_READER_UNAVAILABLE : SCARD_W_REMOVED_CARD;
		return;
	}
	SCARD_IO_HEADER send_pci = { .Protocol = 0, .Length = 0 };
	SCARD_IO_HEADER recv_pci = { .Protocol = 0, .Length = 0 };
	/* Drivers take T=0 as 0 and T=1 as 1, not the SCARD_PROTOCOL bits. */
	if (job->protocol == SCARD_PROTOCOL_T1)
		send_pci.Protocol = 1;
	else if (job->protocol == SCARD_PROTOCOL_RAW)
		send_pci.Protocol = SCARD_PROTOCOL_RAW;
	/* The whole buffer, as pcscd gives: an answer too long for the client is
	 * then SCARD_E_INSUFFICIENT_BUFFER, not a driver error. */
	size_t cap = rx_buffer(w, WIRE_MAX_BUFFER_SIZE_EXTENDED);
	DWORD rx_len = (DWORD)cap;
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.transmit_to_icc(worker_lun(w, job->slot), send_pci,
							  job->tx, job->tx_len, w->scratch, &rx_len,
							  &recv_pci);
	worker_drv_leave(w);
	job->rv = map_transmit_rc(rc);
	if (rc == IFD_ICC_NOT_PRESENT)
		card_lost(w, job);
	if (job->rv != SCARD_S_SUCCESS)
		return;
	if (rx_len > cap)
		log_error("%s: the driver answered %lu bytes into a %zu-byte buffer", w->name,
			  (unsigned long)rx_len, cap);
	if (rx_len > cap || rx_len > job->rx_cap) {
		job->rv = SCARD_E_INSUFFICIENT_BUFFER;
		return;
	}
	if (!keep_rx(job, w->scratch, rx_len))
		job->rv = SCARD_E_NO_MEMORY;
}

static void run_control(struct worker *w, struct job *job)
{
	size_t cap = rx_buffer(w, job->rx_cap);
	const struct ifd_ops *ops = &w->cfg.drv->ops;
	DWORD returned = 0;
	RESPONSECODE rc;
	worker_drv_enter(w);
	if (ops->control_v3) {
		rc = ops->control_v3(worker_lun(w, job->slot), job->code, job->tx, job->tx_len,
				     w->scratch, cap, &returned);
	} else {
		returned = cap;
		rc = ops->control_v2(worker_lun(w, job->slot), job->tx, job->tx_len, w->scratch,
				     &returned);
	}
	worker_drv_leave(w);
	switch (rc) {
	case IFD_SUCCESS:
		if (returned > cap) {
			job->rv = SCARD_E_INSUFFICIENT_BUFFER;
			break;
		}
		job->rv = keep_rx(job, w->scratch, returned) ? SCARD_S_SUCCESS : SCARD_E_NO_MEMORY;
		break;
	case IFD_NOT_SUPPORTED:
	case IFD_ERROR_NOT_SUPPORTED: job->rv = SCARD_E_UNSUPPORTED_FEATURE; break;
	case IFD_ERROR_INSUFFICIENT_BUFFER: job->rv = SCARD_E_INSUFFICIENT_BUFFER; break;
	case IFD_NO_SUCH_DEVICE: job->rv = SCARD_E_READER_UNAVAILABLE; break;
	default: job->rv = SCARD_E_NOT_TRANSACTED; break;
	}
}

static void run_get_attrib(struct worker *w, struct job *job)
{
	if (job->rx_cap > WIRE_MAX_BUFFER_SIZE)
		job->rx_cap = WIRE_MAX_BUFFER_SIZE;
	DWORD len = job->rx_cap;
	memset(w->scratch, 0, WIRE_MAX_BUFFER_SIZE);
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.get_capabilities(worker_lun(w, job->slot), job->code,
							   &len, w->scratch);
	worker_drv_leave(w);
	switch (rc) {
	case IFD_SUCCESS:
		if (len > job->rx_cap) {
			job->rv = SCARD_E_INSUFFICIENT_BUFFER;
			break;
		}
		job->rv = keep_rx(job, w->scratch, len) ? SCARD_S_SUCCESS : SCARD_E_NO_MEMORY;
		break;
	case IFD_ERROR_TAG:
		/* the daemon may know it (names, ATR): the loop answers */
		job->unknown_tag = true;
		job->rv = SCARD_E_UNSUPPORTED_FEATURE;
		break;
	case IFD_ERROR_INSUFFICIENT_BUFFER: job->rv = SCARD_E_INSUFFICIENT_BUFFER; break;
	default: job->rv = SCARD_E_NOT_TRANSACTED; break;
	}
}

static void run_set_attrib(struct worker *w, struct job *job)
{
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.set_capabilities(worker_lun(w, job->slot), job->code,
							   job->tx_len, job->tx);
	worker_drv_leave(w);
	switch (rc) {
	case IFD_SUCCESS: job->rv = SCARD_S_SUCCESS; break;
	case IFD_ERROR_TAG: job->rv = SCARD_E_UNSUPPORTED_FEATURE; break;
	default: job->rv = SCARD_E_NOT_TRANSACTED; break;
	}
}

void card_ops_run(struct worker *w, struct job *job)
{
	if (job->slot >= w->n_slots) {
		job->rv = SCARD_E_READER_UNAVAILABLE;
		return;
	}
	switch (job->kind) {
	case JOB_CONNECT: run_connect(w, job); break;
	case JOB_RECONNECT: run_reconnect(w, job); break;
	case JOB_DISPOSE: run_dispose(w, job); break;
	case JOB_TRANSMIT: run_transmit(w, job); break;
	case JOB_CONTROL: run_control(w, job); break;
	case JOB_GET_ATTRIB: run_get_attrib(w, job); break;
	case JOB_SET_ATTRIB: run_set_attrib(w, job); break;
	default: job->rv = SCARD_F_INTERNAL_ERROR; break;
	}
}
