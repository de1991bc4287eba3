/*
 * Sessions registered for status-change signals
 * (CMD_WAIT_READER_STATE_CHANGE). Notification is one-shot and broadcast, as
 * pcsc-lite clients expect: a change sends each registered session one
 * 8-byte signal and empties the list. The daemon calls sessions_signal_all
 * once per loop pass in which clients' view of the readers changed.
 */
#include "session.h"

#include <pcsclite.h>

#include "daemon.h"
#include "log.h"

void session_wait_status(struct session *s)
{
	struct daemon *d = s->d;
	if (s->waiting)
		return;
	s->waiting = true;
	s->wait_prev = NULL;
	s->wait_next = d->waiters;
	if (d->waiters)
		d->waiters->wait_prev = s;
	d->waiters = s;
	d->n_waiters++;
}

bool session_stop_waiting(struct session *s)
{
	struct daemon *d = s->d;
	if (!s->waiting)
		return false;
	if (s->wait_prev)
		s->wait_prev->wait_next = s->wait_next;
	else
		d->waiters = s->wait_next;
	if (s->wait_next)
		s->wait_next->wait_prev = s->wait_prev;
	s->wait_prev = s->wait_next = NULL;
	s->waiting = false;
	d->n_waiters--;
	return true;
}

static void send_signal_now(struct session *s, uint32_t rv)
{
	struct wire_msg msg = { .cmd = WIRE_WAIT_READER_STATE_CHANGE };
	msg.u.wait.timeout = 0;
	msg.u.wait.rv = rv;
	session_send_msg(s, &msg);
}

/* A 4:6 client between its 0x13 and its array fetch gets the signal later. */
static void send_signal(struct session *s, uint32_t rv)
{
	if (s->fetch_pending) {
		s->signal_held = true;
		s->held_rv = rv;
		return;
	}
	send_signal_now(s, rv);
}

void session_hold_signals(struct session *s)
{
	s->fetch_pending = true;
}

void session_release_signals(struct session *s)
{
	s->fetch_pending = false;
	if (s->signal_held) {
		s->signal_held = false;
		send_signal_now(s, s->held_rv);
	}
}

void session_signal(struct session *s, uint32_t rv)
{
	if (session_stop_waiting(s))
		send_signal(s, rv);
}

void sessions_signal_all(struct daemon *d)
{
	if (d->n_waiters)
		log_debug("waking %zu status-change waiters", d->n_waiters);
	/* Detach the list first: a send failure must not disturb the walk. */
	struct session *s = d->waiters;
	d->waiters = NULL;
	d->n_waiters = 0;
	while (s) {
		struct session *next = s->wait_next;
		s->waiting = false;
		s->wait_prev = s->wait_next = NULL;
		send_signal(s, SCARD_S_SUCCESS);
		s = next;
	}
}
