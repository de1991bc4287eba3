#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pcsclite.h>

#include "handles.h"
#include "log.h"
#include "peer_identity.h"
#include "readers.h"
#include "session.h"
#include "text_out.h"

#define AUDIT_LINE_MAX 2048u

struct audit {
	char *path;
	int fd;
};

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0640);
}

struct audit *audit_open(const char *path, char *err, size_t err_cap)
{
	struct audit *a = calloc(1, sizeof(*a));
	if (!a || !(a->path = strdup(path))) {
		snprintf(err, err_cap, "%s: out of memory", path);
		free(a);
		return NULL;
	}
	a->fd = open_file(path);
	if (a->fd < 0) {
		snprintf(err, err_cap, "%s: %s", path, strerror(errno));
		free(a->path);
		free(a);
		return NULL;
	}
	return a;
}

void audit_reopen(struct audit *a)
{
	if (!a)
		return;
	int fd = open_file(a->path);
	if (fd < 0) {
		log_error("audit log %s: %s; writing on to the file open before", a->path,
			  strerror(errno));
		return;
	}
	close(a->fd);
	a->fd = fd;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	close(a->fd);
	free(a->path);
	free(a);
}

/* ---- one line ---- */

/* key="value", with what would break the line or the quoting as \xNN. */
static void put_quoted(struct text_out *l, const char *key, const char *value)
{
	text_put(l, " %s=\"", key);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
			text_put(l, "\\x%02x", *p);
		else
			text_put(l, "%c", *p);
	}
	text_put(l, "\"");
}

int audit_format(char *buf, size_t cap, const char *event, const struct session *s,
		 const char *details)
{
	struct text_out l = { buf, cap, 0 };
	if (cap)
		buf[0] = '\0';
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	text_put(&l, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s client=%" PRIu64, tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		 event, s->id);
	const struct peer_identity *id = &s->identity;
	if (id->pid > 0)
		text_put(&l, " pid=%d", (int)id->pid);
	text_put(&l, " uid=%u gid=%u", (unsigned)id->uid, (unsigned)id->gid);
	if (id->gone)
		text_put(&l, " gone=yes");
	else if (id->exe)
		put_quoted(&l, "exe", id->exe);
	text_put(&l, " sandbox=%s", peer_sandbox_name(id->sandbox));
	if (id->app)
		put_quoted(&l, "app", id->app);
	if (id->container)
		text_put(&l, " container=%s", id->container);
	text_put(&l, "%s", details);
	return (int)l.len;
}

/* ---- what is audited ---- */

static const char *code_name(uint32_t rv)
{
	static const struct {
		uint32_t rv;
		const char *name;
	} names[] = {
		{ SCARD_S_SUCCESS, "SCARD_S_SUCCESS" },
		{ SCARD_W_SECURITY_VIOLATION, "SCARD_W_SECURITY_VIOLATION" },
		{ SCARD_E_SHARING_VIOLATION, "SCARD_E_SHARING_VIOLATION" },
		{ SCARD_E_NO_SMARTCARD, "SCARD_E_NO_SMARTCARD" },
		{ SCARD_E_UNKNOWN_READER, "SCARD_E_UNKNOWN_READER" },
		{ SCARD_E_INVALID_HANDLE, "SCARD_E_INVALID_HANDLE" },
		{ SCARD_E_INVALID_VALUE, "SCARD_E_INVALID_VALUE" },
		{ SCARD_E_READER_UNAVAILABLE, "SCARD_E_READER_UNAVAILABLE" },
		{ SCARD_E_PROTO_MISMATCH, "SCARD_E_PROTO_MISMATCH" },
		{ SCARD_E_NOT_TRANSACTED, "SCARD_E_NOT_TRANSACTED" },
		{ SCARD_E_TIMEOUT, "SCARD_E_TIMEOUT" },
		{ SCARD_E_UNSUPPORTED_FEATURE, "SCARD_E_UNSUPPORTED_FEATURE" },
		{ SCARD_E_INSUFFICIENT_BUFFER, "SCARD_E_INSUFFICIENT_BUFFER" },
		{ SCARD_E_NO_MEMORY, "SCARD_E_NO_MEMORY" },
		{ SCARD_F_INTERNAL_ERROR, "SCARD_F_INTERNAL_ERROR" },
		{ SCARD_W_REMOVED_CARD, "SCARD_W_REMOVED_CARD" },
		{ SCARD_W_RESET_CARD, "SCARD_W_RESET_CARD" },
		{ SCARD_W_UNRESPONSIVE_CARD, "SCARD_W_UNRESPONSIVE_CARD" },
		{ SCARD_W_UNPOWERED_CARD, "SCARD_W_UNPOWERED_CARD" },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].rv == rv)
			return names[i].name;
	return NULL;
}

