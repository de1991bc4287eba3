#include "readers.h"

#include <stdio.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>

#include "daemon.h"
#include "event_loop.h"
#include "handles.h"
#include "log.h"
#include "status_waiters.h"

void readers_init(struct readers *rs)
{
	memset(rs, 0, sizeof(*rs));
	rs->reader_events = 1;
}

void readers_destroy(struct readers *rs)
{
	for (size_t i = 0; i < rs->cap; i++)
		free(rs->slots[i]);
	free(rs->slots);
	rs->slots = NULL;
	rs->cap = rs->count = 0;
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

static bool name_taken(const struct readers *rs, const char *name)
{
	return readers_find(rs, name) != NULL;
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

int readers_add_device(struct daemon *d, struct device *dev, unsigned n_slots)
{
	struct readers *rs = &d->readers;
	dev->slots = calloc(n_slots, sizeof(*dev->slots));
	if (!dev->slots)
		return -1;
	for (unsigned i = 0; i < n_slots; i++) {
		long pos = free_position(rs);
		struct reader *r = calloc(1, sizeof(*r));
		if (pos < 0 || !r) {
			free(r);
			return -1;
		}
		readers_make_name(r->name, sizeof(r->name), dev->friendly_name, dev->index, i);
		if (name_taken(rs, r->name)) {
			log_error("reader name %s already in use; slot not added", r->name);
			free(r);
			continue;
		}
		r->dev = dev;
		r->slot = i;
		r->lun = dev->lun_base | i;
		r->position = (size_t)pos;
		r->state = SCARD_ABSENT;
		rs->slots[pos] = r;
		rs->count++;
		dev->slots[i] = r;
		log_info("reader added: %s", r->name);
	}
	dev->n_slots = n_slots;
	bump_reader_events(rs);
	readers_changed(d);
	return 0;
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
	bool preferring = prefer && *prefer;
	size_t written = 0;

	memset(out, 0, n * sizeof(*out));
	/* Pass 0 takes the preferred readers, pass 1 the others. */
	for (int pass = preferring ? 0 : 1; pass < 2; pass++) {
		for (size_t i = 0; i < rs->cap && written < n; i++) {
			const struct reader *r = rs->slots[i];
			if (!r)
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

void reader_card_inserted(struct daemon *d, struct reader *r, const uint8_t *atr, size_t atr_len,
			  bool powered)
{
	r->state = powered ? SCARD_PRESENT | SCARD_POWERED | SCARD_NEGOTIABLE
			   : SCARD_PRESENT | SCARD_SWALLOWED;
	set_atr(r, atr, powered ? atr_len : 0);
	r->protocol = 0;
	r->event_counter = (r->event_counter + 1) & 0xFFFFu;
	log_info("card inserted into %s", r->name);
	readers_changed(d);
}

void reader_card_removed(struct daemon *d, struct reader *r)
{
	r->state = SCARD_ABSENT;
	set_atr(r, NULL, 0);
	r->protocol = 0;
	r->event_counter = (r->event_counter + 1) & 0xFFFFu;
	handles_flag_all(r, HANDLE_EVENT_REMOVED, NULL);
	if (r->lock_holder)
		reader_lock_release(d, r);
	log_info("card removed from %s", r->name);
	readers_changed(d);
}

void reader_card_repowered(struct reader *r, const uint8_t *atr, size_t atr_len,
			   enum card_power power)
{
	if (!(r->state & SCARD_PRESENT))
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
}

void readers_changed(struct daemon *d)
{
	status_waiters_wake_all(d);
}
