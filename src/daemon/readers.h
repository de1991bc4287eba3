/*
 * The reader model, part one: the registry of readers clients see, each
 * reader's card state as clients see it, its event counter, and the queue of
 * requests waiting for its transaction lock. Card handles, sharing and the
 * lock itself are part two (handles.h).
 *
 * Pure bookkeeping owned by the event loop's thread: it calls nothing in
 * sessions, commands, devices or the loop. What changed is left for the
 * daemon to collect once per loop pass: readers_take_changed() (anything
 * clients can see) and readers_next_woken() (readers whose lock waiters
 * must try again, because the lock was freed or the reader went away).
 *
 * A reader is reference counted: the registry holds one reference until
 * readers_remove(), and every handle and lock waiter holds one, so a reader
 * removed at run time stays readable (marked removed) until the last of
 * them lets go.
 */
#ifndef SCARDD_READERS_H
#define SCARDD_READERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct handle;
struct readers;

/* A place in a reader's lock queue; embedded by whoever waits. */
struct reader_waiter {
	struct reader_waiter *prev, *next;
	struct reader *reader; /* NULL when not queued */
};

struct reader {
	char name[WIRE_MAX_READERNAME];
	struct readers *rs;
	unsigned refs;
	bool removed;     /* gone from the registry; handles and waiters may remain */
	bool unplugged;   /* removed because its USB device left (readers_unplug) */
	bool unavailable; /* listed, but its device does not answer (SCARD_UNKNOWN) */
	size_t position;  /* index in the clients' array while registered */
	uint64_t serial;  /* unique for the daemon's life, from 1 (positions are reused) */
	void *device;     /* opaque to the model: who drives this reader */
	unsigned slot;

	/* card state as clients see it */
	uint32_t state;         /* SCARD_ABSENT / SCARD_PRESENT | SCARD_POWERED ... */
	uint32_t event_counter; /* 16 bits, bumped on insertion and removal */
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	uint32_t atr_len;
	uint32_t protocol; /* negotiated protocol, 0 until a connect negotiates */

	/* sharing and the transaction lock (handles.c) */
	struct handle *handles;
	int32_t sharing; /* -1 exclusive, 0 none, n shared handles */
	struct handle *lock_holder;
	unsigned lock_count;
	struct reader_waiter waiters; /* sentinel of the lock queue, FIFO */

	bool woken; /* queued in rs->woken */
	struct reader *next_woken;
};

struct readers {
	struct reader **slots; /* positions; NULL = free */
	size_t cap;
	size_t count;
	uint32_t reader_events; /* counter for CMD_GET_READER_EVENTS, 1..0x7FFF */
	size_t state_capacity;  /* array length told to 4:6 clients */
	uint64_t last_serial;   /* the last reader's serial */
	bool changed;           /* clients' view changed since readers_take_changed */
	struct reader *woken;   /* readers whose lock waiters must retry */
};

void readers_init(struct readers *rs);
/* Frees every reader, registered or not; no handle may remain. */
void readers_destroy(struct readers *rs);

/* Builds the name pcsc-lite would give slot `slot` of driver index `index`. */
void readers_make_name(char *out, size_t cap, const char *friendly, unsigned index, unsigned slot);

/*
 * Registers a reader at the lowest free position, with no card. NULL if the
 * name is taken or memory ran out.
 */
struct reader *readers_add(struct readers *rs, const char *name, void *device, unsigned slot);

/*
 * Takes a reader away at run time: every handle on it learns that the card
 * is gone, the lock is released, its waiters are woken (to fail), its
 * position and name are free for a newcomer, and the reader-events counter
 * moves. The memory lives on while handles or waiters hold it.
 */
void readers_remove(struct readers *rs, struct reader *r);

/*
 * The same for a reader whose USB device was unplugged; its handles then
 * get pcscd's answer for a handle it no longer knows (cmd_card.c).
 */
void readers_unplug(struct readers *rs, struct reader *r);

struct reader *readers_find(const struct readers *rs, const char *name);

void reader_ref(struct reader *r);
void reader_unref(struct reader *r);

/*
 * Fills the array clients receive: every reader in position order (those
 * whose names match the glob `prefer` first, if it is not NULL or ""), then
 * empty records up to n. Readers that do not fit are left out. Returns the
 * number of readers written.
 */
size_t readers_snapshot(const struct readers *rs, struct wire_reader_state *out, size_t n,
			const char *prefer);
/* The same with only the readers keep(ctx, reader) accepts (keep NULL: all). */
size_t readers_snapshot_where(const struct readers *rs, struct wire_reader_state *out, size_t n,
			      const char *prefer, bool (*keep)(void *ctx, const struct reader *r),
			      void *ctx);

/*
 * The array length for protocol 4:6 clients: a multiple of 16 that holds
 * every reader. It only grows while the daemon runs, because pcsc-lite 2.5
 * clients fail when the length they were told changes under them.
 */
size_t readers_state_capacity(struct readers *rs);

/* Card events. */
void reader_card_inserted(struct reader *r, const uint8_t *atr, size_t atr_len, bool powered);
void reader_card_removed(struct reader *r);
/*
 * The device stopped answering: the reader stays listed as SCARD_UNKNOWN,
 * its handles learn the card is gone, and requests get
 * SCARD_E_READER_UNAVAILABLE until a card event brings it back.
 */
void reader_unavailable(struct reader *r);
/* What a request's power action left: powered with an ATR, unpowered, or mute. */
enum card_power { CARD_POWERED, CARD_UNPOWERED, CARD_MUTE };
/* The card was reset or powered by a request: new ATR, protocol to renegotiate. */
void reader_card_repowered(struct reader *r, const uint8_t *atr, size_t atr_len,
			   enum card_power power);
void reader_set_protocol(struct reader *r, uint32_t protocol);
bool reader_card_present(const struct reader *r);
bool reader_card_powered(const struct reader *r);

/* Marks the clients' view as changed (sharing, state, registry). */
void readers_mark_changed(struct readers *rs);
/* True once after anything clients can see changed. */
bool readers_take_changed(struct readers *rs);

/* The lock queue: FIFO; a waiter holds a reference to the reader. */
void reader_wait_lock(struct reader *r, struct reader_waiter *w);
void reader_unwait(struct reader_waiter *w);
struct reader_waiter *reader_first_waiter(const struct reader *r);
/* Queues r for readers_next_woken (its lock is free, or it is gone). */
void reader_wake_waiters(struct reader *r);
/*
 * Pops a reader whose waiters must retry, or NULL. The caller owns one
 * reference to it (reader_unref when done); it may have been removed.
 */
struct reader *readers_next_woken(struct readers *rs);

#endif
