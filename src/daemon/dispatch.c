#include "dispatch.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>

#include "client_build.h"
#include "daemon.h"
#include "log.h"
#include "peer_info.h"
#include "readers.h"
#include "session.h"
#include "socket_spec.h"
#include "status_waiters.h"

static enum dispatch_result reply(struct session *s, const struct wire_msg *msg)
{
	session_send_msg(s, msg);
	return DISPATCH_DONE;
}

/* 4:6 and up: the client asks the array's length (0x16) and then fetches it. */
static bool sized_arrays(const struct session *s)
{
	return wire_cmd_lookup(s->params.proto, WIRE_GET_READERS_STATE_ARRAY) != NULL;
}

/*
 * Records for the fixed-size arrays (0x12, the 4:4/4:5 WAIT answer) of this
 * client: the socket's setting, or with readers=auto the length its own
 * libpcsclite was built with when that can be read (16 upstream, 48 in
 * Fedora's builds), else 16. A 4:6 client asks for the length instead.
 */
static uint32_t legacy_slots(const struct session *s)
{
	uint32_t guess;

	if (s->sock->readers)
		return s->sock->readers;
	if (sized_arrays(s))
		return WIRE_LEGACY_READER_SLOTS;
	guess = client_build_guess_slots(s->pid);
	if (guess && guess != WIRE_LEGACY_READER_SLOTS)
		log_info("client %" PRIu64 " (pid %d): its libpcsclite holds %u readers; "
			 "serving it %u-record arrays", s->id, (int)s->pid, guess, guess);
	return guess ? guess : WIRE_LEGACY_READER_SLOTS;
}

/*
 * Serves every version the table knows, each connection as its own; a newer
 * minor of our major is served as the highest we know, since minors only
 * ever added commands. The reply names the version the connection now
 * speaks. Anything else is refused the way pcsc-lite refuses (the
 * connection stays open), with one line saying who asked.
 */
static enum dispatch_result cmd_version(struct session *s, struct wire_msg *msg)
{
	struct wire_version_msg *v = &msg->u.version;
	const struct wire_proto *proto = wire_proto_find(v->major, v->minor);
	const struct wire_proto *highest = wire_proto_highest();

	log_debug("Client protocol is %d:%d", v->major, v->minor);
	if (!proto && v->major == highest->major && v->minor > highest->minor)
		proto = highest;
	if (!proto) {
		char who[512];
		peer_describe(s->pid, s->uid, who, sizeof(who));
		log_error("client %" PRIu64 " (%s) speaks protocol %d:%d; scardd serves 4:2 to %d:%d "
			  "(and newer %d:x); refused",
			  s->id, who, v->major, v->minor, highest->major, highest->minor,
			  highest->major);
		v->major = highest->major;
		v->minor = highest->minor;
		v->rv = SCARD_E_SERVICE_STOPPED;
		return reply(s, msg);
	}
	if (proto == wire_proto_find(4, 2) && s->sock->name_len == 100)
		proto = wire_proto_4_2_short_names();
	s->params.proto = proto;
	s->versioned = true;
	s->legacy_slots = legacy_slots(s);
	log_debug("Server protocol is %s for this client (%s byte order, %u-record arrays)",
		  proto->name, s->params.order == WIRE_BIG_ENDIAN ? "big-endian" : "little-endian",
		  s->legacy_slots);
	v->major = proto->major;
	v->minor = proto->minor;
	v->rv = SCARD_S_SUCCESS;
	return reply(s, msg);
}

static uint32_t new_context_id(const struct daemon *d)
{
	for (;;) {
		uint32_t ctx = (uint32_t)daemon_random_id();
		if (ctx != 0 && !context_in_use(d, ctx))
			return ctx;
	}
}

static enum dispatch_result cmd_establish(struct session *s, struct wire_msg *msg)
{
	struct wire_establish *e = &msg->u.establish;
	if (e->scope > SCARD_SCOPE_GLOBAL) {
		e->rv = SCARD_E_INVALID_VALUE;
		return reply(s, msg);
	}
	/* A second establish on one connection replaces the first, as in pcsc-lite. */
	e->context = new_context_id(s->d);
	s->context = e->context;
	s->has_context = true;
	e->rv = SCARD_S_SUCCESS;
	return reply(s, msg);
}

static enum dispatch_result cmd_release(struct session *s, struct wire_msg *msg)
{
	struct wire_release *r = &msg->u.release;
	if (!s->has_context)
		r->rv = SCARD_E_INVALID_HANDLE;
	else if (r->context != s->context)
		r->rv = SCARD_E_INVALID_VALUE;
	else {
		session_release_handles(s);
		s->has_context = false;
		r->rv = SCARD_S_SUCCESS;
	}
	return reply(s, msg);
}

static enum dispatch_result cmd_cancel(struct session *s, struct wire_msg *msg)
{
	struct wire_cancel *c = &msg->u.cancel;
	struct session *target = session_by_context(s->d, (uint32_t)c->context);
	if (!target) {
		c->rv = SCARD_E_INVALID_HANDLE;
		return reply(s, msg);
	}
	status_waiter_signal(s->d, target, SCARD_E_CANCELLED);
	c->rv = SCARD_S_SUCCESS;
	return reply(s, msg);
}

