/*
 * Card-level API: connect, reconnect, disconnect, transactions, transmit,
 * control, status, attributes.
 *
 * A card handle lives on the connection it was made on. Once that connection
 * is gone (daemon died or restarted) the handle is stale: every call answers
 * SCARD_E_NO_SERVICE, except SCardDisconnect, which forgets it and succeeds
 * (the daemon that owned it has released it already).
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static LONG io_result(struct card_ref *ref, LONG rv)
{
	if (rv == CLIENT_CONN_LOST) {
		ctx_lost(ref->ctx);
		return SCARD_E_NO_SERVICE;
	}
	return rv;
}

/* Whether to try again after the daemon's answer (pcsc-lite polls every
 * 100 ms while another handle holds the reader's transaction). */
static bool retry_sharing(LONG rv, bool always)
{
	if (rv != SCARD_E_SHARING_VIOLATION || (!always && client_no_blocking()))
		return false;
	usleep(CLIENT_RETRY_USEC);
	return true;
}

/* One request/reply exchange for a card: fills in the daemon's card number
 * and leaves the daemon's answer (with its rv) in msg. */
static LONG card_call(SCARDHANDLE h, struct wire_msg *msg)
{
	struct card_ref ref;
	LONG rv = card_enter(h, &ref);

	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (!card_link_ok(&ref)) {
		ctx_leave(ref.ctx);
		return SCARD_E_NO_SERVICE;
	}
	/* Every card struct starts with the card number. */
	switch (msg->cmd) {
	case WIRE_RECONNECT: msg->u.reconnect.card = ref.daemon_card; break;
	case WIRE_BEGIN_TRANSACTION: msg->u.begin.card = ref.daemon_card; break;
	case WIRE_END_TRANSACTION: msg->u.end.card = ref.daemon_card; break;
	case WIRE_SET_ATTRIB: msg->u.getset.card = ref.daemon_card; break;
	default: break;
	}
	rv = io_result(&ref, conn_call(&ref.ctx->conn, msg));
	ctx_leave(ref.ctx);
	return rv;
}

struct connect_arg {
	const char *reader;
	DWORD share_mode;
	DWORD protocols;
	struct wire_connect reply;
};

static LONG connect_op(struct client_ctx *c, void *arg)
{
	struct connect_arg *a = arg;
	struct wire_msg msg = { .cmd = WIRE_CONNECT };

	msg.u.connect.context = c->daemon_ctx;
	strncpy(msg.u.connect.reader, a->reader, sizeof(msg.u.connect.reader) - 1);
	msg.u.connect.share_mode = (uint32_t)a->share_mode;
	msg.u.connect.preferred_protocols = (uint32_t)a->protocols;
	LONG rv = conn_call(&c->conn, &msg);
	if (rv == SCARD_S_SUCCESS)
		a->reply = msg.u.connect;
	return rv;
}

LONG SCardConnect(SCARDCONTEXT hContext, LPCSTR szReader, DWORD dwShareMode,
		  DWORD dwPreferredProtocols, LPSCARDHANDLE phCard, LPDWORD pdwActiveProtocol)
{
	if (!phCard || !pdwActiveProtocol)
		return SCARD_E_INVALID_PARAMETER;
	*phCard = 0;
	if (!szReader)
		return SCARD_E_UNKNOWN_READER;
	if (strlen(szReader) > MAX_READERNAME)
		return SCARD_E_INVALID_VALUE;
	struct client_ctx *c = ctx_enter(hContext);
	if (!c)
		return SCARD_E_INVALID_HANDLE;
	struct connect_arg a = { szReader, dwShareMode, dwPreferredProtocols, { 0 } };
	LONG rv = client_call_with_recovery(c, connect_op, &a);
	if (rv == SCARD_S_SUCCESS) {
		*pdwActiveProtocol = a.reply.active_protocol;
		rv = (LONG)a.reply.rv;
	}
	if (rv == SCARD_S_SUCCESS) {
		*phCard = card_add(c, a.reply.card, szReader);
		if (*phCard == 0) {
			struct wire_msg msg = { .cmd = WIRE_DISCONNECT };

			msg.u.disconnect.card = a.reply.card;
			(void)conn_call(&c->conn, &msg);
			rv = SCARD_E_NO_MEMORY;
		}
	}
	ctx_leave(c);
	return rv;
}

