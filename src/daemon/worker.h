/*
 * One thread per device owns its driver channel: it opens it, watches card
 * presence (presence.h), runs the jobs the loop could not run itself, and
 * closes the channel when told to stop, always on this thread.
 *
 * The device is "busy" while exactly one thread is inside its driver: this
 * worker, or the loop running a quick job inline (worker_try_claim). Jobs of
 * one device therefore never overlap, and the loop never waits for a busy
 * device: it queues the job instead.
 *
 * The worker reads nothing the loop owns. What it learns goes back as jobs
 * posted to the completion queue (jobs.h).
 */
#ifndef SCARDD_WORKER_H
#define SCARDD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "job.h"

struct completions;
struct device;
struct driver;
struct event_thread;
struct presence_watch;
struct watch_thread;

/* What the worker knows of a slot from its own driver calls. */
struct slot_state {
	bool present;
	bool powered;
	bool mute;         /* present, but the last power-up failed */
	bool gone;         /* the driver says the device is gone (IFD_NO_SUCH_DEVICE) */
	uint32_t protocol; /* negotiated, 0 = not yet */
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	size_t atr_len;
};

struct worker_config {
	struct driver *drv;      /* the worker takes over this reference */
	const char *name;        /* for log lines: the friendly name */
	const char *device_name; /* DEVICENAME, or NULL */
	uint32_t channel_id;
	unsigned long lun_base;
	unsigned poll_ms;
	bool quiet_open;    /* an open failure is the device's owner's to report (USB) */
	struct device *dev; /* opaque: stamped on the jobs it makes */
	struct completions *done;
	job_finish_fn *opened;     /* finish of its JOB_OPEN */
	job_finish_fn *card_event; /* finish of its JOB_CARD_EVENT */
	job_finish_fn *closed;     /* finish of its JOB_CLOSED (after worker_close) */
};

struct worker {
	struct worker_config cfg;
	char *name;
	char *device_name;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, *tail; /* queued jobs, FIFO */
	bool busy;               /* a thread is in the driver */
	bool waiting_idle;       /* the worker waits for busy to clear */
	bool opened;             /* the channel is open: jobs may run */
	bool stop;
	bool closing;   /* worker_close: post a JOB_CLOSED when done */
	bool unplugged; /* worker_close: tell the driver its device is gone first */
	bool exited;
	bool check_presence;      /* an event thread saw something */
	unsigned checks;          /* presence checks done by the thread ... */
	pthread_cond_t checked;   /* ... signalled on each (event threads wait for one) */
	bool lib_held;            /* the driver library's lock is held for a whole job */
	bool serialize;           /* the driver is not thread-safe: take its lock */
	atomic_uint last_call_us; /* how long the last job took, wherever it ran */

	/* owned by whichever thread holds busy */
	struct slot_state *slots;
	unsigned n_slots;
	uint8_t *scratch; /* the driver's receive buffer */

	/* card presence (presence.c) */
	void *wait_event; /* the driver's event wait, or NULL */
	void *stop_wait;
	bool killable;
	struct event_thread *events;
	bool event_driven;
	/* The driver's presence answers at any time (SCARDD_TAG_IFD_PRESENCE_ANYTIME):
	 * a watcher, apart from the jobs, posts removals at once. */
	bool presence_anytime;
	struct presence_watch *watch; /* one per slot */
	struct watch_thread *watcher; /* polling drivers: the watcher's thread */
	pthread_t watch_thread;
	/* A card-event thread was abandoned inside the driver: it still reads
	 * the worker and runs the driver's code, so neither is ever freed. */
	bool keep;
	struct worker *kept_next; /* worker.c's list of kept workers */
};

/* Starts the thread; it posts a JOB_OPEN once the channel is open or failed. */
struct worker *worker_start(const struct worker_config *cfg);

/* Loop: queues a job for the thread. */
void worker_enqueue(struct worker *w, struct job *job);
/*
 * Loop: takes a queued job back. True: the caller owns it again. False: it
 * is running or done and will be posted.
 */
bool worker_cancel(struct worker *w, struct job *job);

/*
 * Loop: claims the idle device to run a job inline: true when nothing is
 * queued, nobody is in the driver and its jobs have been quick. The caller
 * then runs exactly one job (card_ops_run) and calls worker_release.
 */
bool worker_try_claim(struct worker *w);
/* Runs the job on the calling thread, which holds the claim. */
void worker_run_claimed(struct worker *w, struct job *job);
void worker_release(struct worker *w);

/*
 * Loop: asks the thread to close the channel and end, without waiting. What
 * is queued is answered SCARD_E_READER_UNAVAILABLE; once the driver's close
 * has run (on the worker's own thread, after any call in progress), the
 * thread posts a JOB_CLOSED and ends. Its finish calls worker_join.
 * unplugged: the device is gone; a driver that asks to be told
 * (TAG_IFD_DEVICE_REMOVED) is told before its close.
 *
 * A worker whose open failed ends by itself: its JOB_OPEN is its last job,
 * and that job's finish calls worker_join.
 */
void worker_close(struct worker *w, bool unplugged);
/* Loop, from the JOB_CLOSED (or failed JOB_OPEN) finish: joins the ended thread and frees w. */
void worker_join(struct worker *w);

/*
 * Asks the thread to close the channel and stop; waits up to timeout_ms.
 * Returns true when it exited and was freed; false when it is stuck in its
 * driver and was left running (its memory with it).
 */
bool worker_stop(struct worker *w, unsigned timeout_ms);

/* Any thread: asks the worker to look at card presence now. */
void worker_check_presence(struct worker *w);
/* The same, then waits until the thread has looked (or max_ms, or it stops). */
void worker_check_presence_and_wait(struct worker *w, unsigned max_ms);

/* Helpers for the job bodies and presence code, on the thread holding busy. */
void worker_drv_enter(struct worker *w);
void worker_drv_leave(struct worker *w);
unsigned long worker_lun(const struct worker *w, unsigned slot);

#endif
