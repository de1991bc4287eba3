/*
 * Context-level API: establish, release, validity, reader and group lists,
 * memory, cancel; and the connection life cycle shared with the other API
 * files (connect, recover, fetch the reader-state array).
 *
 * Recovery: a context call that finds its connection gone (the daemon died,
 * restarted, or we are a forked child) reconnects once, negotiates, asks the
 * daemon for a new context and carries on; the application's handle does not
 * change. Card handles made on the old connection stay stale (see
 * RECOVERY.md).
 */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bound on a 4:6 daemon's announced array length (records). */
#define MAX_READER_SLOTS 4096u

static const char default_group[] = "SCard$DefaultReaders\0";

void ctx_lost(struct client_ctx *c)
{
	conn_close(&c->conn);
}

LONG ctx_reconnect(struct client_ctx *c)
{
	struct wire_msg msg = { .cmd = WIRE_ESTABLISH_CONTEXT };

	conn_close(&c->conn);
	c->generation++; /* card handles of the old connection are now stale */
	LONG rv = conn_open(&c->conn, c->path);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	rv = negotiate_version(&c->conn);
	if (rv != SCARD_S_SUCCESS)
		goto fail;
	msg.u.establish.scope = (uint32_t)c->scope;
	rv = conn_call(&c->conn, &msg);
	if (rv == SCARD_S_SUCCESS)
		rv = (LONG)msg.u.establish.rv;
	if (rv != SCARD_S_SUCCESS)
		goto fail;
	ctx_set_daemon_ctx(c, msg.u.establish.context);
	return SCARD_S_SUCCESS;
fail:
	conn_close(&c->conn);
	return rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv;
}

static LONG ensure_states_room(struct client_ctx *c, size_t bytes, size_t records)
{
	if (bytes > c->array_cap) {
		uint8_t *buf = realloc(c->array_buf, bytes);

		if (!buf)
			return SCARD_E_NO_MEMORY;
		c->array_buf = buf;
		c->array_cap = bytes;
	}
	if (records > c->states_cap) {
		struct wire_reader_state *st = realloc(c->states, records * sizeof(*st));

		if (!st)
			return SCARD_E_NO_MEMORY;
		c->states = st;
		c->states_cap = records;
	}
	return SCARD_S_SUCCESS;
}

/*
 * A fixed-size array (0x12, the 4:4/4:5 WAIT answer) is 16 records for
 * upstream daemons and 48 for Fedora's patched pcscd, with nothing in the
 * handshake to say which. The daemon writes the array at once, so records
 * still queued after ours are the rest of a longer array: take them, and
 * expect that length from this daemon from now on. (An 8-byte event signal
 * may already follow the array; it is left where it is.)
 */
static size_t extra_legacy_records(struct client_ctx *c)
{
	size_t record = wire_reader_record_size(&c->conn.params);
	size_t pending = conn_pending(&c->conn);

	if (record == 0 || pending < record)
		return 0;
	if (pending % record != 0 && pending % record != WIRE_EVENT_SIGNAL_SIZE)
		return 0;
	if (c->conn.legacy_slots + pending / record > MAX_READER_SLOTS)
		return 0;
	return pending / record;
}

static LONG read_records(struct client_ctx *c, size_t first, size_t records)
{
	size_t record = wire_reader_record_size(&c->conn.params);
	size_t total = first + records;

	c->conn.params.reader_slots = (uint32_t)total;
	if (records == 0)
		return SCARD_S_SUCCESS; /* a 4:6 daemon's empty array: maybe no buffer yet */
	LONG rv = ensure_states_room(c, total * record, total);
	if (rv == SCARD_E_NO_MEMORY) {
		/* The bytes are on their way regardless: keep the stream in step. */
		rv = conn_discard(&c->conn, records * record);
		return rv == SCARD_S_SUCCESS ? SCARD_E_NO_MEMORY : rv;
	}
	return conn_recv_raw(&c->conn, c->array_buf + first * record, records * record);
}

/* c->states from the reader_slots records in c->array_buf. */
static void decode_states(struct client_ctx *c)
{
	c->n_states = wire_decode_reader_states(&c->conn.params, c->array_buf,
						wire_reader_array_size(&c->conn.params), c->states,
						c->conn.params.reader_slots);
}

