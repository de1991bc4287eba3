/*
 * SCardGetStatusChange: pcsc-lite's client-side algorithm.
 *
 * Register for events and take a reader-state snapshot in one step
 * (CMD_WAIT_READER_STATE_CHANGE), compare the snapshot with what the caller
 * believes, and if nothing differs wait on the socket for the daemon's
 * one-shot 8-byte signal: rv 0 means "something changed, look again", any
 * other rv (SCARD_E_CANCELLED) ends the call. Leaving while still registered
 * costs a CMD_STOP_WAITING_READER_STATE_CHANGE, whose answer is exactly one
 * 8-byte message: the stop reply, or the signal that raced it.
 */
#include "client.h"

#include <strings.h>
#include <string.h>
#include <time.h>

#define PNP_READER "\\\\?PnP?\\Notification"
/* pcsc-lite waits for INFINITE in 60 s slices; so do we. */
#define WAIT_SLICE_MS 60000
/* how often a 4:2/4:3 wait re-reads the array (see run()) */
#define LEGACY_RECHECK_MS 1000
/* run(): not waiting on the socket, as no registration is in place */
#define NOT_REGISTERED ((LONG)-2)

#define COMPARED_STATES \
	(SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE | SCARD_STATE_EMPTY | SCARD_STATE_PRESENT | \
	 SCARD_STATE_EXCLUSIVE | SCARD_STATE_INUSE | SCARD_STATE_MUTE)

struct gsc {
	struct client_ctx *c;
	SCARD_READERSTATE *rs;
	DWORD n;
	size_t start_count; /* readers in the first snapshot, for the PnP entry */
	bool have_events;   /* the daemon speaks CMD_GET_READER_EVENTS (4:5+) */
	uint32_t events;
	bool registered;
	bool recovered; /* the connection was re-established once already */
};

static bool is_pnp(const char *name)
{
	return strcasecmp(name, PNP_READER) == 0;
}

static size_t count_readers(const struct client_ctx *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->n_states; i++)
		n += c->states[i].name[0] != '\0';
	return n;
}

static LONG fetch_reader_events(struct gsc *g)
{
	g->have_events = wire_cmd_lookup(g->c->conn.params.proto, WIRE_GET_READER_EVENTS);
	if (!g->have_events)
		return SCARD_S_SUCCESS;
	struct wire_msg msg = { .cmd = WIRE_GET_READER_EVENTS };
	LONG rv = conn_call(&g->c->conn, &msg);
	if (rv == SCARD_S_SUCCESS)
		g->events = msg.u.events.events;
	return rv;
}

/* How this connection's version registers for events and takes its snapshot. */
enum wait_style {
	WAIT_WITH_ARRAY, /* 4:4/4:5: WAIT answers the array at once */
	WAIT_THEN_FETCH, /* 4:6: WAIT, then 0x16 and 0x17 */
	FETCH_THEN_WAIT, /* 4:2/4:3: 0x12, then WAIT with its 8-byte body */
};

static enum wait_style wait_style(const struct client_ctx *c)
{
	const struct wire_cmd_spec *spec = wire_cmd_lookup(c->conn.params.proto,
							   WIRE_WAIT_READER_STATE_CHANGE);

	if (spec && spec->reply == WIRE_REPLY_ARRAY_AND_WAIT)
		return WAIT_WITH_ARRAY;
	return ctx_has_sized_arrays(c) ? WAIT_THEN_FETCH : FETCH_THEN_WAIT;
}

static LONG send_wait(struct gsc *g)
{
	struct wire_msg msg;

	memset(&msg, 0, sizeof(msg));
	msg.cmd = WIRE_WAIT_READER_STATE_CHANGE;
	LONG rv = conn_send(&g->c->conn, &msg, NULL, 0);
	if (rv == SCARD_S_SUCCESS)
		g->registered = true;
	return rv;
}

/*
 * 4:6 after WAIT: a daemon may send an event signal before its 0x16 answer
 * or inside its 0x17 answer (pcsc-lite 2.5 does; scardd holds it back; the
 * array's case is ctx_fetch_array_registered's). The wire codec tells a
 * signal from the count (wire_decode_count_after_wait). *signalled tells
 * the caller that the registration is used up.
 */
