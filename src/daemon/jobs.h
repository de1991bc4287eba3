/*
 * Scheduling jobs (job.h) and bringing their results back to the loop.
 *
 * The loop submits a job; once per loop pass (before it sleeps) every
 * submitted job either runs right there, on the loop's thread, when its
 * device is idle and its jobs have been quick, or goes to the device's
 * worker. A job run inline is answered in the same pass: the client's
 * request costs two thread wake-ups (the loop's and the client's). The call
 * into the driver is bracketed by the loop runner, which hands the loop to
 * another thread if the call overruns (loop_runner.h); the overrunning
 * thread then posts its result like a worker does.
 *
 * Workers post finished jobs to the completion queue, an eventfd the loop
 * watches; their finish functions run on the loop.
 */
#ifndef SCARDD_JOBS_H
#define SCARDD_JOBS_H

#include <pthread.h>
#include <stdbool.h>

#include "job.h"

struct event_loop;
struct loop_runner;

struct completions {
	pthread_mutex_t lock;
	struct job *head, *tail;
	int efd;
};

struct jobs {
	struct daemon *d; /* handed to finish functions */
	struct loop_runner *runner;
	struct completions done;
	struct job *pending, *pending_tail;
};

int jobs_init(struct jobs *js, struct daemon *d, struct event_loop *loop,
	      struct loop_runner *runner);
/* Frees what is queued; workers must be stopped first. */
void jobs_destroy(struct jobs *js, struct event_loop *loop);

/* Loop: schedules a job for this pass. */
void jobs_submit(struct jobs *js, struct job *job);

/*
 * Loop, before sleeping: runs or queues every submitted job. Returns false
 * when the loop was handed to another thread during a driver call: the
 * caller must then return at once and touch nothing the loop owns.
 */
bool jobs_run_pending(struct jobs *js);
bool jobs_have_pending(const struct jobs *js);

/*
 * Loop: nobody waits for this job any more (timeout, client gone). A job
 * that has not started never will, unless it is a disposition the card
 * still owes; one that runs finishes with no session.
 */
void jobs_abandon(struct jobs *js, struct job *job);

/* Loop: frees a job it is done with (every job but at shutdown ends here). */
void jobs_release(struct job *job);

/* Any thread: hands a finished job to the loop. */
void completions_post(struct completions *c, struct job *job);
/* Loop: runs the finish of every posted job (also used while starting up). */
void jobs_drain(struct jobs *js);

#endif
