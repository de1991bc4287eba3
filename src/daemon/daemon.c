#include "daemon.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <pcsclite.h>

#include "driver.h"
#include "event_loop.h"
#include "listener.h"
#include "log.h"
#include "reader_conf.h"
#include "reader_worker.h"
#include "session.h"

int32_t daemon_random_id(void)
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

/* ---- completion queue: workers hand finished jobs to the loop ---- */

void daemon_post(struct daemon *d, struct job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&d->done.lock);
	if (d->done.tail)
		d->done.tail->next = job;
	else
		d->done.head = job;
	d->done.tail = job;
	pthread_mutex_unlock(&d->done.lock);
	uint64_t one = 1;
	while (write(d->done.efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void drain_completions(struct daemon *d)
{
	uint64_t count;
	while (read(d->done.efd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&d->done.lock);
	struct job *job = d->done.head;
	d->done.head = d->done.tail = NULL;
	pthread_mutex_unlock(&d->done.lock);
	while (job) {
		struct job *next = job->next;
		job->done(d, job);
		job_free(job);
		job = next;
	}
}

static void on_completion(struct event_loop *loop, int fd, void *data, int mask)
{
	(void)loop;
	(void)fd;
	(void)mask;
	drain_completions(data);
}

static void on_signal(struct event_loop *loop, int fd, void *data, int mask)
{
	struct daemon *d = data;
	struct signalfd_siginfo si;
	(void)mask;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		log_info("signal %u received, shutting down", si.ssi_signo);
		d->stopping = true;
		el_stop(loop);
	}
}

/* ---- devices ---- */

static void apply_card(struct daemon *d, struct reader *r, bool present, bool powered,
		       const uint8_t *atr, size_t atr_len)
{
	if (present)
		reader_card_inserted(d, r, atr, atr_len, powered);
	else if (r->state & SCARD_PRESENT)
		reader_card_removed(d, r);
}

static void on_card_event(struct daemon *d, struct job *job)
{
	struct device *dev = job->dev;
	if (!dev->ready) {
		/* Opened but waiting for its turn to register: remember the card. */
		if (dev->early && job->slot < dev->opened_slots) {
			struct early_card *e = &dev->early[job->slot];
			e->seen = true;
			e->present = job->present;
			e->powered = job->powered;
			e->atr_len = job->atr_len;
			memcpy(e->atr, job->atr, job->atr_len);
		}
		return;
	}
	if (job->slot < dev->n_slots && dev->slots[job->slot])
		apply_card(d, dev->slots[job->slot], job->present, job->powered, job->atr,
			   job->atr_len);
}

static void replay_early_cards(struct daemon *d, struct device *dev)
{
	for (unsigned i = 0; dev->early && i < dev->n_slots; i++) {
		const struct early_card *e = &dev->early[i];
		if (e->seen && dev->slots[i])
			apply_card(d, dev->slots[i], e->present, e->powered, e->atr, e->atr_len);
	}
	free(dev->early);
	dev->early = NULL;
}

static unsigned name_index(const struct daemon *d, const struct driver *drv);

/*
 * Gives opened devices their positions in configuration order, as pcscd
 * does, however their drivers raced; after start-up, as they come.
 */
static void register_opened(struct daemon *d)
{
	for (struct device *dev = d->readers.devices; dev; dev = dev->next) {
		if (dev->ready || dev->open_state == DEVICE_FAILED)
			continue;
		if (dev->open_state == DEVICE_OPENING) {
			if (!d->readers.startup_done)
				return;
			continue;
		}
		dev->index = name_index(d, dev->drv);
		if (readers_add_device(d, dev, dev->opened_slots) < 0) {
			log_error("reader %s: out of memory", dev->friendly_name);
			continue;
		}
		dev->ready = true;
		replay_early_cards(d, dev);
	}
}

static void on_device_opened(struct daemon *d, struct job *job)
{
	struct device *dev = job->dev;
	if (d->devices_pending)
		d->devices_pending--;
	if (job->rv != SCARD_S_SUCCESS) {
		dev->open_state = DEVICE_FAILED;
		log_error("reader %s not added", dev->friendly_name);
	} else {
		dev->open_state = DEVICE_OPENED;
		dev->opened_slots = job->n_slots;
		dev->early = calloc(job->n_slots, sizeof(*dev->early));
	}
	register_opened(d);
}

/* "XX" in "Name XX YY": the lowest index no registered reader of the same driver uses. */
static unsigned name_index(const struct daemon *d, const struct driver *drv)
{
	for (unsigned idx = 0;; idx++) {
		bool used = false;
		for (const struct device *o = d->readers.devices; o && !used; o = o->next)
			used = o->ready && o->index == idx && o->drv == drv;
		if (!used)
			return idx;
	}
}

static void device_free(struct device *dev)
{
	if (!dev)
		return;
	if (dev->drv)
		driver_unref(dev->drv);
	free(dev->friendly_name);
	free(dev->device_name);
	free(dev->slots);
	free(dev->early);
	free(dev);
}

int daemon_add_device(struct daemon *d, struct driver *drv, const char *friendly,
		      const char *device_name, uint32_t channel_id)
{
	struct device *dev = calloc(1, sizeof(*dev));
	if (!dev || !(dev->friendly_name = strdup(friendly)) ||
	    (device_name && !(dev->device_name = strdup(device_name)))) {
		if (dev)
			dev->drv = drv;
		else
			driver_unref(drv);
		device_free(dev);
		return -1;
	}
	dev->drv = drv;
	dev->channel_id = channel_id;
	dev->lun_base = (unsigned long)d->readers.next_device_index++ << 16;
	struct device **tail = &d->readers.devices;
	while (*tail)
		tail = &(*tail)->next;
	*tail = dev;
	if (worker_start(d, dev, on_device_opened, on_card_event, d->opts->poll_ms) < 0) {
		log_error("%s: cannot start its thread", friendly);
		return -1;
	}
	d->devices_pending++;
	return 0;
}

static int add_configured_device(struct daemon *d, const struct reader_conf_entry *e)
{
	char err[256];
	struct driver *drv = driver_load(e->lib_path, err, sizeof(err));
	if (!drv) {
		log_error("%s (%s:%d): %s", e->friendly_name, e->source, e->line, err);
		return -1;
	}
	return daemon_add_device(d, drv, e->friendly_name, e->device_name, e->channel_id);
}

static void conf_warning(const char *source, int line, const char *msg)
{
	log_error("%s:%d: %s", source, line, msg);
}

int daemon_load_readers(struct daemon *d)
{
	struct reader_conf conf = {0};
	int n = reader_conf_load(d->opts->config_dir, &conf, conf_warning);
	if (n < 0) {
		log_info("no reader configuration at %s", d->opts->config_dir);
		reader_conf_free(&conf);
		return 0;
	}
	for (size_t i = 0; i < conf.n; i++)
		add_configured_device(d, &conf.entries[i]);
	reader_conf_free(&conf);
	return 0;
}

static void bundle_warning(const char *path, const char *msg)
{
	log_error("driver bundle %s: %s", path, msg);
}

void daemon_load_bundles(struct daemon *d)
{
	if (bundle_scan(d->opts->drivers_dir, &d->bundles, bundle_warning) < 0) {
		log_info("no driver bundles read from %s", d->opts->drivers_dir);
		return;
	}
	size_t devices = 0;
	for (size_t i = 0; i < d->bundles.n; i++)
		devices += d->bundles.items[i].n_devices;
	log_info("%zu driver bundle(s) in %s know %zu device(s)", d->bundles.n,
		 d->opts->drivers_dir, devices);
}

void daemon_wait_devices(struct daemon *d, unsigned timeout_ms)
{
	uint64_t end = el_now_ms() + timeout_ms;
	while (d->devices_pending > 0) {
		uint64_t now = el_now_ms();
		if (now >= end) {
			log_error("%u reader(s) still opening; serving clients anyway",
				  d->devices_pending);
			break;
		}
		struct pollfd pfd = {.fd = d->done.efd, .events = POLLIN};
		if (poll(&pfd, 1, (int)(end - now)) > 0)
			drain_completions(d);
	}
	d->readers.startup_done = true;
	register_opened(d);
}

/* ---- lifecycle ---- */

struct daemon *daemon_new(const struct options *opts)
{
	struct daemon *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->opts = opts;
	d->signal_fd = -1;
	readers_init(&d->readers);
	pthread_mutex_init(&d->done.lock, NULL);
	d->done.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->loop = el_new();

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	d->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	if (d->done.efd < 0 || !d->loop || d->signal_fd < 0 ||
	    el_add_fd(d->loop, d->done.efd, EL_READ, on_completion, d) < 0 ||
	    el_add_fd(d->loop, d->signal_fd, EL_READ, on_signal, d) < 0) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		daemon_free(d);
		return NULL;
	}
	return d;
}

int daemon_run(struct daemon *d)
{
	for (size_t i = 0; i < d->n_sockets; i++) {
		if (listener_start(d->sockets[i].listener, d->loop, session_accept,
				   &d->sockets[i]) < 0) {
			log_error("cannot watch the listening socket %s", d->sockets[i].spec->path);
			return -1;
		}
	}
	log_info("serving clients with %zu reader(s)", d->readers.count);
	return el_run(d->loop);
}

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	if (d->loop)
		sessions_free_all(d);
	for (size_t i = 0; i < d->n_sockets; i++)
		listener_close(d->sockets[i].listener, d->loop);
	for (struct device *dev = d->readers.devices; dev; dev = dev->next)
		worker_stop(dev, 2000);
	/* Answers that arrived after the loop stopped have nobody to go to. */
	for (struct job *job = d->done.head, *next; job; job = next) {
		next = job->next;
		job_free(job);
	}
	for (size_t i = 0; i < d->readers.cap; i++)
		if (d->readers.slots[i] && d->readers.slots[i]->wake_timer)
			el_del_timer(d->loop, d->readers.slots[i]->wake_timer);
	while (d->readers.devices) {
		struct device *dev = d->readers.devices;
		d->readers.devices = dev->next;
		/* A thread stuck in its driver still uses the device: leave it. */
		if (!dev->worker)
			device_free(dev);
	}
	readers_destroy(&d->readers);
	bundle_list_free(&d->bundles);
	if (d->loop)
		el_free(d->loop);
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	if (d->done.efd >= 0)
		close(d->done.efd);
	pthread_mutex_destroy(&d->done.lock);
	free(d);
}
