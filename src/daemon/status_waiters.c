#include "status_waiters.h"

#include <pcsclite.h>

#include "daemon.h"
#include "log.h"
#include "session.h"

void status_waiters_add(struct daemon *d, struct session *s)
{
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

bool status_waiters_remove(struct daemon *d, struct session *s)
{
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

void status_waiter_send(struct session *s, uint32_t rv)
{
	struct wire_msg msg = {.cmd = WIRE_WAIT_READER_STATE_CHANGE};
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
	status_waiter_send(s, rv);
}

void status_waiter_signal(struct daemon *d, struct session *s, uint32_t rv)
{
	if (status_waiters_remove(d, s))
		send_signal(s, rv);
}

void status_waiters_wake_all(struct daemon *d)
{
	size_t n = d->n_waiters;
	if (n)
		log_debug("waking %zu status-change waiters", n);
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
