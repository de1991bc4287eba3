#include "device.h"

#include <stdlib.h>
#include <string.h>

#include <pcsclite.h>

#include "driver.h"
#include "job.h"
#include "log.h"
#include "readers.h"
#include "worker.h"

void devices_init(struct devices *ds, struct readers *rs, struct completions *done,
		  unsigned poll_ms)
{
	*ds = (struct devices){ .rs = rs, .done = done, .poll_ms = poll_ms };
}

struct reader *device_reader(const struct device *dev, unsigned slot)
{
	return dev->ready && slot < dev->n_slots ? dev->readers[slot] : NULL;
}

static void apply_card(struct reader *r, bool unavailable, bool present, bool powered,
		       const uint8_t *atr, size_t atr_len)
{
	if (unavailable) {
		if (!r->unavailable) {
			log_error("reader %s is unavailable: its device does not answer", r->name);
			reader_unavailable(r);
		}
	} else if (present) {
		reader_card_inserted(r, atr, atr_len, powered);
		log_info("card inserted into %s", r->name);
	} else if (reader_card_present(r) || r->unavailable) {
		reader_card_removed(r);
		log_info("card removed from %s", r->name);
	}
}

static void on_card_event(struct daemon *d, struct session *s, struct job *job)
{
	struct device *dev = job->dev;
	(void)d;
	(void)s;
	if (!dev->ready) {
		/* Opened but waiting for its turn to register: remember the card. */
		if (dev->early && job->slot < dev->n_slots) {
			struct early_card *e = &dev->early[job->slot];
			e->seen = true;
			e->unavailable = job->unavailable;
			e->present = job->present;
			e->powered = job->powered;
			e->atr_len = job->atr_len;
			memcpy(e->atr, job->atr, job->atr_len);
		}
		return;
	}
	struct reader *r = device_reader(dev, job->slot);
	if (r)
		apply_card(r, job->unavailable, job->present, job->powered, job->atr, job->atr_len);
}

/* "XX" in "Name XX YY": the lowest index no registered device of the same driver uses. */
static unsigned name_index(const struct devices *ds, const struct driver *drv)
{
	for (unsigned idx = 0;; idx++) {
		bool used = false;
		for (const struct device *o = ds->head; o && !used; o = o->next)
			used = o->ready && !o->removing && o->index == idx && o->drv == drv;
		if (!used)
			return idx;
	}
}

static void register_slots(struct devices *ds, struct device *dev)
{
	dev->index = name_index(ds, dev->drv);
	for (unsigned i = 0; i < dev->n_slots; i++) {
		char name[WIRE_MAX_READERNAME];
		readers_make_name(name, sizeof(name), dev->friendly_name, dev->index, i);
		struct reader *r = readers_add(ds->rs, name, dev, i);
		if (!r) {
			log_error(
				"reader name %s already in use (or out of memory); slot not added",
				name);
			continue;
		}
		dev->readers[i] = r;
		log_info("reader added: %s", r->name);
	}
	dev->ready = true;
	for (unsigned i = 0; dev->early && i < dev->n_slots; i++) {
		const struct early_card *e = &dev->early[i];
		if (e->seen && dev->readers[i])
			apply_card(dev->readers[i], e->unavailable, e->present, e->powered, e->atr,
				   e->atr_len);
	}
	free(dev->early);
	dev->early = NULL;
}

/*
 * Gives opened devices their positions in configuration order, as pcscd
 * does, however their drivers raced; after start-up, as they come.
 */
static void register_opened(struct devices *ds)
{
	for (struct device *dev = ds->head; dev; dev = dev->next) {
		if (dev->ready || dev->open_state == DEVICE_FAILED)
			continue;
		if (dev->open_state == DEVICE_OPENING) {
			if (!ds->startup_done)
				return;
			continue;
		}
		register_slots(ds, dev);
	}
}

static void on_opened(struct daemon *d, struct session *s, struct job *job)
{
	struct device *dev = job->dev;
	struct devices *ds = dev->ds;
	(void)d;
	(void)s;
	if (ds->opening)
		ds->opening--;
	if (dev->removing)
		return; /* taken away while it opened: its worker closes it */
	dev->readers = job->rv == SCARD_S_SUCCESS ? calloc(job->n_slots, sizeof(*dev->readers))
						  : NULL;
	dev->early = dev->readers ? calloc(job->n_slots, sizeof(*dev->early)) : NULL;
	if (!dev->readers || !dev->early) {
		dev->open_state = DEVICE_FAILED;
		log_error("reader %s not added", dev->friendly_name);
	} else {
		dev->open_state = DEVICE_OPENED;
		dev->n_slots = job->n_slots;
	}
	register_opened(ds);
}

