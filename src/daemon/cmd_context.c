/* Version negotiation, contexts and SCardCancel. */
#include <inttypes.h>

#include <pcsclite.h>

#include "client_build.h"
#include "daemon.h"
#include "log.h"
#include "peer_info.h"
#include "requests.h"
#include "session.h"
#include "socket_spec.h"

/*
 * Records for the fixed-size arrays (0x12, the 4:4/4:5 WAIT answer) of this
 * client: the socket's setting, or with readers=auto the length its own
 * libpcsclite was built with when that can be read (16 upstream, 48 in
 * Fedora's builds), else 16. A 4:6 client asks for the length instead.
 */
uint32_t legacy_slots_peek(const struct session *s)
{
	if (s->legacy_slots)
		return s->legacy_slots;
	if (s->sock->readers)
		return s->sock->readers;
	if (!s->versioned || wire_cmd_lookup(s->params.proto, WIRE_GET_READERS_STATE_ARRAY))
		return WIRE_LEGACY_READER_SLOTS;
	uint32_t guess = client_build_guess_slots(s->pid);
	return guess ? guess : WIRE_LEGACY_READER_SLOTS;
}

uint32_t legacy_slots(struct session *s)
{
	if (s->legacy_slots)
		return s->legacy_slots;
	s->legacy_slots = legacy_slots_peek(s);
	if (s->legacy_slots != WIRE_LEGACY_READER_SLOTS && !s->sock->readers)
		log_info("client %" PRIu64 " (pid %d): its libpcsclite holds %u readers; "
			 "serving it %u-record arrays",
			 s->id, (int)s->pid, s->legacy_slots, s->legacy_slots);
	return s->legacy_slots;
}

/*
 * Serves every version the table knows, each connection as its own; a newer
 * minor of our major is served as the highest we know, since minors only
 * ever added commands. The reply names the version the connection now
 * speaks. Anything else is refused the way pcsc-lite refuses (the
 * connection stays open), with one line saying who asked.
 */
enum outcome cmd_version(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_version_msg *v = &rq->msg->u.version;
	const struct wire_proto *proto = wire_proto_serve(v->major, v->minor);
	const struct wire_proto *highest = wire_proto_highest();

	if (!proto) {
		char who[512];
		peer_describe(s->pid, s->uid, who, sizeof(who));
		log_error("client %" PRIu64 " (%s) speaks protocol %d:%d; scardd serves %s to %s "
			  "(and newer %d:x); refused",
			  s->id, who, v->major, v->minor, wire_proto_lowest()->name, highest->name,
			  highest->major);
		v->major = highest->major;
		v->minor = highest->minor;
		v->rv = SCARD_E_SERVICE_STOPPED;
		return reply(s, rq->msg);
	}
	proto = wire_proto_with_name_len(proto, s->sock->name_len);
	s->params.proto = proto;
	s->versioned = true;
	s->legacy_slots = 0; /* guessed when first needed */
	v->major = proto->major;
	v->minor = proto->minor;
	v->rv = SCARD_S_SUCCESS;
	return reply(s, rq->msg);
}

enum outcome cmd_establish(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_establish *e = &rq->msg->u.establish;
	if (e->scope > SCARD_SCOPE_GLOBAL) {
		e->rv = SCARD_E_INVALID_VALUE;
		return reply(s, rq->msg);
	}
	/* A second establish on one connection replaces the first, as in pcsc-lite. */
	e->context = daemon_new_context_id(s->d);
	s->context = e->context;
	s->has_context = true;
	e->rv = SCARD_S_SUCCESS;
	return reply(s, rq->msg);
}

enum outcome cmd_release(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_release *r = &rq->msg->u.release;
	if (!s->has_context) {
		r->rv = SCARD_E_INVALID_HANDLE;
	} else if (r->context != s->context) {
		r->rv = SCARD_E_INVALID_VALUE;
	} else {
		session_release_handles(s);
		s->has_context = false;
		r->rv = SCARD_S_SUCCESS;
	}
	return reply(s, rq->msg);
}

enum outcome cmd_cancel(struct request *rq)
{
	struct session *s = rq->s;
	struct wire_cancel *c = &rq->msg->u.cancel;
	struct session *target = session_by_context(s->d, (uint32_t)c->context);
	if (!target) {
		c->rv = SCARD_E_INVALID_HANDLE;
		return reply(s, rq->msg);
	}
	session_signal(target, SCARD_E_CANCELLED);
	c->rv = SCARD_S_SUCCESS;
	return reply(s, rq->msg);
}
