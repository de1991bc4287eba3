/* One debug line per request, with client, reader and result (see request_log.h). */
#include "request_log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <pcsclite.h>

#include "apdu_log.h"
#include "handles.h"
#include "log.h"
#include "readers.h"
#include "requests.h"
#include "session.h"

#define RV_NAME(code) \
	{ \
		(uint32_t)(code), #code \
	}

/* pcsclite.h's names. 0x8010001F is also SCARD_E_UNEXPECTED; pcsc-lite's
 * daemon means SCARD_E_UNSUPPORTED_FEATURE when it answers it. */
static const struct {
	uint32_t rv;
	const char *name;
} rv_names[] = {
	RV_NAME(SCARD_S_SUCCESS),
	RV_NAME(SCARD_F_INTERNAL_ERROR),
	RV_NAME(SCARD_E_CANCELLED),
	RV_NAME(SCARD_E_INVALID_HANDLE),
	RV_NAME(SCARD_E_INVALID_PARAMETER),
	RV_NAME(SCARD_E_INVALID_TARGET),
	RV_NAME(SCARD_E_NO_MEMORY),
	RV_NAME(SCARD_F_WAITED_TOO_LONG),
	RV_NAME(SCARD_E_INSUFFICIENT_BUFFER),
	RV_NAME(SCARD_E_UNKNOWN_READER),
	RV_NAME(SCARD_E_TIMEOUT),
	RV_NAME(SCARD_E_SHARING_VIOLATION),
	RV_NAME(SCARD_E_NO_SMARTCARD),
	RV_NAME(SCARD_E_UNKNOWN_CARD),
	RV_NAME(SCARD_E_CANT_DISPOSE),
	RV_NAME(SCARD_E_PROTO_MISMATCH),
	RV_NAME(SCARD_E_NOT_READY),
	RV_NAME(SCARD_E_INVALID_VALUE),
	RV_NAME(SCARD_E_SYSTEM_CANCELLED),
	RV_NAME(SCARD_F_COMM_ERROR),
	RV_NAME(SCARD_F_UNKNOWN_ERROR),
	RV_NAME(SCARD_E_INVALID_ATR),
	RV_NAME(SCARD_E_NOT_TRANSACTED),
	RV_NAME(SCARD_E_READER_UNAVAILABLE),
	RV_NAME(SCARD_P_SHUTDOWN),
	RV_NAME(SCARD_E_PCI_TOO_SMALL),
	RV_NAME(SCARD_E_READER_UNSUPPORTED),
	RV_NAME(SCARD_E_DUPLICATE_READER),
	RV_NAME(SCARD_E_CARD_UNSUPPORTED),
	RV_NAME(SCARD_E_NO_SERVICE),
	RV_NAME(SCARD_E_SERVICE_STOPPED),
	RV_NAME(SCARD_E_UNSUPPORTED_FEATURE),
	RV_NAME(SCARD_E_ICC_INSTALLATION),
	RV_NAME(SCARD_E_ICC_CREATEORDER),
	RV_NAME(SCARD_E_DIR_NOT_FOUND),
	RV_NAME(SCARD_E_FILE_NOT_FOUND),
	RV_NAME(SCARD_E_NO_DIR),
	RV_NAME(SCARD_E_NO_FILE),
	RV_NAME(SCARD_E_NO_ACCESS),
	RV_NAME(SCARD_E_WRITE_TOO_MANY),
	RV_NAME(SCARD_E_BAD_SEEK),
	RV_NAME(SCARD_E_INVALID_CHV),
	RV_NAME(SCARD_E_UNKNOWN_RES_MNG),
	RV_NAME(SCARD_E_NO_SUCH_CERTIFICATE),
	RV_NAME(SCARD_E_CERTIFICATE_UNAVAILABLE),
	RV_NAME(SCARD_E_NO_READERS_AVAILABLE),
	RV_NAME(SCARD_E_COMM_DATA_LOST),
	RV_NAME(SCARD_E_NO_KEY_CONTAINER),
	RV_NAME(SCARD_E_SERVER_TOO_BUSY),
	RV_NAME(SCARD_W_UNSUPPORTED_CARD),
	RV_NAME(SCARD_W_UNRESPONSIVE_CARD),
	RV_NAME(SCARD_W_UNPOWERED_CARD),
	RV_NAME(SCARD_W_RESET_CARD),
	RV_NAME(SCARD_W_REMOVED_CARD),
	RV_NAME(SCARD_W_SECURITY_VIOLATION),
	RV_NAME(SCARD_W_WRONG_CHV),
	RV_NAME(SCARD_W_CHV_BLOCKED),
	RV_NAME(SCARD_W_EOF),
	RV_NAME(SCARD_W_CANCELLED_BY_USER),
	RV_NAME(SCARD_W_CARD_NOT_AUTHENTICATED),
};