LONG SCardReconnect(SCARDHANDLE hCard, DWORD dwShareMode, DWORD dwPreferredProtocols,
		    DWORD dwInitialization, LPDWORD pdwActiveProtocol)
{
	if (!pdwActiveProtocol)
		return SCARD_E_INVALID_PARAMETER;
	struct wire_msg msg;
	LONG rv;
	do {
		memset(&msg, 0, sizeof(msg));
		msg.cmd = WIRE_RECONNECT;
		msg.u.reconnect.share_mode = (uint32_t)dwShareMode;
		msg.u.reconnect.preferred_protocols = (uint32_t)dwPreferredProtocols;
		msg.u.reconnect.initialization = (uint32_t)dwInitialization;
		rv = card_call(hCard, &msg);
		if (rv == SCARD_S_SUCCESS)
			rv = (LONG)msg.u.reconnect.rv;
	} while (retry_sharing(rv, false));
	if (rv == SCARD_S_SUCCESS)
		*pdwActiveProtocol = msg.u.reconnect.active_protocol;
	return rv;
}

LONG SCardDisconnect(SCARDHANDLE hCard, DWORD dwDisposition)
{
	struct card_ref ref;
	LONG rv = card_enter(hCard, &ref);

	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (card_link_ok(&ref)) {
		struct wire_msg msg = { .cmd = WIRE_DISCONNECT };
		msg.u.disconnect.card = ref.daemon_card;
		msg.u.disconnect.disposition = (uint32_t)dwDisposition;
		rv = conn_call(&ref.ctx->conn, &msg);
		if (rv == CLIENT_CONN_LOST)
			ctx_lost(ref.ctx);
		else if (rv == SCARD_S_SUCCESS)
			rv = (LONG)msg.u.disconnect.rv;
	}
	/* A stale handle, or one whose daemon vanished just now: the daemon that
	 * owned it has released it with the connection. */
	if (rv == CLIENT_CONN_LOST || !card_link_ok(&ref))
		rv = SCARD_S_SUCCESS;
	if (rv == SCARD_S_SUCCESS)
		card_remove(hCard);
	ctx_leave(ref.ctx);
	return rv;
}

LONG SCardBeginTransaction(SCARDHANDLE hCard)
{
	struct wire_msg msg;
	LONG rv;

	do {
		memset(&msg, 0, sizeof(msg));
		msg.cmd = WIRE_BEGIN_TRANSACTION;
		rv = card_call(hCard, &msg);
		if (rv == SCARD_S_SUCCESS)
			rv = (LONG)msg.u.begin.rv;
	} while (retry_sharing(rv, true));
	return rv;
}

LONG SCardEndTransaction(SCARDHANDLE hCard, DWORD dwDisposition)
{
	struct wire_msg msg = { .cmd = WIRE_END_TRANSACTION };

	msg.u.end.disposition = (uint32_t)dwDisposition;
	LONG rv = card_call(hCard, &msg);
	return rv == SCARD_S_SUCCESS ? (LONG)msg.u.end.rv : rv;
}

static LONG transmit_once(SCARDHANDLE hCard, const SCARD_IO_REQUEST *send_pci, LPCBYTE send,
			  DWORD send_len, SCARD_IO_REQUEST *recv_pci, LPBYTE recv, LPDWORD recv_len)
{
	struct wire_msg msg = { .cmd = WIRE_TRANSMIT };
	struct wire_transmit *t = &msg.u.transmit;
	DWORD room = *recv_len;
	struct card_ref ref;
	LONG rv = card_enter(hCard, &ref);

	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (send_len > MAX_BUFFER_SIZE_EXTENDED) {
		rv = SCARD_E_INSUFFICIENT_BUFFER;
		goto out;
	}
	if (!card_link_ok(&ref)) {
		rv = SCARD_E_NO_SERVICE;
		goto out;
	}
	if (room > MAX_BUFFER_SIZE_EXTENDED)
		room = MAX_BUFFER_SIZE_EXTENDED; /* no answer can be longer */
	t->card = ref.daemon_card;
	t->send_pci_protocol = (uint32_t)send_pci->dwProtocol;
	t->send_pci_length = (uint32_t)send_pci->cbPciLength;
	t->send_length = (uint32_t)send_len;
	t->recv_pci_protocol = recv_pci ? (uint32_t)recv_pci->dwProtocol : SCARD_PROTOCOL_ANY;
	t->recv_pci_length = recv_pci ? (uint32_t)recv_pci->cbPciLength
				      : (uint32_t)sizeof(SCARD_IO_REQUEST);
	t->recv_length = (uint32_t)room;
	rv = conn_send(&ref.ctx->conn, &msg, send, send_len);
	if (rv == SCARD_S_SUCCESS)
		rv = conn_recv_reply(&ref.ctx->conn, &msg);
	if (rv == SCARD_S_SUCCESS && t->rv == SCARD_S_SUCCESS) {
		if (t->recv_length > room) {
			/* The daemon broke the protocol; we cannot trust the stream. */
			ctx_lost(ref.ctx);
			rv = SCARD_F_COMM_ERROR;
			goto out;
		}
		rv = conn_recv_raw(&ref.ctx->conn, recv, t->recv_length);
		if (rv == SCARD_S_SUCCESS && recv_pci) {
			recv_pci->dwProtocol = t->recv_pci_protocol;
			recv_pci->cbPciLength = t->recv_pci_length;
		}
	}
	rv = io_result(&ref, rv);
	if (rv == SCARD_S_SUCCESS) {
		rv = (LONG)t->rv;
		*recv_len = t->recv_length;
	}
out:
	ctx_leave(ref.ctx);
	return rv;
}

