#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pcsclite.h>
#include <reader.h>

#include "card_ops.h"
#include "deadline.h"
#include "driver.h"
#include "jobs.h"
#include "log.h"
#include "presence.h"

/*
 * A job that took longer than this sends the device's next jobs to the
 * worker: the loop runs only jobs it can expect back at once, and one that
 * overruns anyway is noticed by the loop runner, which gives the loop to
 * another thread (loop_runner.h).
 */
#define INLINE_MAX_US 500u

struct job *job_new(enum job_kind kind, struct device *dev, struct worker *w, unsigned slot,
		    job_finish_fn *finish)
{
	struct job *job = calloc(1, sizeof(*job));
	if (!job)
		return NULL;
	job->kind = kind;
	job->dev = dev;
	job->worker = w;
	job->slot = slot;
	job->finish = finish;
	return job;
}

void job_free(struct job *job)
{
	if (!job)
		return;
	free(job->tx);
	free(job->rx);
	free(job);
}

bool job_set_tx(struct job *job, const uint8_t *data, size_t len)
{
	job->tx = malloc(len ? len : 1);
	if (!job->tx)
		return false;
	memcpy(job->tx, data, len);
	job->tx_len = len;
	return true;
}

/* ---- driver calls ---- */

void worker_drv_enter(struct worker *w)
{
	if (w->serialize && !w->lib_held)
		pthread_mutex_lock(&w->cfg.drv->lock);
}

void worker_drv_leave(struct worker *w)
{
	if (w->serialize && !w->lib_held)
		pthread_mutex_unlock(&w->cfg.drv->lock);
}