static LONG fetch_count_after_wait(struct gsc *g, bool *signalled, LONG *signal_rv)
{
	struct client_ctx *c = g->c;

	*signalled = false;
	struct wire_msg msg = { .cmd = WIRE_GET_READERS_STATE_SIZE };
	LONG rv = conn_send(&c->conn, &msg, NULL, 0);
	struct wire_count_answer answer;
	uint8_t buf[WIRE_COUNT_AFTER_WAIT_MAX];
	size_t have = 0, need = 0;
	int rc = WIRE_E_INVALID;
	while (rv == SCARD_S_SUCCESS &&
	       (rc = wire_decode_count_after_wait(&c->conn.params, buf, have, &need, &answer)) ==
		       WIRE_NEED_MORE) {
		if (need > sizeof(buf) || need <= have)
			return SCARD_F_INTERNAL_ERROR;
		rv = conn_recv_raw(&c->conn, buf + have, need - have);
		have = need;
	}
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (rc != WIRE_OK)
		return SCARD_F_INTERNAL_ERROR;
	if (answer.signalled) {
		*signalled = true;
		*signal_rv = (LONG)answer.signal_rv;
		g->registered = false;
	}
	return ctx_set_state_count(c, answer.count);
}

/* Registers for the next event and refreshes the snapshot. */
static LONG do_register(struct gsc *g)
{
	struct client_ctx *c = g->c;

	/* Asked before registering, so no event signal can overtake its reply. */
	LONG rv = fetch_reader_events(g);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	switch (wait_style(c)) {
	case WAIT_WITH_ARRAY:
		rv = send_wait(g);
		if (rv == SCARD_S_SUCCESS)
			rv = ctx_read_states(c, true);
		break;
	case WAIT_THEN_FETCH:
		for (int tries = 0; tries < 4; tries++) {
			bool signalled;
			LONG signal_rv = SCARD_S_SUCCESS;

			rv = send_wait(g);
			if (rv == SCARD_S_SUCCESS)
				rv = fetch_count_after_wait(g, &signalled, &signal_rv);
			if (rv == SCARD_S_SUCCESS && signalled)
				rv = ctx_fetch_array(c);
			else if (rv == SCARD_S_SUCCESS)
				rv = ctx_fetch_array_registered(c, &signalled, &signal_rv);
			if (signalled)
				g->registered = false;
			if (rv != SCARD_S_SUCCESS || !signalled)
				break;
			if (signal_rv != SCARD_S_SUCCESS)
				return signal_rv; /* cancelled meanwhile */
			/* used up while fetching: register again, fetch afresh */
		}
		break;
	case FETCH_THEN_WAIT:
		rv = ctx_fetch_states(c);
		if (rv == SCARD_S_SUCCESS)
			rv = send_wait(g);
		break;
	}
	if (rv == CLIENT_CONN_LOST)
		g->registered = false;
	return rv;
}

/* Registers, re-establishing the context once per call if its connection is
 * gone (daemon restarted, forked child). */
static LONG register_with_recovery(struct gsc *g)
{
	LONG rv;

	if (g->c->conn.fd >= 0) {
		rv = do_register(g);
		if (rv != CLIENT_CONN_LOST)
			return rv;
	}
	g->registered = false;
	if (g->recovered) {
		ctx_lost(g->c);
		return SCARD_E_NO_SERVICE;
	}
	g->recovered = true;
	rv = ctx_reconnect(g->c);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	rv = do_register(g);
	if (rv == CLIENT_CONN_LOST) {
		g->registered = false;
		ctx_lost(g->c);
		rv = SCARD_E_NO_SERVICE;
	}
	return rv;
}

/* dwEventState of a reader found in the snapshot. */
static DWORD reader_event_state(const struct wire_reader_state *rs, SCARD_READERSTATE *r)
{
	DWORD ev = (DWORD)(rs->event_counter & 0xFFFFu) << 16;
	uint32_t atr_len = rs->atr_len <= MAX_ATR_SIZE ? rs->atr_len : 0;

	if (rs->state & SCARD_UNKNOWN) {
		ev |= SCARD_STATE_UNAVAILABLE;
	} else if (rs->state & SCARD_PRESENT) {
		ev |= SCARD_STATE_PRESENT;
		if (rs->state & SCARD_SWALLOWED)
			ev |= SCARD_STATE_MUTE;
	} else if (rs->state & SCARD_ABSENT) {
		ev |= SCARD_STATE_EMPTY;
	}
	if (rs->sharing == -1)
		ev |= SCARD_STATE_EXCLUSIVE;
	else if (rs->sharing > 0 && (ev & SCARD_STATE_PRESENT))
		ev |= SCARD_STATE_INUSE;
	r->cbAtr = atr_len;
	memcpy(r->rgbAtr, rs->atr, MAX_ATR_SIZE);
	return ev;
}

