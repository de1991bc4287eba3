/*
 * The reader-state array and status-change waits: CMD_GET_READERS_STATE,
 * the WAIT/STOP pair in every version, CMD_GET_READER_EVENTS and 4:6's
 * sized array (0x16, 0x17).
 */
#include <stdlib.h>

#include <pcsclite.h>

#include "access.h"
#include "daemon.h"
#include "readers.h"
#include "requests.h"
#include "session.h"
#include "socket_spec.h"

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
		readers_snapshot_where(&s->d->readers, states, n, s->sock->prefer,
				       s->d->policy ? access_sees : NULL, s);
		size_t len = wire_encode_reader_states(&s->params, states, n, buf, bytes);
		session_send(s, buf, len);
	}
	free(states);
	free(buf);
}

enum outcome cmd_readers_state(struct request *rq)
{
	send_state_array(rq->s, legacy_slots(rq->s));
	return OUT_DONE;
}

/*
 * 4:4/4:5 answer the WAIT with the array at once; 4:6 clients fetch it
 * with 0x16 and 0x17, and a signal sent in between would be read as the
 * 0x16 answer, so signals are held until the array is out (or the client
 * moves on to something else).
 */
enum outcome cmd_wait(struct request *rq)
{
	struct session *s = rq->s;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(s->params.proto, rq->msg->cmd);
	session_wait_status(s);
	if (spec->reply == WIRE_REPLY_ARRAY_AND_WAIT)
		send_state_array(s, legacy_slots(s));
	else if (wire_cmd_lookup(s->params.proto, WIRE_GET_READERS_STATE_ARRAY))
		session_hold_signals(s);
	return OUT_DONE;
}

enum outcome cmd_stop_waiting(struct request *rq)
{
	struct session *s = rq->s;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(s->params.proto, rq->msg->cmd);
	bool was_waiting = session_stop_waiting(s);
	/* Newer daemons answer only a connection that was still registered. */
	if (!was_waiting && spec->reply == WIRE_REPLY_STRUCT_IF_WAITING)
		return OUT_DONE;
	/* the request's timeout field is echoed, as pcsc-lite does */
	rq->msg->u.wait.rv = was_waiting ? SCARD_S_SUCCESS : SCARD_F_INTERNAL_ERROR;
	return reply(s, rq->msg);
}

enum outcome cmd_reader_events(struct request *rq)
{
	rq->msg->u.events.events = rq->s->d->readers.reader_events;
	rq->msg->u.events.rv = SCARD_S_SUCCESS;
	return reply(rq->s, rq->msg);
}

enum outcome cmd_state_size(struct request *rq)
{
	struct session *s = rq->s;
	s->told_slots = (uint32_t)readers_state_capacity(&s->d->readers);
	rq->msg->u.count = (int32_t)s->told_slots;
	return reply(s, rq->msg);
}

/* Exactly the length this client was told, even if readers came since. */
enum outcome cmd_state_array(struct request *rq)
{
	struct session *s = rq->s;
	size_t n = s->told_slots ? s->told_slots : readers_state_capacity(&s->d->readers);
	send_state_array(s, n);
	session_release_signals(s);
	return OUT_DONE;
}