unsigned long worker_lun(const struct worker *w, unsigned slot)
{
	return w->cfg.lun_base | slot;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void timed_run(struct worker *w, struct job *job)
{
	uint64_t start = now_us();
	card_ops_run(w, job);
	uint64_t took = now_us() - start;
	atomic_store_explicit(&w->last_call_us, took > UINT32_MAX ? UINT32_MAX : (unsigned)took,
			      memory_order_relaxed);
}

/* ---- opening ---- */

static RESPONSECODE create_channel(struct worker *w, unsigned slot)
{
	const struct ifd_ops *ops = &w->cfg.drv->ops;
	RESPONSECODE rc;
	worker_drv_enter(w);
	if (w->device_name && ops->create_channel_by_name)
		rc = ops->create_channel_by_name(worker_lun(w, slot), w->device_name);
	else
		rc = ops->create_channel(worker_lun(w, slot), w->cfg.channel_id);
	worker_drv_leave(w);
	return rc;
}

static bool get_byte_cap(struct worker *w, DWORD tag, uint8_t *out)
{
	uint8_t value[8] = { 0 };
	DWORD len = 1;
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.get_capabilities(worker_lun(w, 0), tag, &len, value);
	worker_drv_leave(w);
	/* A one-byte capability answered with another length is not believed (as pcscd). */
	if (rc != IFD_SUCCESS || len != 1)
		return false;
	*out = value[0];
	return true;
}

static bool open_channel(struct worker *w, long *driver_rc)
{
	RESPONSECODE rc = create_channel(w, 0);
	*driver_rc = (long)rc;
	if (rc != IFD_SUCCESS) {
		if (w->cfg.quiet_open)
			log_debug("%s: the driver could not open %s (code %ld)", w->name,
				  w->device_name ? w->device_name : "the reader", (long)rc);
		else
			log_error("%s: the driver could not open the reader (code %ld)", w->name,
				  (long)rc);
		return false;
	}
	uint8_t value = 0;
	w->n_slots = 1;
	if (get_byte_cap(w, TAG_IFD_SLOTS_NUMBER, &value) && value >= 1)
		w->n_slots = value;
	if (get_byte_cap(w, TAG_IFD_THREAD_SAFE, &value) && value)
		w->serialize = false;
	w->slots = calloc(w->n_slots, sizeof(*w->slots));
	w->scratch = malloc(WIRE_MAX_BUFFER_SIZE_EXTENDED);
	if (!w->slots || !w->scratch) {
		log_error("%s: out of memory", w->name);
		worker_drv_enter(w);
		w->cfg.drv->ops.close_channel(worker_lun(w, 0));
		worker_drv_leave(w);
		*driver_rc = IFD_COMMUNICATION_ERROR;
		return false;
	}
	/* Every further slot gets its own channel on its own LUN, as under pcscd
	 * (vpcd, for one, opens slot N's port only then). */
	for (unsigned slot = 1; slot < w->n_slots; slot++) {
		rc = create_channel(w, slot);
		if (rc != IFD_SUCCESS)
			log_error("%s: the driver could not open slot %u (code %ld)", w->name, slot,
				  (long)rc);
	}
	presence_start(w);
	return true;
}

/* pcscd's order on unplug: the driver learns the device is gone, then it is closed. */
static void tell_removed(struct worker *w)
{
	const struct ifd_ops *ops = &w->cfg.drv->ops;
	for (unsigned slot = 0; slot < w->n_slots; slot++) {
		uint8_t value[8] = { 0 };
		DWORD len = 1;
		worker_drv_enter(w);
		RESPONSECODE rc = ops->get_capabilities(worker_lun(w, slot), TAG_IFD_DEVICE_REMOVED,
							&len, value);
		if (rc == IFD_SUCCESS && len == 1 && value[0] == 1) {
			uint8_t yes = 1;
			ops->set_capabilities(worker_lun(w, slot), TAG_IFD_DEVICE_REMOVED, 1, &yes);
		}
		worker_drv_leave(w);
	}
}

static void close_channel(struct worker *w, bool unplugged)
{
	if (unplugged)
		tell_removed(w);
	presence_stop(w);
	worker_drv_enter(w);
	for (unsigned slot = w->n_slots; slot-- > 0;)
		w->cfg.drv->ops.close_channel(worker_lun(w, slot));
	worker_drv_leave(w);
}

/* ---- the thread ---- */

/* Waits, holding w->lock, until no other thread is in the driver. */
static void wait_idle(struct worker *w)
{
	while (w->busy) {
		w->waiting_idle = true;
		pthread_cond_wait(&w->cond, &w->lock);
	}
	w->waiting_idle = false;
}

/* Returns whether the device was unplugged (worker_close). */
static bool serve(struct worker *w)
{
	struct timespec next_poll = deadline_in(CLOCK_MONOTONIC, 0);
	/* Event-driven drivers had their one check at open; then only when they signal. */
	pthread_mutex_lock(&w->lock);
	for (;;) {
		bool polling = !w->event_driven && !w->watcher; /* (a watcher polls apart) */
		while (!w->stop && !w->head && !w->check_presence &&
		       !(polling && deadline_passed(CLOCK_MONOTONIC, &next_poll))) {
			if (polling)
				pthread_cond_timedwait(&w->cond, &w->lock, &next_poll);
			else
				pthread_cond_wait(&w->cond, &w->lock);
		}
		wait_idle(w);
		if (w->stop)
			break;
		struct job *job = w->head;
		if (job) {
			w->head = job->next;
			if (!w->head)
				w->tail = NULL;
			job->next = NULL;
		}
		bool check = w->check_presence ||
			     (polling && deadline_passed(CLOCK_MONOTONIC, &next_poll));
		w->check_presence = false;
		w->busy = true;
		pthread_mutex_unlock(&w->lock);

		if (job) {
			timed_run(w, job);
			completions_post(w->cfg.done, job);
		}
		if (check) {
			presence_check(w);
			next_poll = deadline_in(CLOCK_MONOTONIC, w->cfg.poll_ms);
		}
		pthread_mutex_lock(&w->lock);
		w->busy = false;
		if (check) {
			w->checks++;
			pthread_cond_broadcast(&w->checked);
		}
	}
	/* Whatever is still queued is answered: the reader is going away. */
	struct job *left = w->head;
	w->head = w->tail = NULL;
	bool unplugged = w->unplugged;
	pthread_mutex_unlock(&w->lock);
	while (left) {
		struct job *next = left->next;
		left->rv = SCARD_E_READER_UNAVAILABLE;
		completions_post(w->cfg.done, left);
		left = next;
	}
	return unplugged;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	long driver_rc = IFD_SUCCESS;
	bool ok = open_channel(w, &driver_rc);
	/* The first presence check comes before the open is announced: its card
	 * events reach the loop first, so the readers register with their cards
	 * (a socket-activated scardd's first client connects at once). */
	if (ok)
		presence_check(w);
	struct job *opened = job_new(JOB_OPEN, w->cfg.dev, w, 0, w->cfg.opened);
	pthread_mutex_lock(&w->lock);
	w->opened = ok;
	w->busy = false;
	pthread_mutex_unlock(&w->lock);
	if (!ok) {
		/* The JOB_OPEN is the last job: its finish joins this thread. */
		pthread_mutex_lock(&w->lock);
		w->exited = true;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		if (opened) {
			opened->rv = SCARD_E_READER_UNAVAILABLE;
			opened->driver_rc = driver_rc;
			completions_post(w->cfg.done, opened);
		}
		return NULL;
	}
	if (opened) {
		opened->rv = SCARD_S_SUCCESS;
		opened->driver_rc = driver_rc;
		opened->n_slots = w->n_slots;
		completions_post(w->cfg.done, opened);
	}
	close_channel(w, serve(w));
	pthread_mutex_lock(&w->lock);
	bool closing = w->closing;
	w->exited = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (closing) {
		/* The loop frees w when it takes this: touch nothing after posting. */
		struct job *closed = job_new(JOB_CLOSED, w->cfg.dev, w, 0, w->cfg.closed);
		if (closed)
			completions_post(w->cfg.done, closed);
		else
			log_error("%s: out of memory: its closed device is never freed", w->name);
	}
	return NULL;
}

/* Workers kept for threads abandoned in their driver: reachable, not leaked. */
static struct worker *kept;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void worker_free(struct worker *w)
{
	if (w->keep) { /* see struct worker */
		pthread_mutex_lock(&kept_lock);
		w->kept_next = kept;
		kept = w;
		pthread_mutex_unlock(&kept_lock);
		return;
	}
	for (struct job *j = w->head, *next; j; j = next) {
		next = j->next;
		job_free(j);
	}
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->checked);
	pthread_mutex_destroy(&w->lock);
	if (w->cfg.drv)
		driver_unref(w->cfg.drv);
	free(w->slots);
	free(w->watch);
	free(w->scratch);
	free(w->name);
	free(w->device_name);
	free(w);
}

