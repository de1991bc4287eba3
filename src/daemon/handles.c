#include "handles.h"

#include <stdlib.h>
#include <sys/random.h>

#include <pcsclite.h>

#include "readers.h"

int32_t handles_random_id(void)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	/* Fuzzers must be able to guess handles: a few small values, reused. */
	static uint32_t next;
	return (int32_t)(next++ % 64u + 1u);
#endif
	uint32_t v = 0;
	while (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		;
	return (int32_t)(v & 0x7FFFFFFFu);
}

static bool id_in_list(const struct handle_list *owner, int32_t id)
{
	return handle_find(owner, id);
}

static bool id_in_use(const struct readers *rs, const struct handle_list *owner, int32_t id)
{
	if (id_in_list(owner, id))
		return true;
	for (size_t i = 0; i < rs->cap; i++) {
		const struct reader *r = rs->slots[i];
		for (const struct handle *h = r ? r->handles : NULL; h; h = h->next_in_reader)
			if (h->id == id)
				return true;
	}
	return false;
}

/* Sharing is derived from the handles; clients see it. */
static void recount(struct reader *r)
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
		readers_mark_changed(r->rs);
	}
}

struct handle *handle_new(struct handle_list *owner, struct reader *r, uint32_t share_mode)
{
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	do
		h->id = handles_random_id();
	while (h->id == 0 || id_in_use(r->rs, owner, h->id));
	h->owner = owner;
	h->reader = r;
	h->share_mode = share_mode;
	h->next_in_owner = owner->head;
	owner->head = h;
	owner->n++;
	h->next_in_reader = r->handles;
	r->handles = h;
	reader_ref(r);
	recount(r);
	return h;
}

void handle_free(struct handle *h)
{
	struct reader *r = h->reader;
	for (struct handle **p = &h->owner->head; *p; p = &(*p)->next_in_owner) {
		if (*p == h) {
			*p = h->next_in_owner;
			break;
		}
	}
	h->owner->n--;
	for (struct handle **p = &r->handles; *p; p = &(*p)->next_in_reader) {
		if (*p == h) {
			*p = h->next_in_reader;
			break;
		}
	}
	if (r->lock_holder == h)
		reader_lock_release(r);
	free(h);
	recount(r);
	reader_unref(r);
}

struct handle *handle_find(const struct handle_list *owner, int32_t id)
{
	for (struct handle *h = owner->head; h; h = h->next_in_owner)
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

void handle_set_share_mode(struct handle *h, uint32_t share_mode)
{
	h->share_mode = share_mode;
	recount(h->reader);
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

bool handle_unlock(struct handle *h)
{
	struct reader *r = h->reader;
	if (r->lock_holder != h)
		return false;
	if (--r->lock_count == 0)
		reader_lock_release(r);
	return true;
}

void reader_lock_release(struct reader *r)
{
	if (!r->lock_holder)
		return;
	r->lock_holder = NULL;
	r->lock_count = 0;
	reader_wake_waiters(r);
}

void handles_flag_all(struct reader *r, enum handle_event ev, const struct handle *except)
{
	for (struct handle *h = r->handles; h; h = h->next_in_reader)
		if (h != except)
			h->event = ev;
}