void devices_startup_done(struct devices *ds)
{
	ds->startup_done = true;
	register_opened(ds);
}

static void device_free(struct device *dev)
{
	free(dev->friendly_name);
	free(dev->device_name);
	free(dev->readers);
	free(dev->early);
	free(dev);
}

static void unlink_device(struct devices *ds, struct device *dev)
{
	for (struct device **p = &ds->head; *p; p = &(*p)->next) {
		if (*p == dev) {
			*p = dev->next;
			return;
		}
	}
}

static void device_unref(struct device *dev)
{
	if (--dev->refs > 0)
		return;
	unlink_device(dev->ds, dev);
	device_free(dev);
}

struct job *device_job(struct device *dev, enum job_kind kind, unsigned slot, job_finish_fn *finish)
{
	struct job *job = job_new(kind, dev, dev->worker, slot, finish);
	if (job) {
		job->dev_ref = true;
		dev->refs++;
	}
	return job;
}

void device_job_freed(struct job *job)
{
	if (job->dev_ref) {
		job->dev_ref = false;
		device_unref(job->dev);
	}
}

/* The worker's last job: its thread has closed the channel and ends. */
static void on_closed(struct daemon *d, struct session *s, struct job *job)
{
	struct device *dev = job->dev;
	(void)d;
	(void)s;
	worker_join(dev->worker);
	dev->worker = NULL;
	log_info("reader %s closed", dev->friendly_name);
	device_unref(dev); /* the worker's reference */
}

void devices_remove(struct devices *ds, struct device *dev)
{
	if (dev->removing)
		return;
	dev->removing = true;
	for (unsigned i = 0; dev->readers && i < dev->n_slots; i++) {
		if (!dev->readers[i])
			continue;
		log_info("reader removed: %s", dev->readers[i]->name);
		readers_remove(ds->rs, dev->readers[i]);
		dev->readers[i] = NULL;
	}
	if (dev->open_state == DEVICE_OPENING && ds->opening)
		ds->opening--;
	dev->open_state = DEVICE_FAILED; /* never registers again */
	worker_close(dev->worker);
}

int devices_add(struct devices *ds, struct driver *drv, const char *friendly,
		const char *device_name, uint32_t channel_id)
{
	struct device *dev = calloc(1, sizeof(*dev));
	if (!dev || !(dev->friendly_name = strdup(friendly)) ||
	    (device_name && !(dev->device_name = strdup(device_name)))) {
		driver_unref(drv);
		if (dev)
			free(dev->friendly_name);
		free(dev);
		return -1;
	}
	dev->ds = ds;
	dev->refs = 1; /* the worker's, dropped when it has closed */
	dev->drv = drv;
	dev->channel_id = channel_id;
	struct worker_config cfg = {
		.drv = drv,
		.name = friendly,
		.device_name = device_name,
		.channel_id = channel_id,
		.lun_base = (unsigned long)ds->next_lun_index++ << 16,
		.poll_ms = ds->poll_ms,
		.dev = dev,
		.done = ds->done,
		.opened = on_opened,
		.card_event = on_card_event,
		.closed = on_closed,
	};
	dev->worker = worker_start(&cfg);
	if (!dev->worker) {
		log_error("%s: cannot start its thread", friendly);
		device_free(dev);
		return -1;
	}
	struct device **tail = &ds->head;
	while (*tail)
		tail = &(*tail)->next;
	*tail = dev;
	ds->opening++;
	return 0;
}

bool devices_stop_all(struct devices *ds, unsigned timeout_ms)
{
	bool all = true;
	for (struct device *dev = ds->head; dev; dev = dev->next) {
		for (unsigned i = 0; dev->readers && i < dev->n_slots; i++) {
			if (dev->readers[i])
				readers_remove(ds->rs, dev->readers[i]);
			dev->readers[i] = NULL;
		}
		if (dev->worker && !worker_stop(dev->worker, timeout_ms))
			all = false;
		else
			dev->worker = NULL;
	}
	while (ds->head) {
		struct device *dev = ds->head;
		ds->head = dev->next;
		/* A thread stuck in its driver still uses the device: leave it. */
		if (!dev->worker)
			device_free(dev);
	}
	return all;
}