LONG ctx_read_states(struct client_ctx *c, bool legacy)
{
	size_t records = legacy ? c->conn.legacy_slots : c->conn.params.reader_slots;

	if (wire_reader_record_size(&c->conn.params) == 0)
		return SCARD_F_INTERNAL_ERROR;
	LONG rv = read_records(c, 0, records);
	if (rv == SCARD_S_SUCCESS && legacy) {
		size_t extra = extra_legacy_records(c);

		if (extra > 0) {
			rv = read_records(c, records, extra);
			records += extra;
			c->conn.legacy_slots = (uint32_t)records;
		}
	}
	if (rv != SCARD_S_SUCCESS)
		return rv;
	c->conn.params.reader_slots = (uint32_t)records;
	decode_states(c);
	return SCARD_S_SUCCESS;
}

LONG ctx_set_state_count(struct client_ctx *c, int64_t count)
{
	if (count < 0 || count > (int64_t)MAX_READER_SLOTS) {
		ctx_lost(c);
		return CLIENT_CONN_LOST;
	}
	c->conn.params.reader_slots = (uint32_t)count;
	return SCARD_S_SUCCESS;
}

/* Asks for the array (on 4:6, once its length is known) and reads it. */
LONG ctx_fetch_array(struct client_ctx *c)
{
	bool sized = ctx_has_sized_arrays(c);
	struct wire_msg msg;

	memset(&msg, 0, sizeof(msg));
	msg.cmd = sized ? WIRE_GET_READERS_STATE_ARRAY : WIRE_GET_READERS_STATE;
	LONG rv = conn_send(&c->conn, &msg, NULL, 0);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	return ctx_read_states(c, !sized);
}

/*
 * 4:6 array (0x17) asked for while registered for events. pcsc-lite 2.5
 * writes it record by record from one thread and event signals from
 * another, so the signal that ends the registration may sit in front of any
 * record. The wire codec finds it and takes it out
 * (wire_take_array_signal); the array is completed from the stream.
 * *signal_rv gets its rv.
 */
LONG ctx_fetch_array_registered(struct client_ctx *c, bool *signalled, LONG *signal_rv)
{
	*signalled = false;
	LONG rv = ctx_fetch_array(c);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	size_t total = wire_reader_array_size(&c->conn.params);
	uint32_t rv_in_array;
	size_t missing = wire_take_array_signal(&c->conn.params, c->array_buf, total, &rv_in_array);
	if (missing == 0)
		return SCARD_S_SUCCESS;
	*signalled = true;
	*signal_rv = (LONG)rv_in_array;
	rv = conn_recv_raw(&c->conn, c->array_buf + total - missing, missing);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	decode_states(c);
	return SCARD_S_SUCCESS;
}

bool ctx_has_sized_arrays(const struct client_ctx *c)
{
	const struct wire_proto *proto = c->conn.params.proto;

	return wire_cmd_lookup(proto, WIRE_GET_READERS_STATE_SIZE) &&
	       wire_cmd_lookup(proto, WIRE_GET_READERS_STATE_ARRAY);
}

/*
 * On 4:6 the length query, the array request and the caller's request go
 * in one write: one round trip instead of two or three, and a shorter
 * window for the array to grow between the length and the array (a
 * pcsc-lite 2.5 daemon answers the length at once but the array only once
 * its USB readers are set up; scardd sends the length it announced). Not
 * on 4:4/4:5, whose fixed array we size by what is left to read (Fedora's
 * 48 records): an answer behind it would be taken for records.
 */
LONG ctx_fetch_states_and(struct client_ctx *c, struct wire_msg *after)
{
	if (!ctx_has_sized_arrays(c))
		return after ? SCARD_F_INTERNAL_ERROR : ctx_fetch_array(c);
	struct wire_msg msgs[CONN_TOGETHER_MAX] = {
		{ .cmd = WIRE_GET_READERS_STATE_SIZE },
		{ .cmd = WIRE_GET_READERS_STATE_ARRAY },
	};
	size_t n = 2;
	if (after)
		msgs[n++] = *after;
	LONG rv = conn_send_together(&c->conn, msgs, n);
	if (rv != SCARD_S_SUCCESS)
		return rv; /* nothing sent, or the connection is gone */
	rv = conn_recv_reply(&c->conn, &msgs[0]);
	if (rv == SCARD_S_SUCCESS)
		rv = ctx_set_state_count(c, msgs[0].u.count);
	if (rv == SCARD_S_SUCCESS)
		rv = ctx_read_states(c, false);
	if (rv == CLIENT_CONN_LOST || !after)
		return rv;
	if (rv != SCARD_S_SUCCESS && rv != SCARD_E_NO_MEMORY) {
		/* the array is not behind us: after's answer cannot be found */
		ctx_lost(c);
		return CLIENT_CONN_LOST;
	}
	/* after's answer follows the array whatever became of it (no room for
	 * it is read and dropped): take it, or the next call would read it */
	LONG after_rv = conn_recv_reply(&c->conn, after);
	return rv == SCARD_S_SUCCESS || after_rv == CLIENT_CONN_LOST ? after_rv : rv;
}