/* Computes every dwEventState from the snapshot; true if any changed. */
static bool evaluate(struct gsc *g)
{
	size_t count = count_readers(g->c);
	bool any = false;

	for (DWORD j = 0; j < g->n; j++) {
		SCARD_READERSTATE *r = &g->rs[j];
		DWORD cur = r->dwCurrentState;
		DWORD cur_counter = (cur >> 16) & 0xFFFFu;
		bool changed = false;
		DWORD ev;

		if (cur & SCARD_STATE_IGNORE)
			continue;
		if (is_pnp(r->szReader)) {
			ev = 0;
			if (g->have_events) {
				ev = (DWORD)(g->events & 0xFFFFu) << 16;
				changed = cur_counter != 0 && cur_counter != (g->events & 0xFFFFu);
			}
			if (count != g->start_count)
				changed = true;
		} else {
			const struct wire_reader_state *rs = ctx_find_reader(g->c, r->szReader);

			if (!rs) {
				ev = SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE;
				changed = !(cur & SCARD_STATE_UNKNOWN);
			} else {
				ev = reader_event_state(rs, r);
				changed = (ev & COMPARED_STATES) != (cur & COMPARED_STATES) ||
					  (cur_counter != 0 && cur_counter != (ev >> 16)) ||
					  cur == SCARD_STATE_UNAWARE;
			}
		}
		if (changed) {
			ev |= SCARD_STATE_CHANGED;
			any = true;
		}
		r->dwEventState = ev;
	}
	return any;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Leaves the daemon's wait list. The answer is one 8-byte message: the STOP
 * reply, or an event signal that crossed it (then the daemon had already
 * dropped us and, from pcsc-lite 1.8.20 on, sends nothing more). Daemons up
 * to 1.8.19 (all of 4:2, early 4:3) answer STOP even then, with
 * SCARD_F_INTERNAL_ERROR; they echo the request's timeout field, which we
 * mark so that their answer is told from a signal. *signal_rv gets a
 * crossing signal's rv (0 if none). Returns the I/O result.
 */
#define STOP_MARK 0x53544F50u

static LONG unregister(struct gsc *g, LONG *signal_rv)
{
	const struct wire_cmd_spec *spec = wire_cmd_lookup(g->c->conn.params.proto,
							   WIRE_STOP_WAITING_READER_STATE_CHANGE);
	bool always_answered = spec && spec->body == WIRE_BODY_STRUCT;

	*signal_rv = SCARD_S_SUCCESS;
	if (!g->registered)
		return SCARD_S_SUCCESS;
	g->registered = false;
	struct wire_msg msg = { .cmd = WIRE_STOP_WAITING_READER_STATE_CHANGE };
	msg.u.wait.timeout = always_answered ? STOP_MARK : 0;
	LONG io = conn_send(&g->c->conn, &msg, NULL, 0);
	if (io == SCARD_S_SUCCESS)
		io = conn_recv_reply(&g->c->conn, &msg);
	if (io != SCARD_S_SUCCESS)
		return io;
	if (!always_answered) {
		*signal_rv = (LONG)msg.u.wait.rv;
		return SCARD_S_SUCCESS;
	}
	if (msg.u.wait.timeout == STOP_MARK || msg.u.wait.rv == (uint32_t)SCARD_F_INTERNAL_ERROR)
		return SCARD_S_SUCCESS; /* the STOP answer itself */
	/* A signal (or a STOP answer without the echo): an answer may follow. */
	*signal_rv = (LONG)msg.u.wait.rv;
	if (conn_wait_readable(&g->c->conn, 250) == 1 &&
	    conn_pending(&g->c->conn) >= spec->reply_size) {
		msg.cmd = WIRE_STOP_WAITING_READER_STATE_CHANGE;
		io = conn_recv_reply(&g->c->conn, &msg);
	}
	return io;
}

/* Ends the call with rv; a cancel that crossed a timeout wins. */
static LONG stop_waiting(struct gsc *g, LONG rv)
{
	LONG signal_rv;
	LONG io = unregister(g, &signal_rv);

	if (io != SCARD_S_SUCCESS) {
		ctx_lost(g->c);
		return rv == SCARD_S_SUCCESS ? rv : SCARD_E_NO_SERVICE;
	}
	if (rv == SCARD_E_TIMEOUT && signal_rv != SCARD_S_SUCCESS)
		return signal_rv;
	return rv;
}

/* The registered part of the call: evaluate, wait, re-register, repeat. */
static LONG run(struct gsc *g, DWORD timeout)
{
	bool infinite = timeout == INFINITE || timeout == (DWORD)-1;
	int64_t deadline = now_ms() + (infinite ? 0 : (int64_t)timeout);
	/* 4:2/4:3 take the snapshot before registering: an event in between
	 * sends no signal, so look again now and then. */
	int64_t slice = wait_style(g->c) == FETCH_THEN_WAIT ? LEGACY_RECHECK_MS : WAIT_SLICE_MS;

	for (;;) {
		LONG ready;

		if (evaluate(g))
			return stop_waiting(g, SCARD_S_SUCCESS);
		if (timeout == 0)
			return stop_waiting(g, SCARD_E_TIMEOUT);
		if (!g->registered) {
			/* signals kept using up the registration (do_register) */
			if (ctx_cancel_pending(g->c))
				return stop_waiting(g, SCARD_E_CANCELLED);
			if (!infinite && deadline - now_ms() <= 0)
				return stop_waiting(g, SCARD_E_TIMEOUT);
			ready = NOT_REGISTERED;
		} else {
			/* Wait for the signal, in slices, until the deadline. */
			do {
				if (ctx_cancel_pending(g->c))
					return stop_waiting(g, SCARD_E_CANCELLED);
				int64_t left = infinite ? slice : deadline - now_ms();
				if (left <= 0)
					return stop_waiting(g, SCARD_E_TIMEOUT);
				ready = conn_wait_readable(&g->c->conn,
							   (int)(left < slice ? left : slice));
			} while (ready == 0 && slice == WAIT_SLICE_MS);
		}
		if (ready == NOT_REGISTERED) {
			/* nothing to wait for: register again below */
		} else if (ready == 1) {
			struct wire_msg msg;
			memset(&msg, 0, sizeof(msg));
			msg.cmd = WIRE_WAIT_READER_STATE_CHANGE;
			ready = conn_recv_reply(&g->c->conn, &msg);
			/* The daemon dropped us from its list when it signalled. */
			g->registered = false;
			if (ready == SCARD_S_SUCCESS && msg.u.wait.rv != SCARD_S_SUCCESS)
				return (LONG)msg.u.wait.rv;
		} else if (ready == 0) {
			LONG signal_rv;

			if (unregister(g, &signal_rv) != SCARD_S_SUCCESS)
				g->registered = false; /* recovery below notices the loss */
			else if (signal_rv != SCARD_S_SUCCESS)
				return signal_rv;
		} else {
			g->registered = false;
		}
		LONG rv = register_with_recovery(g);
		if (rv != SCARD_S_SUCCESS)
			return stop_waiting(g, rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv);
	}
}

LONG SCardGetStatusChange(SCARDCONTEXT hContext, DWORD dwTimeout, SCARD_READERSTATE *rgReaderStates,
			  DWORD cReaders)
{
	if (!rgReaderStates && cReaders > 0)
		return SCARD_E_INVALID_PARAMETER;
	DWORD ignored = 0;
	for (DWORD j = 0; j < cReaders; j++) {
		if (!rgReaderStates[j].szReader)
			return SCARD_E_INVALID_VALUE;
		ignored += (rgReaderStates[j].dwCurrentState & SCARD_STATE_IGNORE) != 0;
	}
	if (cReaders == 0 || ignored == cReaders)
		return SCARD_S_SUCCESS;

	struct gsc g;
	memset(&g, 0, sizeof(g));
	g.c = ctx_enter(hContext);
	if (!g.c)
		return SCARD_E_INVALID_HANDLE;
	/* Protocols up to 4:5 carry at most 16 readers (our arrays may hold more,
	 * but applications written for them expect this answer); 4:6 lifts it. */
	if (cReaders > PCSCLITE_MAX_READERS_CONTEXTS && !ctx_has_sized_arrays(g.c) &&
	    g.c->conn.fd >= 0) {
		ctx_leave(g.c);
		return SCARD_E_INVALID_PARAMETER;
	}
	g.rs = rgReaderStates;
	g.n = cReaders;
	ctx_set_waiting(g.c, true);

	LONG rv = register_with_recovery(&g);
	if (rv != SCARD_S_SUCCESS) {
		rv = stop_waiting(&g, rv);
		goto out;
	}
	for (DWORD j = 0; j < cReaders; j++) {
		const char *name = rgReaderStates[j].szReader;

		if (!is_pnp(name) && !ctx_find_reader(g.c, name)) {
			rv = stop_waiting(&g, SCARD_E_UNKNOWN_READER);
			goto out;
		}
		rgReaderStates[j].dwEventState = 0;
	}
	g.start_count = count_readers(g.c);
	rv = run(&g, dwTimeout);
out:
	ctx_set_waiting(g.c, false);
	ctx_leave(g.c);
	return rv;
}
