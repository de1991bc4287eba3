/*
 * Devices as the loop sees them: one per driver channel (a reader.conf.d
 * stanza, or a USB interface from hotplug), each with its worker thread
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
struct event_loop;
struct readers;
struct reader;
struct worker;

struct early_card {
	bool seen, unavailable, present, powered;
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	size_t atr_len;
};

struct devices;

/*
 * Who added a device and wants to hear how its open went (USB hotplug).
 * Called on the loop once the driver answered: driver_rc is IFD_SUCCESS or
 * the driver's code. A hotplugged device whose open failed is freed right
 * after the call: its owner forgets it there.
 */
typedef void device_opened_fn(void *owner, struct device *dev, long driver_rc);

/* What devices_add_spec needs to know. */
struct device_spec {
	struct driver *drv;      /* taken over, also on failure */
	const char *friendly;    /* the name before " XX YY" */
	const char *device_name; /* DEVICENAME, or the USB device string; NULL: none */
	uint32_t channel_id;
	bool hotplug; /* a USB device: its open failure is its owner's to report */
	device_opened_fn *opened;
	void *owner;
};

struct device {
	struct devices *ds;
	unsigned refs; /* its worker's, and one per job the loop made for it */
	bool removing; /* out of the model; its worker is closing the channel */
	bool hotplug;
	char *friendly_name;
	char *device_name; /* as configured (NULL: none), to match reader.conf.d */
	uint32_t channel_id;
	const struct driver *drv; /* identity only: readers of one library share "XX" */
	unsigned index;           /* "XX" in the reader name, chosen when added */
	device_opened_fn *opened;
	void *owner;
	struct worker *worker; /* NULL once joined (an open that failed) */
	enum { DEVICE_OPENING, DEVICE_OPENED, DEVICE_FAILED } open_state;
	unsigned n_slots;
	struct reader **readers;  /* per slot; NULL until registered or once removed */
	struct early_card *early; /* card state seen before the slots were registered */
	bool ready;               /* slots registered */
	uint64_t added_ms;        /* el_now_ms() when added */
	struct device *next;
};

/*
 * Devices register in the order they were added (configuration order, then
 * udev's), as pcscd adds readers one after the other; one whose open takes
 * longer than this stops holding the later ones back.
 */
#define DEVICE_OPEN_WAIT_MS 5000u

struct devices {
	struct device *head; /* in the order they were added */
	struct readers *rs;
	struct completions *done;
	struct event_loop *loop; /* NULL: no waiting for slow opens (fuzzing) */
	uint64_t wait_timer;     /* armed while a slow open holds registrations back */
	unsigned poll_ms;
	unsigned next_lun_index;
	unsigned opening;  /* devices whose channel is still opening */
	bool startup_done; /* from now on readers register as they open */
	/* $PCSCLITE_FILTER_EXTEND_READER_NAMES, _IGNORE_READER_NAMES (reader_names.h) */
	const char *name_extend, *name_ignore;
};

void devices_init(struct devices *ds, struct readers *rs, struct completions *done,
		  struct event_loop *loop, unsigned poll_ms);

/*
 * Adds a device and starts its worker; its slots appear once the channel is
 * open. Its "XX" is the lowest number no other device of its driver holds
 * now, as pcscd numbers readers when it adds them. NULL when it is not
 * added: a name $PCSCLITE_FILTER_IGNORE_READER_NAMES ignores (logged), or
 * no memory or thread.
 */
struct device *devices_add_spec(struct devices *ds, const struct device_spec *spec);

/* A reader.conf.d stanza's device (devices_add_spec); -1 when not added. */
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
 * Takes a device away at run time (its stanza left reader.conf.d): its readers leave the model at once (handles answer
 * SCARD_E_READER_UNAVAILABLE, waiters wake), its worker closes the channel
 * on its own thread, and the record is freed when the last job that names
 * it is.
 */
void devices_remove(struct devices *ds, struct device *dev);

/*
 * The same for a USB device that was unplugged: before the channel is
 * closed, a driver that asks for it (TAG_IFD_DEVICE_REMOVED) is told the
 * device is gone, as pcscd does, so its close does not talk to it.
 */
void devices_unplug(struct devices *ds, struct device *dev);

/*
 * Takes every device's readers out of the model and stops every worker
 * (waiting up to timeout_ms each). Returns false if a worker is stuck in
 * its driver: its device is then left allocated.
 */
bool devices_stop_all(struct devices *ds, unsigned timeout_ms);

#endif
