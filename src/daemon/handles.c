#include "handles.h"

#include <stdlib.h>

#include <pcsclite.h>

#include "daemon.h"
#include "dispatch.h"
#include "event_loop.h"
#include "readers.h"
#include "session.h"

bool handle_id_in_use(const struct daemon *d, int32_t id)
{
	for (size_t i = 0; i < d->readers.cap; i++) {
		const struct reader *r = d->readers.slots[i];
		for (const struct handle *h = r ? r->handles : NULL; h; h = h->next_in_reader)
			if (h->id == id)
				return true;
	}
	return false;
}

struct handle *handle_new(struct daemon *d, struct session *s, struct reader *r, uint32_t share_mode)
{
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	do
		h->id = daemon_random_id();
	while (h->id == 0 || handle_id_in_use(d, h->id));
	h->session = s;
	h->reader = r;
	h->share_mode = share_mode;
	h->next_in_session = s->handles;
	s->handles = h;
	s->n_handles++;
	h->next_in_reader = r->handles;
	r->handles = h;
	handles_recount(d, r);
	return h;
}

static void unlink_from(struct handle **list, struct handle *h, bool by_session)
{
	for (struct handle **p = list; *p;
	     p = by_session ? &(*p)->next_in_session : &(*p)->next_in_reader) {
		if (*p == h) {
			*p = by_session ? h->next_in_session : h->next_in_reader;
			return;
		}
	}
}

void handle_free(struct daemon *d, struct handle *h)
{
	struct reader *r = h->reader;
	unlink_from(&h->session->handles, h, true);
	h->session->n_handles--;
	unlink_from(&r->handles, h, false);
	if (r->lock_holder == h)
		reader_lock_release(d, r);
	free(h);
	handles_recount(d, r);
}

struct handle *handle_find(const struct session *s, int32_t id)
{
	for (struct handle *h = s->handles; h; h = h->next_in_session)
		if (h->id == id)
			return h;
	return NULL;
}

long handles_may_share(const struct reader *r, uint32_t share_mode)
{
	if (r->sharing < 0)
		return SCARD_E_SHARING_VIOLATION;
	if (share_mode == SCARD_SHARE_EXCLUSIVE && r->sharing > 0)
		return SCARD_E_SHARING_VIOLATION;
	return SCARD_S_SUCCESS;
}

/* Sharing is derived from the handles; clients see it, so a change wakes them. */
void handles_recount(struct daemon *d, struct reader *r)
{
	int32_t sharing = 0;
	for (const struct handle *h = r->handles; h; h = h->next_in_reader) {
		if (h->share_mode == SCARD_SHARE_EXCLUSIVE) {
			sharing = -1;
			break;
		}
		sharing++;
	}
	if (sharing != r->sharing) {
		r->sharing = sharing;
		readers_changed(d);
	}
}

bool handle_locked_out(const struct handle *h)
{
	return h->reader->lock_holder && h->reader->lock_holder != h;
}

bool handle_lock(struct handle *h)
{
	if (handle_locked_out(h))
		return false;
	h->reader->lock_holder = h;
	h->reader->lock_count++;
	return true;
}

bool handle_unlock(struct daemon *d, struct handle *h)
{
	struct reader *r = h->reader;
	if (r->lock_holder != h)
		return false;
	if (--r->lock_count == 0)
		reader_lock_release(d, r);
	return true;
}

static void wake_lock_waiters(struct event_loop *loop, uint64_t id, void *data)
{
	struct reader *r = data;
	(void)loop;
	(void)id;
	r->wake_timer = 0;
	/* Retry in arrival order; whoever parks again goes to the back, once. */
	size_t n = 0;
	for (struct session *s = r->lock_waiters; s; s = s->lock_next)
		n++;
	while (n-- > 0 && r->lock_waiters && !r->lock_holder) {
		struct session *s = r->lock_waiters;
		lock_wait_remove(s);
		if (dispatch_retry_parked(s) != DISPATCH_PARKED)
			session_resume(s);
	}
}

void reader_lock_release(struct daemon *d, struct reader *r)
{
	r->lock_holder = NULL;
	r->lock_count = 0;
	if (r->lock_waiters && !r->wake_timer)
		r->wake_timer = el_add_timer(d->loop, 0, wake_lock_waiters, r);
}

void handles_flag_all(struct reader *r, enum handle_event ev, const struct handle *except)
{
	for (struct handle *h = r->handles; h; h = h->next_in_reader)
		if (h != except)
			h->event = ev;
}

void lock_wait_enqueue(struct reader *r, struct session *s)
{
	s->park = PARK_LOCK;
	s->lock_reader = r;
	s->lock_next = NULL;
	if (r->lock_waiters_tail)
		r->lock_waiters_tail->lock_next = s;
	else
		r->lock_waiters = s;
	r->lock_waiters_tail = s;
}

void lock_wait_remove(struct session *s)
{
	struct reader *r = s->lock_reader;
	if (!r)
		return;
	struct session *prev = NULL;
	for (struct session *w = r->lock_waiters; w; prev = w, w = w->lock_next) {
		if (w != s)
			continue;
		if (prev)
			prev->lock_next = s->lock_next;
		else
			r->lock_waiters = s->lock_next;
		if (r->lock_waiters_tail == s)
			r->lock_waiters_tail = prev;
		break;
	}
	s->lock_reader = NULL;
	s->lock_next = NULL;
	s->park = PARK_NONE;
	if (s->lock_timer) {
		el_del_timer(s->d->loop, s->lock_timer);
		s->lock_timer = 0;
	}
}
