#include "readers.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>

#include "handles.h"

void readers_init(struct readers *rs)
{
	memset(rs, 0, sizeof(*rs));
	rs->reader_events = 1;
}

static void reader_free(struct reader *r)
{
	free(r);
}

void readers_destroy(struct readers *rs)
{
	/* The woken list holds references: drop them before freeing. */
	while (rs->woken) {
		struct reader *r = rs->woken;
		rs->woken = r->next_woken;
		if (--r->refs == 0)
			reader_free(r);
	}
	for (size_t i = 0; i < rs->cap; i++)
		if (rs->slots[i])
			reader_free(rs->slots[i]);
	free(rs->slots);
	memset(rs, 0, sizeof(*rs));
}

void reader_ref(struct reader *r)
{
	r->refs++;
}

void reader_unref(struct reader *r)
{
	if (--r->refs == 0)
		reader_free(r);
}

void readers_make_name(char *out, size_t cap, const char *friendly, unsigned index, unsigned slot)
{
	char suffix[16];
	snprintf(suffix, sizeof(suffix), " %02X %02X", index & 0xFFu, slot & 0xFFu);
	size_t room = cap - 1 - strlen(suffix);
	size_t n = strnlen(friendly, room);
	memcpy(out, friendly, n);
	memcpy(out + n, suffix, strlen(suffix) + 1);
}

/* The lowest free position, growing the array when none is free. */
static long free_position(struct readers *rs)
{
	for (size_t i = 0; i < rs->cap; i++)
		if (!rs->slots[i])
			return (long)i;
	size_t ncap = rs->cap ? rs->cap * 2 : 16;
	struct reader **n = realloc(rs->slots, ncap * sizeof(*n));
	if (!n)
		return -1;
	memset(n + rs->cap, 0, (ncap - rs->cap) * sizeof(*n));
	rs->slots = n;
	long pos = (long)rs->cap;
	rs->cap = ncap;
	return pos;
}

static void bump_reader_events(struct readers *rs)
{
	/* pcsc-lite's counter: 16-bit signed, never 0 or negative. */
	rs->reader_events = rs->reader_events >= 0x7FFF ? 1 : rs->reader_events + 1;
}

void readers_mark_changed(struct readers *rs)
{
	rs->changed = true;
}

bool readers_take_changed(struct readers *rs)
{
	bool changed = rs->changed;
	rs->changed = false;
	return changed;
}

struct reader *readers_add(struct readers *rs, const char *name, void *device, unsigned slot)
{
	if (readers_find(rs, name))
		return NULL;
	long pos = free_position(rs);
	struct reader *r = pos < 0 ? NULL : calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->rs = rs;
	r->refs = 1;
	r->device = device;
	r->slot = slot;
	r->position = (size_t)pos;
	r->serial = ++rs->last_serial;
	r->state = SCARD_ABSENT;
	r->waiters.prev = r->waiters.next = &r->waiters;
	rs->slots[pos] = r;
	rs->count++;
	bump_reader_events(rs);
	readers_mark_changed(rs);
	return r;
}

void readers_remove(struct readers *rs, struct reader *r)
{
	if (r->removed)
		return;
	if (reader_card_present(r))
		reader_card_removed(r);
	handles_flag_all(r, HANDLE_EVENT_REMOVED, NULL);
	reader_lock_release(r);
	reader_wake_waiters(r);
	r->removed = true;
	r->device = NULL;
	rs->slots[r->position] = NULL;
	rs->count--;
	bump_reader_events(rs);
	readers_mark_changed(rs);
	reader_unref(r);
}

void readers_unplug(struct readers *rs, struct reader *r)
{
	if (r->removed)
		return;
	r->unplugged = true;
	readers_remove(rs, r);
}

struct reader *readers_find(const struct readers *rs, const char *name)
{
	for (size_t i = 0; i < rs->cap; i++)
		if (rs->slots[i] && strcmp(rs->slots[i]->name, name) == 0)
			return rs->slots[i];
	return NULL;
}

static void fill_record(struct wire_reader_state *w, const struct reader *r)
{
	memcpy(w->name, r->name, sizeof(w->name));
	w->event_counter = r->event_counter;
	w->state = r->state;
	w->sharing = r->sharing;
	memcpy(w->atr, r->atr, r->atr_len);
	w->atr_len = r->atr_len;
	w->protocol = r->protocol;
}

size_t readers_snapshot(const struct readers *rs, struct wire_reader_state *out, size_t n,
			const char *prefer)
{
	return readers_snapshot_where(rs, out, n, prefer, NULL, NULL);
}

