#include "presence.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ifdhandler.h>
#include <reader.h>
#include <scardd_ifd.h>

#include "card_ops.h"
#include "deadline.h"
#include "driver.h"
#include "jobs.h"
#include "log.h"
#include "worker.h"

typedef RESPONSECODE (*wait_event_fn)(DWORD lun, int timeout_ms);
typedef RESPONSECODE (*stop_wait_fn)(DWORD lun);

/*
 * A slot as the watcher and the worker share it (drivers that answer
 * presence at any time). The worker alone powers cards and keeps
 * slot_state; the watcher only posts removals, and says so here.
 *
 * posted is (generation << 1) | card present, as last posted by either:
 * each post bumps the generation, so the watcher posts its removal only if
 * nothing was posted since it read the word, before asking the driver (an
 * answer older than the worker's insertion never removes that card).
 */
struct presence_watch {
	atomic_uint posted;
	atomic_bool removal_posted; /* the watcher posted a removal the worker has not taken */
	RESPONSECODE last_rc;       /* the watcher's own last answer (one watcher per slot) */
	bool asked;                 /* last_rc holds one */
};

/* Worker: records its post about the slot (present or not). */
static void publish(struct presence_watch *pw, bool present)
{
	unsigned old = atomic_load(&pw->posted), next;
	do
		next = (((old >> 1) + 1) << 1) | (present ? 1u : 0u);
	while (!atomic_compare_exchange_weak(&pw->posted, &old, next));
}