static void send_state_array(struct session *s, size_t n)
{
	struct wire_reader_state *states = calloc(n ? n : 1, sizeof(*states));
	uint8_t *buf;
	size_t bytes;

	s->params.reader_slots = (uint32_t)n;
	bytes = wire_reader_array_size(&s->params);
	buf = malloc(bytes ? bytes : 1);
	if (!states || !buf) {
		session_fail(s, "out of memory for the reader array");
	} else {
		readers_snapshot(&s->d->readers, states, n, s->sock->prefer);
		size_t len = wire_encode_reader_states(&s->params, states, n, buf, bytes);
		session_send(s, buf, len);
	}
	free(states);
	free(buf);
}

/*
 * A 4:6 client registers with 0x13 and then fetches the array with 0x16 and
 * 0x17. A signal sent in between would be read as the 0x16 answer, so it is
 * held until the array is out (or the client moves on to something else).
 */
static void release_held_signal(struct session *s)
{
	s->fetch_pending = false;
	if (s->signal_held) {
		s->signal_held = false;
		status_waiter_send(s, s->held_rv);
	}
}

static enum dispatch_result cmd_wait(struct session *s, const struct wire_cmd_spec *spec)
{
	status_waiters_add(s->d, s);
	if (spec->reply == WIRE_REPLY_ARRAY_AND_WAIT)
		send_state_array(s, s->legacy_slots);
	else if (sized_arrays(s))
		s->fetch_pending = true;
	return DISPATCH_DONE;
}

static enum dispatch_result cmd_stop_waiting(struct session *s, struct wire_msg *msg,
					     const struct wire_cmd_spec *spec)
{
	bool was_waiting = status_waiters_remove(s->d, s);
	/* Newer daemons answer only a connection that was still registered. */
	if (!was_waiting && spec->reply == WIRE_REPLY_STRUCT_IF_WAITING)
		return DISPATCH_DONE;
	/* the request's timeout field is echoed, as pcsc-lite does */
	msg->u.wait.rv = was_waiting ? SCARD_S_SUCCESS : SCARD_F_INTERNAL_ERROR;
	return reply(s, msg);
}

static enum dispatch_result cmd_reader_events(struct session *s, struct wire_msg *msg)
{
	msg->u.events.events = s->d->readers.reader_events;
	msg->u.events.rv = SCARD_S_SUCCESS;
	return reply(s, msg);
}

static enum dispatch_result cmd_state_size(struct session *s, struct wire_msg *msg)
{
	s->told_slots = (uint32_t)readers_state_capacity(&s->d->readers);
	msg->u.count = (int32_t)s->told_slots;
	return reply(s, msg);
}

/* Exactly the length this client was told, even if readers came since. */
static enum dispatch_result cmd_state_array(struct session *s)
{
	size_t n = s->told_slots ? s->told_slots : readers_state_capacity(&s->d->readers);
	send_state_array(s, n);
	release_held_signal(s);
	return DISPATCH_DONE;
}

enum dispatch_result dispatch_request(struct session *s, struct wire_msg *msg,
				      const uint8_t *data, size_t data_len)
{
	const struct wire_cmd_spec *spec = wire_cmd_lookup(s->params.proto, msg->cmd);
	if (!spec)
		return DISPATCH_CLOSE;
	if (s->fetch_pending && msg->cmd != WIRE_GET_READERS_STATE_SIZE &&
	    msg->cmd != WIRE_GET_READERS_STATE_ARRAY)
		release_held_signal(s);

	switch (msg->cmd) {
	case WIRE_VERSION: return cmd_version(s, msg);
	case WIRE_ESTABLISH_CONTEXT: return cmd_establish(s, msg);
	case WIRE_RELEASE_CONTEXT: return cmd_release(s, msg);
	case WIRE_CANCEL: return cmd_cancel(s, msg);
	case WIRE_CONNECT: return cmd_connect(s, msg);
	case WIRE_RECONNECT: return cmd_reconnect(s, msg);
	case WIRE_DISCONNECT: return cmd_disconnect(s, msg);
	case WIRE_BEGIN_TRANSACTION: return cmd_begin(s, msg);
	case WIRE_END_TRANSACTION: return cmd_end(s, msg);
	case WIRE_TRANSMIT: return cmd_transmit(s, msg, data, data_len);
	case WIRE_CONTROL: return cmd_control(s, msg, data, data_len);
	case WIRE_STATUS: return cmd_status(s, msg);
	case WIRE_GET_ATTRIB:
	case WIRE_SET_ATTRIB: return cmd_getset_attrib(s, msg);
	case WIRE_GET_READERS_STATE: send_state_array(s, s->legacy_slots); return DISPATCH_DONE;
	case WIRE_GET_READERS_STATE_ARRAY: return cmd_state_array(s);
	case WIRE_WAIT_READER_STATE_CHANGE: return cmd_wait(s, spec);
	case WIRE_STOP_WAITING_READER_STATE_CHANGE: return cmd_stop_waiting(s, msg, spec);
	case WIRE_GET_READER_EVENTS: return cmd_reader_events(s, msg);
	case WIRE_GET_READERS_STATE_SIZE: return cmd_state_size(s, msg);
	default: return DISPATCH_CLOSE;
	}
}