size_t readers_snapshot_where(const struct readers *rs, struct wire_reader_state *out, size_t n,
			      const char *prefer, bool (*keep)(void *ctx, const struct reader *r),
			      void *ctx)
{
	bool preferring = prefer && *prefer;
	size_t written = 0;

	memset(out, 0, n * sizeof(*out));
	/* Pass 0 takes the preferred readers, pass 1 the others. */
	for (int pass = preferring ? 0 : 1; pass < 2; pass++) {
		for (size_t i = 0; i < rs->cap && written < n; i++) {
			const struct reader *r = rs->slots[i];
			if (!r || (keep && !keep(ctx, r)))
				continue;
			bool match = preferring && fnmatch(prefer, r->name, 0) == 0;
			if (match == (pass == 0))
				fill_record(&out[written++], r);
		}
	}
	return written;
}

size_t readers_state_capacity(struct readers *rs)
{
	size_t used = 0;

	for (size_t i = 0; i < rs->cap; i++)
		if (rs->slots[i])
			used = i + 1;
	used = (used + 15) / 16 * 16;
	if (used < 16)
		used = 16;
	if (used > rs->state_capacity)
		rs->state_capacity = used;
	return rs->state_capacity;
}

static void set_atr(struct reader *r, const uint8_t *atr, size_t len)
{
	if (len > sizeof(r->atr))
		len = sizeof(r->atr);
	memset(r->atr, 0, sizeof(r->atr));
	if (atr && len)
		memcpy(r->atr, atr, len);
	r->atr_len = (uint32_t)len;
}

bool reader_card_present(const struct reader *r)
{
	return (r->state & SCARD_PRESENT) != 0;
}

bool reader_card_powered(const struct reader *r)
{
	return (r->state & SCARD_POWERED) != 0;
}

void reader_card_inserted(struct reader *r, const uint8_t *atr, size_t atr_len, bool powered)
{
	r->unavailable = false;
	r->state = powered ? SCARD_PRESENT | SCARD_POWERED | SCARD_NEGOTIABLE
			   : SCARD_PRESENT | SCARD_SWALLOWED;
	set_atr(r, atr, powered ? atr_len : 0);
	r->protocol = 0;
	r->event_counter = (r->event_counter + 1) & 0xFFFFu;
	readers_mark_changed(r->rs);
}

void reader_card_removed(struct reader *r)
{
	r->unavailable = false;
	r->state = SCARD_ABSENT;
	set_atr(r, NULL, 0);
	r->protocol = 0;
	r->event_counter = (r->event_counter + 1) & 0xFFFFu;
	handles_flag_all(r, HANDLE_EVENT_REMOVED, NULL);
	reader_lock_release(r);
	readers_mark_changed(r->rs);
}

void reader_unavailable(struct reader *r)
{
	reader_card_removed(r);
	r->unavailable = true;
	r->state = SCARD_UNKNOWN;
}

void reader_card_repowered(struct reader *r, const uint8_t *atr, size_t atr_len,
			   enum card_power power)
{
	if (!reader_card_present(r))
		return;
	switch (power) {
	case CARD_POWERED:
		r->state = SCARD_PRESENT | SCARD_POWERED | SCARD_NEGOTIABLE;
		set_atr(r, atr, atr_len);
		break;
	case CARD_UNPOWERED:
		r->state = SCARD_PRESENT;
		r->protocol = 0;
		break;
	case CARD_MUTE:
		r->state = SCARD_PRESENT | SCARD_SWALLOWED;
		set_atr(r, NULL, 0);
		r->protocol = 0;
		break;
	}
	readers_mark_changed(r->rs);
}

void reader_set_protocol(struct reader *r, uint32_t protocol)
{
	if (r->protocol == protocol)
		return;
	r->protocol = protocol;
	readers_mark_changed(r->rs);
}

void reader_wait_lock(struct reader *r, struct reader_waiter *w)
{
	w->reader = r;
	w->next = &r->waiters;
	w->prev = r->waiters.prev;
	r->waiters.prev->next = w;
	r->waiters.prev = w;
	reader_ref(r);
}

void reader_unwait(struct reader_waiter *w)
{
	struct reader *r = w->reader;
	if (!r)
		return;
	w->prev->next = w->next;
	w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->reader = NULL;
	reader_unref(r);
}

struct reader_waiter *reader_first_waiter(const struct reader *r)
{
	return r->waiters.next == &r->waiters ? NULL : r->waiters.next;
}

void reader_wake_waiters(struct reader *r)
{
	if (r->woken || !reader_first_waiter(r))
		return;
	r->woken = true;
	r->next_woken = NULL;
	/* FIFO, so readers are retried in the order their locks came free. */
	struct reader **tail = &r->rs->woken;
	while (*tail)
		tail = &(*tail)->next_woken;
	*tail = r;
	reader_ref(r);
}

struct reader *readers_next_woken(struct readers *rs)
{
	struct reader *r = rs->woken;
	if (!r)
		return NULL;
	rs->woken = r->next_woken;
	r->next_woken = NULL;
	r->woken = false;
	return r;
}