LONG SCardTransmit(SCARDHANDLE hCard, const SCARD_IO_REQUEST *pioSendPci, LPCBYTE pbSendBuffer,
		   DWORD cbSendLength, SCARD_IO_REQUEST *pioRecvPci, LPBYTE pbRecvBuffer,
		   LPDWORD pcbRecvLength)
{
	if (!pbSendBuffer || !pbRecvBuffer || !pcbRecvLength || !pioSendPci)
		return SCARD_E_INVALID_PARAMETER;
	DWORD room = *pcbRecvLength;
	LONG rv;
	do {
		/* A refused attempt may have stored the daemon's length (pcscd sends
		 * 0 with SHARING_VIOLATION); each retry offers the caller's room. */
		*pcbRecvLength = room;
		rv = transmit_once(hCard, pioSendPci, pbSendBuffer, cbSendLength, pioRecvPci,
				   pbRecvBuffer, pcbRecvLength);
	} while (retry_sharing(rv, false));
	return rv;
}

LONG SCardControl(SCARDHANDLE hCard, DWORD dwControlCode, LPCVOID pbSendBuffer, DWORD cbSendLength,
		  LPVOID pbRecvBuffer, DWORD cbRecvLength, LPDWORD lpBytesReturned)
{
	struct wire_msg msg = { .cmd = WIRE_CONTROL };
	struct wire_control *ctl = &msg.u.control;
	DWORD room = pbRecvBuffer ? cbRecvLength : 0;

	if (lpBytesReturned)
		*lpBytesReturned = 0;
	struct card_ref ref;
	LONG rv = card_enter(hCard, &ref);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (cbSendLength > MAX_BUFFER_SIZE_EXTENDED || cbRecvLength > MAX_BUFFER_SIZE_EXTENDED) {
		rv = SCARD_E_INSUFFICIENT_BUFFER;
		goto out;
	}
	if (!pbSendBuffer && cbSendLength > 0) {
		rv = SCARD_E_INVALID_PARAMETER;
		goto out;
	}
	if (!card_link_ok(&ref)) {
		rv = SCARD_E_NO_SERVICE;
		goto out;
	}
	ctl->card = ref.daemon_card;
	ctl->control_code = (uint32_t)dwControlCode;
	ctl->send_length = (uint32_t)cbSendLength;
	ctl->recv_length = (uint32_t)room;
	rv = conn_send(&ref.ctx->conn, &msg, pbSendBuffer, cbSendLength);
	if (rv == SCARD_S_SUCCESS)
		rv = conn_recv_reply(&ref.ctx->conn, &msg);
	if (rv == SCARD_S_SUCCESS && ctl->rv == SCARD_S_SUCCESS) {
		if (ctl->bytes_returned > room) {
			ctx_lost(ref.ctx);
			rv = SCARD_F_COMM_ERROR;
			goto out;
		}
		rv = conn_recv_raw(&ref.ctx->conn, pbRecvBuffer, ctl->bytes_returned);
	}
	rv = io_result(&ref, rv);
	if (rv == SCARD_S_SUCCESS) {
		rv = (LONG)ctl->rv;
		if (lpBytesReturned)
			*lpBytesReturned = ctl->bytes_returned;
	}
out:
	ctx_leave(ref.ctx);
	return rv;
}

