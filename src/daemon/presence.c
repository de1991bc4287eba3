#include "presence.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ifdhandler.h>
#include <reader.h>

#include "card_ops.h"
#include "driver.h"
#include "jobs.h"
#include "log.h"
#include "worker.h"

typedef RESPONSECODE (*wait_event_fn)(DWORD lun, int timeout_ms);
typedef RESPONSECODE (*stop_wait_fn)(DWORD lun);

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
	card_ops_report(ev, w, slot, true);
	completions_post(w->cfg.done, ev);
}

static void check_slot(struct worker *w, unsigned slot)
{
	struct slot_state *ss = &w->slots[slot];
	worker_drv_enter(w);
	RESPONSECODE rc = w->cfg.drv->ops.icc_presence(worker_lun(w, slot));
	worker_drv_leave(w);
	if (rc == IFD_NO_SUCH_DEVICE) {
		/* The device is gone (unplugged, or its link died): unavailable, not empty. */
		if (ss->gone)
			return;
		log_error("%s: the driver reports the device gone (slot %u)", w->name, slot);
		*ss = (struct slot_state){ .gone = true };
		post_change(w, slot);
		return;
	}
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
	post_change(w, slot);
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

static bool stopping(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	bool stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

static void *event_thread_main(void *arg)
{
	struct event_thread *et = arg;
	struct worker *w = et->w;
	wait_event_fn wait_event;
	memcpy(&wait_event, &w->wait_event, sizeof(wait_event));
	/* Without a stop function the wait must end by itself for shutdown. */
	int timeout_ms = w->stop_wait ? 600000 : 1000;
	while (!stopping(w)) {
		RESPONSECODE rc = wait_event(worker_lun(w, et->slot), timeout_ms);
		if (stopping(w))
			break;
		if (rc != IFD_SUCCESS) {
			/* The driver cannot wait after all: fall back to the poll period. */
			struct timespec ts = { .tv_sec = w->cfg.poll_ms / 1000,
					       .tv_nsec = (long)(w->cfg.poll_ms % 1000) *
							  1000000L };
			nanosleep(&ts, NULL);
		}
		worker_check_presence(w);
	}
	return NULL;
}

void presence_start(struct worker *w)
{
	w->wait_event = get_fn_cap(w, TAG_IFD_POLLING_THREAD_WITH_TIMEOUT);
	w->stop_wait = get_fn_cap(w, TAG_IFD_STOP_POLLING_THREAD);
	uint8_t killable = 0;
	DWORD len = 1;
	worker_drv_enter(w);
	if (w->cfg.drv->ops.get_capabilities(worker_lun(w, 0), TAG_IFD_POLLING_THREAD_KILLABLE,
					     &len, &killable) == IFD_SUCCESS)
		w->killable = killable != 0;
	worker_drv_leave(w);
	if (!w->wait_event)
		return;
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

void presence_stop(struct worker *w)
{
	if (!w->events)
		return;
	stop_wait_fn stop_wait;
	memcpy(&stop_wait, &w->stop_wait, sizeof(stop_wait));
	for (unsigned i = 0; i < w->n_slots; i++) {
		struct event_thread *et = &w->events[i];
		if (!et->started)
			continue;
		if (stop_wait)
			stop_wait(worker_lun(w, i));
		else if (w->killable)
			pthread_cancel(et->thread);
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 3;
		if (pthread_timedjoin_np(et->thread, NULL, &deadline) != 0) {
			log_error("%s: card-event wait did not return; abandoning it", w->name);
			pthread_detach(et->thread);
		}
	}
	free(w->events);
	w->events = NULL;
}