/* Polling drivers: the watcher's thread and how to stop it. */
struct watch_thread {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

struct event_thread {
	struct worker *w;
	unsigned slot;
	pthread_t thread;
	bool started;
};

static void post_change(struct worker *w, unsigned slot)
{
	struct job *ev = job_new(JOB_CARD_EVENT, w->cfg.dev, w, slot, w->cfg.card_event);
	if (!ev)
		return;
	ev->n_slots = w->n_slots; /* (the first events come before JOB_OPEN) */
	card_ops_report(ev, w, slot, true);
	completions_post(w->cfg.done, ev);
}

static void check_slot(struct worker *w, unsigned slot)
{
	struct slot_state *ss = &w->slots[slot];
	struct presence_watch *pw = w->watch ? &w->watch[slot] : NULL;
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.icc_presence(worker_lun(w, slot));
	worker_drv_leave(w);
	if (rc == IFD_NO_SUCH_DEVICE) {
		/* The device is gone (unplugged, or its link died): unavailable, not empty. */
		if (ss->gone)
			return;
		log_error("%s: the driver reports the device gone (slot %u)", w->name, slot);
		*ss = (struct slot_state){ .gone = true };
		if (pw)
			publish(pw, false);
		post_change(w, slot);
		return;
	}
	/* The watcher posted this card gone: a card found now is another insertion. */
	if (pw && atomic_exchange(&pw->removal_posted, false) && !ss->gone)
		*ss = (struct slot_state){ .present = false };
	bool present;
	if (rc == IFD_SUCCESS || rc == IFD_ICC_PRESENT)
		present = true;
	else if (rc == IFD_ICC_NOT_PRESENT)
		present = false;
	else
		return; /* the reader could not tell: keep what we knew */
	if (present == ss->present && !ss->gone)
		return;

	*ss = (struct slot_state){ .present = present };
	if (present && card_ops_power(w, slot, IFD_POWER_UP) != IFD_SUCCESS)
		log_error("%s: card in slot %u does not answer to power-up", w->name, slot);
	if (pw)
		publish(pw, present); /* before the post: the watcher reads it */
	post_change(w, slot);
}

static bool stopping(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	bool stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

/*
 * Watcher (any thread but the worker's, the device possibly busy): asks
 * the driver, without the device, whether the card is still there. A
 * removal is posted at once; anything else the worker is asked to look at.
 */
static void watch_slot(struct worker *w, unsigned slot)
{
	struct presence_watch *pw = &w->watch[slot];
	unsigned before = atomic_load(&pw->posted);
	RESPONSECODE rc = w->cfg.drv->ops.icc_presence(worker_lun(w, slot));
	/* A card-event thread abandoned in that call (presence_stop) may come
	 * back after the device and the loop's queue are gone: post nothing. */
	if (stopping(w))
		return;
	bool changed = !pw->asked || rc != pw->last_rc;
	pw->asked = true;
	pw->last_rc = rc;
	if (rc == IFD_ICC_NOT_PRESENT && (before & 1u) &&
	    atomic_compare_exchange_strong(&pw->posted, &before, ((before >> 1) + 1) << 1)) {
		struct job *ev = job_new(JOB_CARD_EVENT, w->cfg.dev, w, slot, w->cfg.card_event);
		if (ev) {
			ev->n_slots = w->n_slots; /* present, powered: false */
			completions_post(w->cfg.done, ev);
		}
		/* after the post: the worker's next insertion follows this removal */
		atomic_store(&pw->removal_posted, true);
		changed = true;
	}
	/* anything else (a card in, the device gone or back) is the worker's to look at */
	if (changed)
		worker_check_presence(w);
}

void presence_check(struct worker *w)
{
	for (unsigned i = 0; i < w->n_slots; i++)
		check_slot(w, i);
}

/* Function pointers travel through GetCapabilities as raw bytes. */
static void *get_fn_cap(struct worker *w, DWORD tag)
{
	void *fn = NULL;
	uint8_t buf[sizeof(void *)];
	DWORD len = sizeof(buf);
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.get_capabilities(worker_lun(w, 0), tag, &len, buf);
	worker_drv_leave(w);
	if (rc == IFD_SUCCESS && len == sizeof(buf))
		memcpy(&fn, buf, sizeof(fn));
	return fn;
}

/* Sleeps ms, in short steps, unless the worker stops meanwhile. */
static void sleep_unless_stopping(struct worker *w, unsigned ms)
{
	enum { STEP_MS = 50 };
	while (ms > 0 && !stopping(w)) {
		unsigned step = ms < STEP_MS ? ms : STEP_MS;
		struct timespec ts = { 0, (long)step * 1000000L };
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

static void *event_thread_main(void *arg)
{
	struct event_thread *et = arg;
	struct worker *w = et->w;
	wait_event_fn wait_event;
	memcpy(&wait_event, &w->wait_event, sizeof(wait_event));
	/* Without a stop function the wait must end by itself for shutdown. */
	int timeout_ms = w->stop_wait ? 600000 : 1000;
	/* A killable driver's wait is cancelled (presence_stop), and only the
	 * wait: cancelled anywhere else, the thread could die holding w->lock. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!stopping(w)) {
		int ignored;
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &ignored);
		RESPONSECODE rc = wait_event(worker_lun(w, et->slot), timeout_ms);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &ignored);
		if (stopping(w))
			break;
		if (w->presence_anytime)
			watch_slot(w, et->slot);
		if (rc != IFD_SUCCESS) /* the driver cannot wait after all: poll */
			sleep_unless_stopping(w, w->cfg.poll_ms);
		/*
		 * A driver's wait may keep returning until presence is asked
		 * (ifd-virtual's does): without the watcher, the worker asks
		 * between its calls, so wait for it rather than spin through a
		 * long command.
		 */
		if (w->presence_anytime)
			worker_check_presence(w);
		else
			worker_check_presence_and_wait(w, 1000);
	}
	return NULL;
}

static void *watch_thread_main(void *arg)
{
	struct worker *w = arg;
	struct watch_thread *wt = w->watcher;
	pthread_mutex_lock(&wt->lock);
	while (!wt->stop) {
		struct timespec deadline = deadline_in(CLOCK_MONOTONIC, w->cfg.poll_ms);
		while (!wt->stop && pthread_cond_timedwait(&wt->cond, &wt->lock, &deadline) == 0)
			;
		if (wt->stop)
			break;
		pthread_mutex_unlock(&wt->lock);
		for (unsigned i = 0; i < w->n_slots; i++)
			watch_slot(w, i);
		pthread_mutex_lock(&wt->lock);
	}
	pthread_mutex_unlock(&wt->lock);
	return NULL;
}

/* A polling driver that answers at any time: one watcher thread polls it. */
static void start_watch_thread(struct worker *w)
{
	struct watch_thread *wt = calloc(1, sizeof(*wt));
	if (!wt)
		return;
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&wt->lock, NULL);
	pthread_cond_init(&wt->cond, &attr);
	pthread_condattr_destroy(&attr);
	w->watcher = wt;
	if (pthread_create(&w->watch_thread, NULL, watch_thread_main, w) != 0) {
		log_error("%s: cannot start its presence watcher; polling between requests",
			  w->name);
		w->watcher = NULL;
		pthread_cond_destroy(&wt->cond);
		pthread_mutex_destroy(&wt->lock);
		free(wt);
	}
}

static void stop_watch_thread(struct worker *w)
{
	struct watch_thread *wt = w->watcher;
	if (!wt)
		return;
	pthread_mutex_lock(&wt->lock);
	wt->stop = true;
	pthread_cond_signal(&wt->cond);
	pthread_mutex_unlock(&wt->lock);
	/* (a presence call that never returns would hold this; such a driver
	 * did not answer "at any time") */
	pthread_join(w->watch_thread, NULL);
	w->watcher = NULL;
	pthread_cond_destroy(&wt->cond);
	pthread_mutex_destroy(&wt->lock);
	free(wt);
}

static bool presence_anytime(struct worker *w)
{
	uint8_t yes[8] = { 0 }; /* room for drivers that ignore the length */
	DWORD len = 1;
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.get_capabilities(worker_lun(w, 0),
							   SCARDD_TAG_IFD_PRESENCE_ANYTIME, &len,
							   yes);
	worker_drv_leave(w);
	return rc == IFD_SUCCESS && len == 1 && yes[0] == 1;
}

void presence_start(struct worker *w)
{
	if (presence_anytime(w)) {
		w->watch = calloc(w->n_slots, sizeof(*w->watch));
		w->presence_anytime = w->watch;
	}
	w->wait_event = get_fn_cap(w, TAG_IFD_POLLING_THREAD_WITH_TIMEOUT);
	w->stop_wait = get_fn_cap(w, TAG_IFD_STOP_POLLING_THREAD);
	uint8_t killable = 0;
	DWORD len = 1;
	worker_drv_enter(w);
	if (w->cfg.drv->ops.get_capabilities(worker_lun(w, 0), TAG_IFD_POLLING_THREAD_KILLABLE,
					     &len, &killable) == IFD_SUCCESS)
		w->killable = killable != 0;
	worker_drv_leave(w);
	if (!w->wait_event) {
		if (w->presence_anytime)
			start_watch_thread(w);
		return;
	}
	w->events = calloc(w->n_slots, sizeof(*w->events));
	if (!w->events)
		return;
	w->event_driven = true;
	for (unsigned i = 0; i < w->n_slots; i++) {
		struct event_thread *et = &w->events[i];
		et->w = w;
		et->slot = i;
		et->started = pthread_create(&et->thread, NULL, event_thread_main, et) == 0;
		if (!et->started) {
			log_error("%s: cannot start card-event thread; polling instead", w->name);
			w->event_driven = false;
		}
	}
}

/*
 * Ends the card-event threads, all within EVENTS_GIVE_UP_MS (under the 2 s
 * shutdown gives a worker, so the driver's close still runs). The driver's
 * stop is repeated every STOP_EVERY_MS for each thread not yet returned: a
 * stop that comes while a thread is between two waits, or inside the wait
 * before it has begun waiting, is lost in drivers that stop only the wait
 * in progress (libccid 1.5 cancels the interrupt transfer it has published,
 * if any), and that wait would run its whole timeout. A repeat finds no
 * wait, or one already cancelled. A thread still in the driver at the end
 * is abandoned, and the worker is kept for it (worker_free).
 */
void presence_stop(struct worker *w)
{
	enum { STOP_EVERY_MS = 100, EVENTS_GIVE_UP_MS = 1500 };
	stop_watch_thread(w);
	if (!w->events)
		return;
	stop_wait_fn stop_wait;
	memcpy(&stop_wait, &w->stop_wait, sizeof(stop_wait));
	struct timespec give_up = deadline_in(CLOCK_MONOTONIC, EVENTS_GIVE_UP_MS);
	unsigned running = 0;
	for (unsigned i = 0; i < w->n_slots; i++) {
		if (!w->events[i].started)
			continue;
		running++;
		if (!stop_wait && w->killable)
			pthread_cancel(w->events[i].thread);
	}
	while (running) {
		for (unsigned i = 0; stop_wait && i < w->n_slots; i++)
			if (w->events[i].started)
				stop_wait(worker_lun(w, i));
		struct timespec step = deadline_in(CLOCK_MONOTONIC,
						   stop_wait ? STOP_EVERY_MS : EVENTS_GIVE_UP_MS);
		if (deadline_before(&give_up, &step))
			step = give_up;
		for (unsigned i = 0; i < w->n_slots; i++) {
			struct event_thread *et = &w->events[i];
			if (et->started &&
			    pthread_clockjoin_np(et->thread, NULL, CLOCK_MONOTONIC, &step) == 0) {
				et->started = false;
				running--;
			}
		}
		if (deadline_passed(CLOCK_MONOTONIC, &give_up))
			break;
	}
	if (running) {
		log_error("%s: card-event wait did not return; abandoning it", w->name);
		for (unsigned i = 0; i < w->n_slots; i++)
			if (w->events[i].started)
				pthread_detach(w->events[i].thread);
		w->keep = true; /* the abandoned threads read it, and w->events */
		return;
	}
	free(w->events);
	w->events = NULL;
}