/* What SCardStatus reports, taken under the context lock. */
struct status_snapshot {
	char reader[WIRE_MAX_READERNAME];
	DWORD state;
	DWORD protocol;
	uint8_t atr[MAX_ATR_SIZE];
	DWORD atr_len;
};

static LONG status_once(SCARDHANDLE hCard, struct status_snapshot *snap)
{
	struct wire_msg msg = { .cmd = WIRE_STATUS };
	const struct wire_reader_state *rs;
	struct card_ref ref;
	bool together;
	LONG rv = card_enter(hCard, &ref);

	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (!card_link_ok(&ref)) {
		rv = SCARD_E_NO_SERVICE;
		goto out;
	}
	/* The reader's state comes from a fresh array, as pcsc-lite does. On
	 * 4:6 the status is asked with it (one round trip), and asked even if
	 * the reader has gone from the array; else only once it is found. */
	together = ctx_has_sized_arrays(ref.ctx);
	msg.u.status.card = ref.daemon_card;
	rv = io_result(&ref, ctx_fetch_states_and(ref.ctx, together ? &msg : NULL));
	if (rv != SCARD_S_SUCCESS)
		goto out;
	rs = ctx_find_reader(ref.ctx, ref.reader);
	if (!rs) {
		rv = SCARD_E_READER_UNAVAILABLE;
		goto out;
	}
	memcpy(snap->reader, ref.reader, sizeof(snap->reader));
	snap->state = ((DWORD)rs->event_counter << 16) + rs->state;
	snap->protocol = rs->protocol;
	/* 34 means "no ATR yet" in the daemon's bookkeeping. */
	snap->atr_len = rs->atr_len <= MAX_ATR_SIZE ? rs->atr_len : 0;
	memcpy(snap->atr, rs->atr, MAX_ATR_SIZE);
	if (!together)
		rv = io_result(&ref, conn_call(&ref.ctx->conn, &msg));
	if (rv == SCARD_S_SUCCESS)
		rv = (LONG)msg.u.status.rv;
out:
	ctx_leave(ref.ctx);
	return rv;
}

/* Stores a result either in the caller's buffer (at most room bytes) or in a
 * new one (SCARD_AUTOALLOCATE); *allocated tells the caller what to undo. */
static LONG put_result(void *buf, DWORD room, const void *data, DWORD len, DWORD copy_len,
		       bool as_string, void **allocated)
{
	*allocated = NULL;
	if (room == SCARD_AUTOALLOCATE) {
		if (!buf)
			return SCARD_E_INVALID_PARAMETER;
		void *mem = malloc(len > 0 ? len : 1);
		if (!mem)
			return SCARD_E_NO_MEMORY;
		memcpy(mem, data, len);
		*(void **)buf = mem;
		*allocated = mem;
		return SCARD_S_SUCCESS;
	}
	if (!buf)
		return SCARD_S_SUCCESS; /* size query */
	if (as_string)
		strncpy(buf, data, room); /* pcsc-lite fills the room it was given */
	else
		memcpy(buf, data, copy_len < room ? copy_len : room);
	return len > room ? SCARD_E_INSUFFICIENT_BUFFER : SCARD_S_SUCCESS;
}

LONG SCardStatus(SCARDHANDLE hCard, LPSTR szReaderName, LPDWORD pcchReaderLen, LPDWORD pdwState,
		 LPDWORD pdwProtocol, LPBYTE pbAtr, LPDWORD pcbAtrLen)
{
	if (pdwState)
		*pdwState = 0;
	if (pdwProtocol)
		*pdwProtocol = 0;
	DWORD reader_dummy = 0, atr_dummy = 0;
	if (!pcchReaderLen)
		pcchReaderLen = &reader_dummy;
	if (!pcbAtrLen)
		pcbAtrLen = &atr_dummy;
	DWORD reader_room = *pcchReaderLen;
	DWORD atr_room = *pcbAtrLen;
	*pcchReaderLen = 0;
	*pcbAtrLen = 0;

	struct status_snapshot snap;
	LONG rv;
	do {
		rv = status_once(hCard, &snap);
	} while (retry_sharing(rv, false));
	if (rv != SCARD_S_SUCCESS)
		return rv;

	DWORD reader_len = (DWORD)strlen(snap.reader) + 1;
	*pcchReaderLen = reader_len;
	*pcbAtrLen = snap.atr_len;
	if (pdwState)
		*pdwState = snap.state;
	if (pdwProtocol)
		*pdwProtocol = snap.protocol;

	void *reader_mem;
	rv = put_result(szReaderName, reader_room, snap.reader, reader_len, 0, true, &reader_mem);
	if (rv == SCARD_E_INVALID_PARAMETER || rv == SCARD_E_NO_MEMORY)
		return rv;
	void *atr_mem;
	LONG rv2 = put_result(pbAtr, atr_room, snap.atr, snap.atr_len,
			      atr_room < snap.atr_len ? atr_room : snap.atr_len, false, &atr_mem);
	if (rv2 == SCARD_E_INVALID_PARAMETER || rv2 == SCARD_E_NO_MEMORY) {
		if (reader_mem) {
			*(char **)(void *)szReaderName = NULL;
			free(reader_mem);
		}
		return rv2;
	}
	return rv != SCARD_S_SUCCESS ? rv : rv2;
}

