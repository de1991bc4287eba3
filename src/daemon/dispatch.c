#include "dispatch.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>

#include "daemon.h"
#include "log.h"
#include "readers.h"
#include "session.h"
#include "status_waiters.h"

static enum dispatch_result reply(struct session *s, const struct wire_msg *msg)
{
	session_send_msg(s, msg);
	return DISPATCH_DONE;
}

/*
 * Accepts every version the table knows; a newer minor of our major is served
 * as the highest we know, since minors only ever added commands.
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
		log_error("client %" PRIu64 " (pid %d) speaks protocol %d:%d; we serve %d:%d at most",
			  s->id, (int)s->pid, v->major, v->minor, highest->major, highest->minor);
		v->major = highest->major;
		v->minor = highest->minor;
		v->rv = SCARD_E_SERVICE_STOPPED;
		return reply(s, msg);
	}
	s->params.proto = proto;
	s->versioned = true;
	log_debug("Server protocol is %s for this client", proto->name);
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

static void send_state_array(struct session *s)
{
	size_t n = s->params.reader_slots;
	size_t bytes = wire_reader_array_size(&s->params);
	struct wire_reader_state *states = calloc(n ? n : 1, sizeof(*states));
	uint8_t *buf = malloc(bytes ? bytes : 1);
	if (!states || !buf) {
		session_fail(s, "out of memory for the reader array");
	} else {
		readers_snapshot(&s->d->readers, states, n);
		size_t len = wire_encode_reader_states(&s->params, states, n, buf, bytes);
		session_send(s, buf, len);
	}
	free(states);
	free(buf);
}

static enum dispatch_result cmd_wait(struct session *s, const struct wire_cmd_spec *spec)
{
	status_waiters_add(s->d, s);
	if (spec->reply == WIRE_REPLY_ARRAY_AND_WAIT)
		send_state_array(s);
	return DISPATCH_DONE;
}

static enum dispatch_result cmd_stop_waiting(struct session *s, struct wire_msg *msg,
					     const struct wire_cmd_spec *spec)
{
	bool was_waiting = status_waiters_remove(s->d, s);
	/* Newer daemons answer only a connection that was still registered. */
	if (!was_waiting && spec->reply == WIRE_REPLY_STRUCT_IF_WAITING)
		return DISPATCH_DONE;
	msg->u.wait.timeout = 0;
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
	msg->u.count = (int32_t)s->params.reader_slots;
	return reply(s, msg);
}

enum dispatch_result dispatch_request(struct session *s, struct wire_msg *msg,
				      const uint8_t *data, size_t data_len)
{
	const struct wire_cmd_spec *spec = wire_cmd_lookup(s->params.proto, msg->cmd);
	if (!spec)
		return DISPATCH_CLOSE;

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
	case WIRE_GET_READERS_STATE:
	case WIRE_GET_READERS_STATE_ARRAY: send_state_array(s); return DISPATCH_DONE;
	case WIRE_WAIT_READER_STATE_CHANGE: return cmd_wait(s, spec);
	case WIRE_STOP_WAITING_READER_STATE_CHANGE: return cmd_stop_waiting(s, msg, spec);
	case WIRE_GET_READER_EVENTS: return cmd_reader_events(s, msg);
	case WIRE_GET_READERS_STATE_SIZE: return cmd_state_size(s, msg);
	default: return DISPATCH_CLOSE;
	}
}