static void put_result(struct text_out *l, uint32_t rv)
{
	const char *name = code_name(rv);
	if (name)
		text_put(l, " result=%s", name);
	else
		text_put(l, " result=0x%08" PRIX32, rv);
}

static const char *mode_name(uint32_t mode)
{
	switch (mode) {
	case SCARD_SHARE_SHARED: return "shared";
	case SCARD_SHARE_EXCLUSIVE: return "exclusive";
	case SCARD_SHARE_DIRECT: return "direct";
	default: return "invalid";
	}
}

static const char *disposition_name(uint32_t d)
{
	switch (d) {
	case SCARD_LEAVE_CARD: return "leave";
	case SCARD_RESET_CARD: return "reset";
	case SCARD_UNPOWER_CARD: return "unpower";
	case SCARD_EJECT_CARD: return "eject";
	default: return "invalid";
	}
}

/* The reader of one of the session's handles, by its id. */
static void put_handle_reader(struct text_out *l, const struct session *s, int32_t card)
{
	const struct handle *h = handle_find(&s->handles, card);
	text_put(l, " card=0x%08" PRIX32, (uint32_t)card);
	if (h)
		put_quoted(l, "reader", h->reader->name);
}

/* The event's own fields; NULL if the reply is not audited. */
static const char *details(const struct session *s, const struct wire_msg *m, struct text_out *l)
{
	switch (m->cmd) {
	case WIRE_VERSION:
		/* only the policy's refusal of a client */
		if (m->u.version.rv != SCARD_W_SECURITY_VIOLATION)
			return NULL;
		put_result(l, m->u.version.rv);
		return "refused";
	case WIRE_CONNECT:
		put_quoted(l, "reader", m->u.connect.reader);
		text_put(l, " mode=%s", mode_name(m->u.connect.share_mode));
		if (m->u.connect.rv == SCARD_S_SUCCESS)
			text_put(l, " card=0x%08" PRIX32, (uint32_t)m->u.connect.card);
		put_result(l, m->u.connect.rv);
		return "connect";
	case WIRE_RECONNECT:
		put_handle_reader(l, s, m->u.reconnect.card);
		text_put(l, " mode=%s init=%s", mode_name(m->u.reconnect.share_mode),
			 disposition_name(m->u.reconnect.initialization));
		put_result(l, m->u.reconnect.rv);
		return "reconnect";
	case WIRE_BEGIN_TRANSACTION:
		put_handle_reader(l, s, m->u.begin.card);
		put_result(l, m->u.begin.rv);
		return "begin-transaction";
	case WIRE_END_TRANSACTION:
		put_handle_reader(l, s, m->u.end.card);
		text_put(l, " disposition=%s", disposition_name(m->u.end.disposition));
		put_result(l, m->u.end.rv);
		return "end-transaction";
	case WIRE_CONTROL:
		put_handle_reader(l, s, m->u.control.card);
		text_put(l, " code=0x%08" PRIX32, m->u.control.control_code);
		put_result(l, m->u.control.rv);
		return "control";
	default: return NULL;
	}
}

void audit_reply(struct audit *a, const struct session *s, const struct wire_msg *reply)
{
	char fields[AUDIT_LINE_MAX];
	struct text_out f = { fields, sizeof(fields), 0 };
	fields[0] = '\0';
	const char *event = details(s, reply, &f);
	if (!event)
		return;
	char line[AUDIT_LINE_MAX + 512];
	int n = audit_format(line, sizeof(line) - 1, event, s, fields);
	size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 2;
	line[len++] = '\n';
	/* one write per line, appended whole: lines of concurrent writers never mix */
	if (write(a->fd, line, len) != (ssize_t)len)
		log_error("audit log %s: %s", a->path, strerror(errno));
}