struct worker *worker_start(const struct worker_config *cfg)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w) {
		driver_unref(cfg->drv);
		return NULL;
	}
	w->cfg = *cfg;
	w->name = strdup(cfg->name);
	w->device_name = cfg->device_name ? strdup(cfg->device_name) : NULL;
	w->serialize = true;
	w->busy = true; /* opening */
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &attr);
	pthread_cond_init(&w->checked, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&w->lock, NULL);
	if (!w->name || (cfg->device_name && !w->device_name) ||
	    pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		worker_free(w);
		return NULL;
	}
	return w;
}

void worker_enqueue(struct worker *w, struct job *job)
{
	job->next = NULL;
	job->state = JOB_QUEUED;
	pthread_mutex_lock(&w->lock);
	if (w->stop) {
		pthread_mutex_unlock(&w->lock);
		job->rv = SCARD_E_READER_UNAVAILABLE;
		completions_post(w->cfg.done, job);
		return;
	}
	if (w->tail)
		w->tail->next = job;
	else
		w->head = job;
	w->tail = job;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

bool worker_cancel(struct worker *w, struct job *job)
{
	bool found = false;
	pthread_mutex_lock(&w->lock);
	struct job *prev = NULL;
	for (struct job *j = w->head; j; prev = j, j = j->next) {
		if (j != job)
			continue;
		if (prev)
			prev->next = j->next;
		else
			w->head = j->next;
		if (w->tail == j)
			w->tail = prev;
		found = true;
		break;
	}
	pthread_mutex_unlock(&w->lock);
	return found;
}

bool worker_try_claim(struct worker *w)
{
	if (atomic_load_explicit(&w->last_call_us, memory_order_relaxed) > INLINE_MAX_US)
		return false;
	pthread_mutex_lock(&w->lock);
	bool ok = w->opened && !w->busy && !w->head && !w->stop;
	if (ok)
		w->busy = true;
	pthread_mutex_unlock(&w->lock);
	if (!ok)
		return false;
	/* A driver that is not thread-safe shares one lock with its other readers. */
	if (w->serialize) {
		if (pthread_mutex_trylock(&w->cfg.drv->lock) != 0) {
			worker_release(w);
			return false;
		}
		w->lib_held = true;
	}
	return true;
}

void worker_release(struct worker *w)
{
	if (w->lib_held) {
		w->lib_held = false;
		pthread_mutex_unlock(&w->cfg.drv->lock);
	}
	pthread_mutex_lock(&w->lock);
	w->busy = false;
	if (w->waiting_idle)
		pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void worker_check_presence(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->check_presence = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void worker_check_presence_and_wait(struct worker *w, unsigned max_ms)
{
	struct timespec deadline = deadline_in(CLOCK_MONOTONIC, max_ms);
	pthread_mutex_lock(&w->lock);
	unsigned before = w->checks;
	w->check_presence = true;
	pthread_cond_signal(&w->cond);
	while (w->checks == before && !w->stop &&
	       pthread_cond_timedwait(&w->checked, &w->lock, &deadline) == 0)
		;
	pthread_mutex_unlock(&w->lock);
}

void worker_run_claimed(struct worker *w, struct job *job)
{
	job->state = JOB_RUNNING;
	timed_run(w, job);
}

void worker_close(struct worker *w, bool unplugged)
{
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	w->closing = true;
	w->unplugged = unplugged;
	pthread_cond_broadcast(&w->cond);
	pthread_cond_broadcast(&w->checked);
	pthread_mutex_unlock(&w->lock);
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
	worker_free(w);
}

bool worker_stop(struct worker *w, unsigned timeout_ms)
{
	struct timespec deadline = deadline_in(CLOCK_MONOTONIC, timeout_ms);
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	w->closing = false; /* the caller joins and frees it, not a JOB_CLOSED */
	pthread_cond_broadcast(&w->cond);
	pthread_cond_broadcast(&w->checked); /* event threads waiting for a check */
	while (!w->exited)
		if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT)
			break;
	bool exited = w->exited;
	pthread_mutex_unlock(&w->lock);
	if (!exited) {
		/* Stuck in its driver: leave it be rather than hang. */
		log_error("%s: driver did not return; abandoning its thread", w->name);
		pthread_detach(w->thread);
		return false;
	}
	pthread_join(w->thread, NULL);
	worker_free(w);
	return true;
}
