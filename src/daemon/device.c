#include "device.h"

#include <stdlib.h>
#include <string.h>

#include <ifdhandler.h>
#include <pcsclite.h>

#include "driver.h"
#include "event_loop.h"
#include "job.h"
#include "log.h"
#include "reader_names.h"
#include "readers.h"
#include "worker.h"

void devices_init(struct devices *ds, struct readers *rs, struct completions *done,
		  struct event_loop *loop, unsigned poll_ms)
{
	*ds = (struct devices){
		.rs = rs,
		.done = done,
		.loop = loop,
		.poll_ms = poll_ms,
		.name_extend = getenv("PCSCLITE_FILTER_EXTEND_READER_NAMES"),
		.name_ignore = getenv("PCSCLITE_FILTER_IGNORE_READER_NAMES"),
	};
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
		/* Not registered yet (its first check comes before its open is
		 * announced, or it waits for its turn): remember the card. */
		if (!dev->early && job->n_slots)
			dev->early = calloc(job->n_slots, sizeof(*dev->early));
		if (dev->early && job->slot < job->n_slots) {
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

/* Whether o holds its "XX" for dev's driver: added, not failed, not taken away. */
static bool holds_index(const struct device *o, const struct device *dev)
{
	return o != dev && o->drv == dev->drv && !o->removing && o->open_state != DEVICE_FAILED;
}

/*
 * "XX" in "Name XX YY": the lowest number no device of the same driver
 * holds. Devices from `until` on in the list are not counted unless they
 * have registered (pcscd numbers a reader when it adds it, and each add
 * finishes before the next).
 */
static unsigned free_index(const struct devices *ds, const struct device *dev,
			   const struct device *until)
{
	for (unsigned idx = 0;; idx++) {
		bool used = false;
		bool before = true;
		for (const struct device *o = ds->head; o && !used; o = o->next) {
			if (o == until)
				before = false;
			used = holds_index(o, dev) && (before || o->ready) && o->index == idx;
		}
		if (!used)
			return idx;
	}
}

/*
 * A device's open failed: the devices of its driver added after it that
 * have not registered yet take the numbers they would have had without it.
 */
static void renumber_after(struct devices *ds, const struct device *failed)
{
	bool after = false;
	for (struct device *o = ds->head; o; o = o->next) {
		if (o == failed)
			after = true;
		else if (after && !o->ready && holds_index(o, failed))
			o->index = free_index(ds, o, o);
	}
}

static void register_slots(struct devices *ds, struct device *dev)
{
	for (unsigned i = 0; i < dev->n_slots; i++) {
		char name[WIRE_MAX_READERNAME];
		reader_name_build(name, sizeof(name), dev->friendly_name, ds->name_extend,
				  dev->index, i);
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

static void register_opened(struct devices *ds);

static void open_wait_over(struct event_loop *loop, uint64_t id, void *data)
{
	struct devices *ds = data;
	(void)loop;
	(void)id;
	ds->wait_timer = 0;
	register_opened(ds);
}

/*
 * Gives opened devices their positions in the order they were added, as
 * pcscd does, however their drivers raced. At start-up every device waits
 * for those before it; after it, a device whose open has taken
 * DEVICE_OPEN_WAIT_MS no longer holds the later ones back.
 */
static void register_opened(struct devices *ds)
{
	uint64_t now = el_now_ms();
	for (struct device *dev = ds->head; dev; dev = dev->next) {
		if (dev->ready || dev->open_state == DEVICE_FAILED)
			continue;
		if (dev->open_state == DEVICE_OPENING) {
			if (!ds->startup_done)
				return;
			uint64_t due = dev->added_ms + DEVICE_OPEN_WAIT_MS;
			if (ds->loop && now < due) {
				if (!ds->wait_timer)
					ds->wait_timer = el_add_timer(ds->loop, due - now,
								      open_wait_over, ds);
				return;
			}
			continue;
		}
		register_slots(ds, dev);
	}
}

static void device_unref(struct device *dev);

/* The open failed: the device holds no number, and a hotplugged one goes. */
static void open_failed(struct devices *ds, struct device *dev, long driver_rc)
{
	dev->open_state = DEVICE_FAILED;
	renumber_after(ds, dev);
	if (dev->opened)
		dev->opened(dev->owner, dev, driver_rc);
	if (!dev->hotplug) {
		log_error("reader %s not added", dev->friendly_name);
		return; /* a stanza stays listed as failed until reader.conf.d changes */
	}
	dev->removing = true;
	if (!dev->worker)
		device_unref(dev); /* its worker's reference: it has ended */
	else
		worker_close(dev->worker, false);
}

static void on_opened(struct daemon *d, struct session *s, struct job *job)
{
	struct device *dev = job->dev;
	struct devices *ds = dev->ds;
	(void)d;
	(void)s;
	if (dev->open_state == DEVICE_OPENING && ds->opening)
		ds->opening--; /* (a device taken away while opening was counted out then) */
	bool ok = job->rv == SCARD_S_SUCCESS;
	if (!ok) {
		/* A worker whose open failed ends by itself, with this job its last. */
		worker_join(dev->worker);
		dev->worker = NULL;
	}
	if (dev->removing) {
		if (!ok)
			device_unref(dev); /* its worker's reference */
		return;                    /* else its worker closes it (JOB_CLOSED) */
	}
	dev->readers = ok ? calloc(job->n_slots, sizeof(*dev->readers)) : NULL;
	if (dev->readers && !dev->early)
		dev->early = calloc(job->n_slots, sizeof(*dev->early));
	if (!dev->readers || !dev->early) {
		free(dev->readers);
		dev->readers = NULL;
		open_failed(ds, dev, ok ? IFD_COMMUNICATION_ERROR : job->driver_rc);
	} else {
		dev->open_state = DEVICE_OPENED;
		dev->n_slots = job->n_slots;
		if (dev->opened)
			dev->opened(dev->owner, dev, IFD_SUCCESS);
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

static void remove_device(struct devices *ds, struct device *dev, bool unplugged)
{
	if (dev->removing)
		return;
	dev->removing = true;
	for (unsigned i = 0; dev->readers && i < dev->n_slots; i++) {
		if (!dev->readers[i])
			continue;
		log_info("reader removed: %s", dev->readers[i]->name);
		if (unplugged)
			readers_unplug(ds->rs, dev->readers[i]);
		else
			readers_remove(ds->rs, dev->readers[i]);
		dev->readers[i] = NULL;
	}
	if (dev->open_state == DEVICE_OPENING && ds->opening)
		ds->opening--;
	dev->open_state = DEVICE_FAILED; /* never registers again */
	if (dev->worker)
		worker_close(dev->worker, unplugged);
	else
		device_unref(dev); /* its open failed and its worker has ended */
}

void devices_remove(struct devices *ds, struct device *dev)
{
	remove_device(ds, dev, false);
}

void devices_unplug(struct devices *ds, struct device *dev)
{
	remove_device(ds, dev, true);
}

struct device *devices_add_spec(struct devices *ds, const struct device_spec *spec)
{
	char pattern[WIRE_MAX_READERNAME];
	if (reader_name_ignored(spec->friendly, ds->name_ignore, pattern, sizeof(pattern))) {
		log_error("reader name \"%s\" contains \"%s\" "
			  "($PCSCLITE_FILTER_IGNORE_READER_NAMES): not added",
			  spec->friendly, pattern);
		driver_unref(spec->drv);
		return NULL;
	}
	struct device *dev = calloc(1, sizeof(*dev));
	if (!dev || !(dev->friendly_name = strdup(spec->friendly)) ||
	    (spec->device_name && !(dev->device_name = strdup(spec->device_name)))) {
		driver_unref(spec->drv);
		if (dev)
			free(dev->friendly_name);
		free(dev);
		return NULL;
	}
	dev->ds = ds;
	dev->refs = 1; /* the worker's, dropped when it has closed */
	dev->drv = spec->drv;
	dev->channel_id = spec->channel_id;
	dev->hotplug = spec->hotplug;
	dev->opened = spec->opened;
	dev->owner = spec->owner;
	dev->index = free_index(ds, dev, NULL);
	dev->added_ms = el_now_ms();
	struct worker_config cfg = {
		.drv = spec->drv,
		.name = spec->friendly,
		.device_name = spec->device_name,
		.channel_id = spec->channel_id,
		.lun_base = (unsigned long)ds->next_lun_index++ << 16,
		.poll_ms = ds->poll_ms,
		.quiet_open = spec->hotplug,
		.dev = dev,
		.done = ds->done,
		.opened = on_opened,
		.card_event = on_card_event,
		.closed = on_closed,
	};
	dev->worker = worker_start(&cfg);
	if (!dev->worker) {
		log_error("%s: cannot start its thread", spec->friendly);
		device_free(dev);
		return NULL;
	}
	struct device **tail = &ds->head;
	while (*tail)
		tail = &(*tail)->next;
	*tail = dev;
	ds->opening++;
	return dev;
}

int devices_add(struct devices *ds, struct driver *drv, const char *friendly,
		const char *device_name, uint32_t channel_id)
{
	struct device_spec spec = {
		.drv = drv,
		.friendly = friendly,
		.device_name = device_name,
		.channel_id = channel_id,
	};
	return devices_add_spec(ds, &spec) ? 0 : -1;
}

bool devices_stop_all(struct devices *ds, unsigned timeout_ms)
{
	bool all = true;
	if (ds->wait_timer)
		el_del_timer(ds->loop, ds->wait_timer);
	ds->wait_timer = 0;
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
