/*
 * Devices as the loop sees them: one per driver channel (a reader.conf.d
 * stanza, later a hotplugged reader), each with its worker thread
 * (worker.h). A device's slots become readers in the model (readers.h) once
 * its channel is open, in configuration order at start-up however their
 * drivers raced; card events from the worker update those readers.
 *
 * Owned by the loop's thread. The worker never reads this record.
 */
#ifndef SCARDD_DEVICE_H
#define SCARDD_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "wire.h"

struct completions;
struct driver;
struct readers;
struct reader;
struct worker;

struct early_card {
	bool seen, unavailable, present, powered;
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	size_t atr_len;
};

struct devices;

struct device {
	struct devices *ds;
	unsigned refs; /* its worker's, and one per job the loop made for it */
	bool removing; /* out of the model; its worker is closing the channel */
	char *friendly_name;
	char *device_name; /* as configured (NULL: none), to match reader.conf.d */
	uint32_t channel_id;
	const struct driver *drv; /* identity only: readers of one library share "XX" */
	unsigned index;           /* "XX" in the reader name */
	struct worker *worker;
	enum { DEVICE_OPENING, DEVICE_OPENED, DEVICE_FAILED } open_state;
	unsigned n_slots;
	struct reader **readers;  /* per slot; NULL until registered or once removed */
	struct early_card *early; /* card state seen before the slots were registered */
	bool ready;               /* slots registered */
	struct device *next;
};

struct devices {
	struct device *head; /* in configuration order */
	struct readers *rs;
	struct completions *done;
	unsigned poll_ms;
	unsigned next_lun_index;
	unsigned opening;  /* devices whose channel is still opening */
	bool startup_done; /* from now on readers register as they open */
};

void devices_init(struct devices *ds, struct readers *rs, struct completions *done,
		  unsigned poll_ms);

/*
 * Adds a device driven by drv (it takes over the reference) and starts its
 * worker; its slots appear once the channel is open.
 */
int devices_add(struct devices *ds, struct driver *drv, const char *friendly,
		const char *device_name, uint32_t channel_id);

/* Start-up is over: devices that opened late register as they come. */
void devices_startup_done(struct devices *ds);

/* The reader a job's device and slot stand for, or NULL. */
struct reader *device_reader(const struct device *dev, unsigned slot);

/* A job the loop makes for a device: it keeps the device alive until freed. */
struct job *device_job(struct device *dev, enum job_kind kind, unsigned slot,
		       job_finish_fn *finish);
/* What the loop calls when it frees a job (jobs.c): drops its reference. */
void device_job_freed(struct job *job);

/*
 * Takes a device away at run time (its stanza left reader.conf.d, later its
 * USB device left): its readers leave the model at once (handles answer
 * SCARD_E_READER_UNAVAILABLE, waiters wake), its worker closes the channel
 * on its own thread, and the record is freed when the last job that names
 * it is.
 */
void devices_remove(struct devices *ds, struct device *dev);

/*
 * Takes every device's readers out of the model and stops every worker
 * (waiting up to timeout_ms each). Returns false if a worker is stuck in
 * its driver: its device is then left allocated.
 */
bool devices_stop_all(struct devices *ds, unsigned timeout_ms);

#endif