LONG SCardGetAttrib(SCARDHANDLE hCard, DWORD dwAttrId, LPBYTE pbAttr, LPDWORD pcbAttrLen)
{
	if (!pcbAttrLen)
		return SCARD_E_INVALID_PARAMETER;
	DWORD room = *pcbAttrLen;
	if (room == SCARD_AUTOALLOCATE && !pbAttr)
		return SCARD_E_INVALID_PARAMETER;
	/* The daemon is always offered the whole protocol buffer (as pcsc-lite
	 * does), so a short caller learns the length it needs; a length query or
	 * an allocation says so in *pcbAttrLen beforehand, as pcsc-lite does. A
	 * caller's buffer larger than the protocol's is fine (pcsc-lite refuses
	 * it with SCARD_E_INSUFFICIENT_BUFFER). */
	bool whole = room == SCARD_AUTOALLOCATE || !pbAttr;
	DWORD offer = MAX_BUFFER_SIZE;
	struct card_ref ref;
	LONG rv = card_enter(hCard, &ref);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (!card_link_ok(&ref)) {
		ctx_leave(ref.ctx);
		return SCARD_E_NO_SERVICE;
	}
	if (whole)
		*pcbAttrLen = MAX_BUFFER_SIZE;
	struct wire_msg msg = { .cmd = WIRE_GET_ATTRIB };
	struct wire_getset *gs = &msg.u.getset;
	gs->card = ref.daemon_card;
	gs->attr_id = (uint32_t)dwAttrId;
	gs->attr_len = (uint32_t)offer;
	rv = io_result(&ref, conn_call(&ref.ctx->conn, &msg));
	ctx_leave(ref.ctx);
	if (rv == SCARD_S_SUCCESS)
		rv = (LONG)gs->rv;
	if (rv == SCARD_S_SUCCESS) {
		void *mem;

		/* the length comes back even when it does not fit (required length) */
		*pcbAttrLen = gs->attr_len;
		if (gs->attr_len > offer || (!whole && gs->attr_len > room))
			rv = SCARD_E_INSUFFICIENT_BUFFER;
		else
			rv = put_result(pbAttr, room, gs->attr, gs->attr_len, gs->attr_len, false,
					&mem);
	}
	explicit_bzero(gs->attr, sizeof(gs->attr)); /* attributes may be secrets */
	return rv;
}

LONG SCardSetAttrib(SCARDHANDLE hCard, DWORD dwAttrId, LPCBYTE pbAttr, DWORD cbAttrLen)
{
	if (!pbAttr || cbAttrLen == 0)
		return SCARD_E_INVALID_PARAMETER;
	struct card_ref ref;
	LONG rv = card_enter(hCard, &ref);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	ctx_leave(ref.ctx);
	if (cbAttrLen > MAX_BUFFER_SIZE)
		return SCARD_E_INSUFFICIENT_BUFFER;
	struct wire_msg msg = { .cmd = WIRE_SET_ATTRIB };
	msg.u.getset.attr_id = (uint32_t)dwAttrId;
	msg.u.getset.attr_len = (uint32_t)cbAttrLen;
	memcpy(msg.u.getset.attr, pbAttr, cbAttrLen);
	rv = card_call(hCard, &msg);
	explicit_bzero(msg.u.getset.attr, sizeof(msg.u.getset.attr));
	return rv == SCARD_S_SUCCESS ? (LONG)msg.u.getset.rv : rv;
}
