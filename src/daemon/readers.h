/*
 * The reader registry: every reader slot the daemon serves, its card state
 * as clients see it, its event counter and who shares or locks it.
 *
 * A *device* is one driver channel (a reader.conf.d stanza, later a hotplugged
 * reader); it owns one worker thread. Each slot of a device is a *reader*:
 * one name ("Name 00 01"), one entry in the clients' reader-state array.
 * Everything here is owned by the event loop's thread.
 */
#ifndef SCARDD_READERS_H
#define SCARDD_READERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct daemon;
struct driver;
struct worker;
struct handle;
struct session;

struct early_card {
	bool seen, present, powered;
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	size_t atr_len;
};

struct device {
	char *friendly_name;
	char *device_name;      /* NULL when the stanza has none */
	uint32_t channel_id;
	struct driver *drv;
	unsigned index;         /* "XX" in the reader name */
	unsigned long lun_base; /* index << 16 */
	unsigned n_slots;
	struct reader **slots;
	struct worker *worker;
	enum { DEVICE_OPENING, DEVICE_OPENED, DEVICE_FAILED } open_state;
	unsigned opened_slots;  /* slot count the driver reported */
	struct early_card *early; /* card state seen before the slots were registered */
	bool ready;             /* slots registered */
	struct device *next;
};

struct reader {
	char name[WIRE_MAX_READERNAME];
	struct device *dev;
	unsigned slot;
	unsigned long lun;
	size_t position;        /* index in the clients' array; stable while it lives */

	/* card state as clients see it */
	uint32_t state;         /* SCARD_ABSENT / SCARD_PRESENT | SCARD_POWERED ... */
	uint32_t event_counter; /* 16 bits, bumped on insertion and removal */
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	uint32_t atr_len;
	uint32_t protocol;      /* negotiated protocol, 0 until a connect negotiates */

	/* sharing and transactions */
	struct handle *handles; /* every open handle on this reader */
	int32_t sharing;        /* -1 exclusive, 0 none, n shared handles */
	struct handle *lock_holder;
	unsigned lock_count;
	struct session *lock_waiters;      /* FIFO of sessions waiting for the lock */
	struct session *lock_waiters_tail;
	uint64_t wake_timer;
};

struct readers {
	struct reader **slots;  /* positions; NULL = free */
	size_t cap;
	size_t count;
	uint32_t reader_events; /* counter for CMD_GET_READER_EVENTS, 1..0x7FFF */
	size_t state_capacity;  /* array length told to 4:6 clients */
	struct device *devices; /* in configuration order */
	unsigned next_device_index;
	bool startup_done;      /* from now on readers register as they open */
};

void readers_init(struct readers *rs);
void readers_destroy(struct readers *rs);

/* Builds the name pcsc-lite would give slot `slot` of device index `index`. */
void readers_make_name(char *out, size_t cap, const char *friendly, unsigned index, unsigned slot);

/* Adds a device's slots to the registry (lowest free positions first). */
int readers_add_device(struct daemon *d, struct device *dev, unsigned n_slots);

struct reader *readers_find(const struct readers *rs, const char *name);

/*
 * Fills the array clients receive: every reader in position order (those
 * whose names match the glob `prefer` first, if it is not NULL or ""), then
 * empty records up to n. Readers that do not fit are left out. Returns the
 * number of readers written.
 */
size_t readers_snapshot(const struct readers *rs, struct wire_reader_state *out, size_t n,
			const char *prefer);

/*
 * The array length for protocol 4:6 clients: a multiple of 16 that holds
 * every reader. It only grows while the daemon runs, because pcsc-lite 2.5
 * clients fail when the length they were told changes under them, and
 * growing past 16 is then as rare as having more than 16 readers.
 */
size_t readers_state_capacity(struct readers *rs);

/* Card events reported by the worker. */
void reader_card_inserted(struct daemon *d, struct reader *r, const uint8_t *atr, size_t atr_len,
			  bool powered);
/* What a request's power action left: powered with an ATR, unpowered, or mute. */
enum card_power { CARD_POWERED, CARD_UNPOWERED, CARD_MUTE };
void reader_card_removed(struct daemon *d, struct reader *r);
/* The card was reset or powered by a request: new ATR, protocol to renegotiate. */
void reader_card_repowered(struct reader *r, const uint8_t *atr, size_t atr_len,
			   enum card_power power);

/* Called whenever anything clients can see changed: wakes status waiters. */
void readers_changed(struct daemon *d);

#endif