const char *request_log_rv_name(uint32_t rv)
{
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	return NULL;
}

/* snprintf that never moves past the end: returns the new length. */
static size_t append(char *buf, size_t cap, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static size_t append(char *buf, size_t cap, size_t n, const char *fmt, ...)
{
	if (n + 1 >= cap)
		return n;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
	if (m < 0)
		return n;
	return n + (size_t)m < cap ? n + (size_t)m : cap - 1;
}

size_t request_log_client(char *buf, size_t cap, uint64_t id, pid_t pid, uid_t uid)
{
	if (cap == 0)
		return 0;
	buf[0] = '\0';
	size_t n = append(buf, cap, 0, "client %" PRIu64, id);
	bool has_pid = pid > 0, has_uid = uid != (uid_t)-1;
	if (has_pid && has_uid)
		n = append(buf, cap, n, " (pid %d, uid %u)", (int)pid, (unsigned)uid);
	else if (has_pid)
		n = append(buf, cap, n, " (pid %d)", (int)pid);
	else if (has_uid)
		n = append(buf, cap, n, " (uid %u)", (unsigned)uid);
	return n;
}

size_t request_log_line(char *buf, size_t cap, const struct request_line *l)
{
	size_t n = request_log_client(buf, cap, l->client, l->pid, l->uid);
	n = append(buf, cap, n, ": %s", l->cmd ? l->cmd : "UNKNOWN");
	if (l->detail && l->detail[0])
		n = append(buf, cap, n, " %s", l->detail);
	if (l->reader && l->reader[0])
		n = append(buf, cap, n, " reader \"%s\"", l->reader);
	if (l->outcome && l->outcome[0])
		n = append(buf, cap, n, ": %s", l->outcome);
	if (l->has_rv) {
		const char *name = request_log_rv_name(l->rv);
		n = append(buf, cap, n, ": %s (0x%08" PRIX32 ")", name ? name : "unknown code",
			   l->rv);
	}
	return n;
}

/* ---- the session side ---- */

/* The card handle a request names, if its command has one. */
static bool request_card(const struct wire_msg *msg, int32_t *card)
{
	switch (msg->cmd) {
	case WIRE_RECONNECT: *card = msg->u.reconnect.card; return true;
	case WIRE_DISCONNECT: *card = msg->u.disconnect.card; return true;
	case WIRE_BEGIN_TRANSACTION: *card = msg->u.begin.card; return true;
	case WIRE_END_TRANSACTION: *card = msg->u.end.card; return true;
	case WIRE_TRANSMIT: *card = msg->u.transmit.card; return true;
	case WIRE_CONTROL: *card = msg->u.control.card; return true;
	case WIRE_STATUS: *card = msg->u.status.card; return true;
	case WIRE_GET_ATTRIB:
	case WIRE_SET_ATTRIB: *card = msg->u.getset.card; return true;
	default: return false;
	}
}

static void copy_name(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

void request_log_begin(struct session *s, const struct wire_msg *msg)
{
	if (!log_enabled(LOG_LEVEL_DEBUG) && !log_apdu_enabled())
		return;
	struct request_note *note = &s->note;
	note->cmd = msg->cmd;
	note->was_waiting = s->waiting;
	note->reader[0] = '\0';
	int32_t card;
	if (msg->cmd == WIRE_VERSION) {
		note->major = msg->u.version.major;
		note->minor = msg->u.version.minor;
	} else if (msg->cmd == WIRE_CONNECT) {
		copy_name(note->reader, sizeof(note->reader), msg->u.connect.reader);
	} else if (request_card(msg, &card)) {
		const struct handle *h = handle_find(&s->handles, card);
		if (h)
			copy_name(note->reader, sizeof(note->reader), h->reader->name);
	}
}

static void emit(const struct session *s, const char *detail, const char *outcome, bool has_rv,
		 uint32_t rv)
{
	struct request_line l = {
		.client = s->id,
		.pid = s->pid,
		.uid = s->uid,
		.cmd = wire_cmd_name(s->note.cmd),
		.detail = detail,
		.reader = s->note.reader,
		.outcome = outcome,
		.has_rv = has_rv,
		.rv = rv,
	};
	char line[512];
	request_log_line(line, sizeof(line), &l);
	log_debug("%s", line);
}

/* CMD_VERSION: the version asked for, and what the connection is served in. */
static void emit_version(const struct session *s, uint32_t rv)
{
	char asked[32], served[128];
	snprintf(asked, sizeof(asked), "%d:%d", (int)s->note.major, (int)s->note.minor);
	const struct wire_proto *p = s->params.proto;
	if (rv != SCARD_S_SUCCESS)
		snprintf(served, sizeof(served), "refused (scardd serves %s to %s)",
			 wire_proto_lowest()->name, wire_proto_highest()->name);
	else if (wire_cmd_lookup(p, WIRE_GET_READERS_STATE_ARRAY))
		snprintf(served, sizeof(served),
			 "served %d:%d, %s-endian, reader arrays sized on request", (int)p->major,
			 (int)p->minor, s->params.order == WIRE_BIG_ENDIAN ? "big" : "little");
	else
		snprintf(served, sizeof(served),
			 "served %d:%d, %s-endian, %u-record reader arrays%s", (int)p->major,
			 (int)p->minor, s->params.order == WIRE_BIG_ENDIAN ? "big" : "little",
			 legacy_slots_peek(s), p->reader_name_len == 100 ? ", 100-byte names" : "");
	emit(s, asked, served, true, rv);
}

void request_log_answered(struct session *s, const struct wire_msg *msg)
{
	if (!log_enabled(LOG_LEVEL_DEBUG) || s->note.cmd != msg->cmd)
		return;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(s->params.proto, msg->cmd);
	enum wire_reply_kind kind = spec ? spec->reply : WIRE_REPLY_STRUCT;
	char what[64];
	uint32_t rv = 0;
	switch (kind) {
	case WIRE_REPLY_STATE_ARRAY:
		snprintf(what, sizeof(what), "%u reader records", s->params.reader_slots);
		emit(s, NULL, what, false, 0);
		return;
	case WIRE_REPLY_ARRAY_AND_WAIT:
		snprintf(what, sizeof(what), "%u reader records, waits for a change",
			 s->params.reader_slots);
		emit(s, NULL, what, false, 0);
		return;
	case WIRE_REPLY_WAIT_LATER: emit(s, NULL, "waits for a change", false, 0); return;
	case WIRE_REPLY_INT32:
		snprintf(what, sizeof(what), "%d reader records announced", (int)msg->u.count);
		emit(s, NULL, what, false, 0);
		return;
	case WIRE_REPLY_STRUCT_IF_WAITING:
		if (!s->note.was_waiting) {
			emit(s, NULL, "was not waiting, no answer", false, 0);
			return;
		}
		break;
	case WIRE_REPLY_STRUCT: break;
	}
	if (!wire_msg_get_rv(msg, &rv)) {
		emit(s, NULL, "answered", false, 0);
		return;
	}
	if (msg->cmd == WIRE_VERSION)
		emit_version(s, rv);
	else
		emit(s, NULL, NULL, true, rv);
}

void request_log_rv(struct session *s, uint32_t rv)
{
	if (log_enabled(LOG_LEVEL_DEBUG) && s->note.cmd)
		emit(s, NULL, NULL, true, rv);
}

void request_log_closed(struct session *s)
{
	if (log_enabled(LOG_LEVEL_DEBUG) && s->note.cmd)
		emit(s, NULL, "not served in this protocol version, closing the connection", false,
		     0);
}

/* "client N (pid P, uid U) reader "NAME"": who an APDU line is about. */
static void apdu_who(struct session *s, char *out, size_t size)
{
	size_t n = request_log_client(out, size, s->id, s->pid, s->uid);
	if (s->note.reader[0] && n < size)
		snprintf(out + n, size - n, " reader \"%s\"", s->note.reader);
}

void request_log_apdu(struct session *s, const char *what, const uint8_t *data, size_t len)
{
	if (!log_apdu_enabled())
		return;
	char who[256];
	apdu_who(s, who, sizeof(who));
	char label[320];
	snprintf(label, sizeof(label), "%s %s", who, what);
	log_hex(label, data, len);
}

void request_log_command_apdu(struct session *s, const uint8_t *data, size_t len)
{
	if (!log_apdu_enabled())
		return;
	char who[256];
	apdu_who(s, who, sizeof(who));
	apdu_log_command(who, data, len);
}