LONG ctx_fetch_states(struct client_ctx *c)
{
	return ctx_fetch_states_and(c, NULL);
}

const struct wire_reader_state *ctx_find_reader(const struct client_ctx *c, const char *name)
{
	for (size_t i = 0; i < c->n_states; i++) {
		if (c->states[i].name[0] != '\0' && strcmp(c->states[i].name, name) == 0)
			return &c->states[i];
	}
	return NULL;
}

/*
 * Runs op on a locked context, reconnecting once if the connection is gone
 * before or during the call. op must be safe to repeat on a new connection
 * (nothing it did on the old one survives the old daemon).
 */
static LONG with_recovery(struct client_ctx *c, LONG (*op)(struct client_ctx *, void *), void *arg)
{
	bool reconnected = false;
	LONG rv;

	if (c->conn.fd < 0) {
		rv = ctx_reconnect(c);
		if (rv != SCARD_S_SUCCESS)
			return rv;
		reconnected = true;
	}
	rv = op(c, arg);
	if (rv == CLIENT_CONN_LOST && !reconnected) {
		rv = ctx_reconnect(c);
		if (rv == SCARD_S_SUCCESS)
			rv = op(c, arg);
	}
	if (rv == CLIENT_CONN_LOST) {
		ctx_lost(c);
		rv = SCARD_E_NO_SERVICE;
	}
	return rv;
}

LONG client_call_with_recovery(struct client_ctx *c, LONG (*op)(struct client_ctx *, void *),
			       void *arg)
{
	return with_recovery(c, op, arg);
}

static LONG fetch_op(struct client_ctx *c, void *arg)
{
	(void)arg;
	return ctx_fetch_states(c);
}

LONG client_send_cancel(const char *path, uint32_t daemon_ctx)
{
	/* pcsc-lite sends SCARD_CANCEL on a fresh socket, without CMD_VERSION. */
	struct client_conn conn;
	LONG rv = conn_open(&conn, path);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	struct wire_msg msg = { .cmd = WIRE_CANCEL };
	msg.u.cancel.context = (int32_t)daemon_ctx;
	rv = conn_call(&conn, &msg);
	conn_close(&conn);
	if (rv == CLIENT_CONN_LOST)
		return SCARD_E_NO_SERVICE;
	return rv != SCARD_S_SUCCESS ? rv : (LONG)msg.u.cancel.rv;
}

LONG SCardEstablishContext(DWORD dwScope, LPCVOID pvReserved1, LPCVOID pvReserved2,
			   LPSCARDCONTEXT phContext)
{
	(void)pvReserved1;
	(void)pvReserved2;
	if (!phContext)
		return SCARD_E_INVALID_PARAMETER;
	*phContext = 0;
	char path[CLIENT_PATH_MAX];
	conn_default_path(path);
	struct client_ctx *c = ctx_new(path, dwScope);
	if (!c)
		return SCARD_E_NO_MEMORY;
	LONG rv = ctx_reconnect(c);
	if (rv != SCARD_S_SUCCESS) {
		ctx_free(c);
		return rv;
	}
	registry_publish(c);
	*phContext = c->handle;
	return SCARD_S_SUCCESS;
}

