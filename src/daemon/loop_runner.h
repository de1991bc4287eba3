/*
 * Who runs the event loop. Normally one thread runs it and, for a quick job,
 * calls the driver itself (jobs.h). A call that overruns must not hold up
 * every other client, so the call is bracketed: a monitor thread looks at
 * the bracket every RUNNER_PERIOD_MS and, when the same call is still in the
 * driver a whole period later, gives the loop to a spare thread (the Go
 * runtime's hand-off on blocking system calls). The overrunning thread
 * learns it when its call returns (runner_call_end is false), posts its
 * result as a worker would, and becomes the next spare.
 *
 * The bracket costs two atomic operations, no lock: the hot path stays free
 * of system calls. The monitor sleeps for good after a second without
 * calls, and is woken by the next one, so an idle daemon has no timer
 * running.
 */
#ifndef SCARDD_LOOP_RUNNER_H
#define SCARDD_LOOP_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#define RUNNER_PERIOD_MS 2u

struct event_loop;
struct loop_runner;

struct runner_call {
	uint64_t seq;
};

struct loop_runner *runner_new(struct event_loop *loop);
/*
 * Runs the loop on the calling thread until it stops (el_stop), handing it
 * over and taking it back as calls overrun. Returns el_run's result.
 */
int runner_run(struct loop_runner *r);
/*
 * Stops the monitor and joins every thread. False when a thread is still
 * stuck in a driver after timeout_ms: it was left running, and whatever it
 * may touch (the loop runner, the job queues) must not be freed.
 */
bool runner_free(struct loop_runner *r, unsigned timeout_ms);

/* Around a blocking call made by the loop's owner; false: the loop was handed over. */
void runner_call_begin(struct loop_runner *r, struct runner_call *c);
bool runner_call_end(struct loop_runner *r, struct runner_call *c);

/* Threads that took over the loop so far (for tests and logs). */
unsigned runner_handoffs(struct loop_runner *r);

#endif
