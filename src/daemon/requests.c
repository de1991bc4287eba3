/* The request table: one handler per command, looked up by code. */
#include "requests.h"

#include <pcsclite.h>

#include "access.h"
#include "job.h"
#include "polkit_gate.h"
#include "session.h"

typedef enum outcome handler_fn(struct request *rq);

static const struct {
	uint32_t cmd;
	handler_fn *fn;
} handlers[] = {
	{ WIRE_VERSION, cmd_version },
	{ WIRE_ESTABLISH_CONTEXT, cmd_establish },
	{ WIRE_RELEASE_CONTEXT, cmd_release },
	{ WIRE_CANCEL, cmd_cancel },
	{ WIRE_CONNECT, cmd_connect },
	{ WIRE_RECONNECT, cmd_reconnect },
	{ WIRE_DISCONNECT, cmd_disconnect },
	{ WIRE_BEGIN_TRANSACTION, cmd_begin },
	{ WIRE_END_TRANSACTION, cmd_end },
	{ WIRE_TRANSMIT, cmd_transmit },
	{ WIRE_CONTROL, cmd_control },
	{ WIRE_STATUS, cmd_status },
	{ WIRE_GET_ATTRIB, cmd_attrib },
	{ WIRE_SET_ATTRIB, cmd_attrib },
	{ WIRE_GET_READERS_STATE, cmd_readers_state },
	{ WIRE_WAIT_READER_STATE_CHANGE, cmd_wait },
	{ WIRE_STOP_WAITING_READER_STATE_CHANGE, cmd_stop_waiting },
	{ WIRE_GET_READER_EVENTS, cmd_reader_events },
	{ WIRE_GET_READERS_STATE_SIZE, cmd_state_size },
	{ WIRE_GET_READERS_STATE_ARRAY, cmd_state_array },
};

enum outcome requests_handle(struct request *rq)
{
	struct session *s = rq->s;
	/* The session's version decides which commands exist (wire tables). */
	if (!wire_cmd_lookup(s->params.proto, rq->msg->cmd))
		return OUT_CLOSE;
	/* 4:6: any other request ends the window in which signals are held. */
	if (s->fetch_pending && rq->msg->cmd != WIRE_GET_READERS_STATE_SIZE &&
	    rq->msg->cmd != WIRE_GET_READERS_STATE_ARRAY)
		session_release_signals(s);
	/* The policy's one gate: what it denies never reaches a handler. */
	enum outcome denied;
	if (access_denies(rq, &denied))
		return denied;
	/* polkit after the policy: what the policy denies is never asked of polkitd */
	if (polkit_gate_request(rq, &denied))
		return denied;
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (handlers[i].cmd == rq->msg->cmd)
			return handlers[i].fn(rq);
	return OUT_CLOSE;
}

enum outcome reply(struct session *s, const struct wire_msg *msg)
{
	session_send_msg(s, msg);
	return OUT_DONE;
}

/* Every reply struct a handler answers with a result ends with rv (only
 * 0x16's bare count has none, and no handler here answers it this way). */
enum outcome reply_rv(struct session *s, struct wire_msg *msg, long rv)
{
	wire_msg_set_rv(msg, (uint32_t)rv);
	return reply(s, msg);
}

void requests_timed_out(struct session *s, const struct job *job)
{
	struct wire_msg msg = job->msg;
	if (msg.cmd == WIRE_CONNECT)
		cmd_connect_timed_out(s, job);
	reply_rv(s, &msg, SCARD_E_TIMEOUT);
}