LONG SCardReleaseContext(SCARDCONTEXT hContext)
{
	struct client_ctx *c = ctx_take_for_release(hContext);

	if (!c)
		return SCARD_E_INVALID_HANDLE;
	/* A thread waiting in SCardGetStatusChange holds the lock: wake it. */
	char path[CLIENT_PATH_MAX];
	uint32_t daemon_ctx;
	if (ctx_cancel_own(c, &daemon_ctx, path))
		(void)client_send_cancel(path, daemon_ctx);
	pthread_mutex_lock(&c->lock);
	LONG rv = SCARD_S_SUCCESS;
	if (c->conn.fd >= 0) {
		struct wire_msg msg = { .cmd = WIRE_RELEASE_CONTEXT };

		msg.u.release.context = c->daemon_ctx;
		rv = conn_call(&c->conn, &msg);
		/* A daemon that is gone has dropped the context already. */
		rv = rv == CLIENT_CONN_LOST  ? SCARD_S_SUCCESS
		     : rv != SCARD_S_SUCCESS ? rv
					     : (LONG)msg.u.release.rv;
	}
	conn_close(&c->conn);
	card_remove_all(c);
	ctx_leave(c);
	return rv;
}

LONG SCardIsValidContext(SCARDCONTEXT hContext)
{
	return ctx_exists(hContext) ? SCARD_S_SUCCESS : SCARD_E_INVALID_HANDLE;
}

LONG SCardFreeMemory(SCARDCONTEXT hContext, LPCVOID pvMem)
{
	if (!ctx_exists(hContext))
		return SCARD_E_INVALID_HANDLE;
	free((void *)(uintptr_t)pvMem);
	return SCARD_S_SUCCESS;
}

LONG SCardCancel(SCARDCONTEXT hContext)
{
	char path[CLIENT_PATH_MAX];
	uint32_t daemon_ctx = 0;
	bool found;

	if (!ctx_request_cancel(hContext, &daemon_ctx, path, &found))
		return found ? SCARD_S_SUCCESS : SCARD_E_INVALID_HANDLE;
	return client_send_cancel(path, daemon_ctx);
}

/*
 * Where a multi-string result goes: the caller's buffer, a new one for
 * SCARD_AUTOALLOCATE, or nowhere (size query). *out is NULL for a size query.
 */
static LONG output_buffer(LPSTR buf, DWORD room, DWORD needed, char **out)
{
	*out = NULL;
	if (room == SCARD_AUTOALLOCATE) {
		if (!buf)
			return SCARD_E_INVALID_PARAMETER;
		char *mem = malloc(needed);
		if (!mem)
			return SCARD_E_NO_MEMORY;
		*(char **)(void *)buf = mem;
		*out = mem;
		return SCARD_S_SUCCESS;
	}
	if (buf && room < needed)
		return SCARD_E_INSUFFICIENT_BUFFER;
	*out = buf;
	return SCARD_S_SUCCESS;
}

LONG SCardListReaders(SCARDCONTEXT hContext, LPCSTR mszGroups, LPSTR mszReaders,
		      LPDWORD pcchReaders)
{
	DWORD needed = 1; /* the final NUL of the multi-string */
	char *out;

	(void)mszGroups; /* every reader is in the one default group */
	if (!pcchReaders)
		return SCARD_E_INVALID_PARAMETER;
	struct client_ctx *c = ctx_enter(hContext);
	if (!c)
		return SCARD_E_INVALID_HANDLE;
	LONG rv = with_recovery(c, fetch_op, NULL);
	if (rv != SCARD_S_SUCCESS)
		goto out;
	for (size_t i = 0; i < c->n_states; i++) {
		if (c->states[i].name[0] != '\0')
			needed += strlen(c->states[i].name) + 1;
	}
	if (needed == 1) {
		rv = SCARD_E_NO_READERS_AVAILABLE;
		goto out_len;
	}
	rv = output_buffer(mszReaders, *pcchReaders, needed, &out);
	if (rv == SCARD_S_SUCCESS && out) {
		for (size_t i = 0; i < c->n_states; i++) {
			size_t n = strlen(c->states[i].name);

			if (n == 0)
				continue;
			memcpy(out, c->states[i].name, n + 1);
			out += n + 1;
		}
		*out = '\0';
	}
out_len:
	*pcchReaders = needed;
out:
	ctx_leave(c);
	return rv;
}

LONG SCardListReaderGroups(SCARDCONTEXT hContext, LPSTR mszGroups, LPDWORD pcchGroups)
{
	if (!pcchGroups)
		return SCARD_E_INVALID_PARAMETER;
	if (!ctx_exists(hContext))
		return SCARD_E_INVALID_HANDLE;
	DWORD needed = sizeof(default_group);
	char *out;
	LONG rv = output_buffer(mszGroups, *pcchGroups, needed, &out);
	if (rv == SCARD_S_SUCCESS && out)
		memcpy(out, default_group, needed);
	*pcchGroups = needed;
	return rv;
}
