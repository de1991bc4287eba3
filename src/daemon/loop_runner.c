#include "loop_runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "deadline.h"
#include "event_loop.h"
#include "log.h"

/* Periods without a call before the monitor sleeps until the next one. */
#define IDLE_PERIODS (1000u / RUNNER_PERIOD_MS)

struct runner_thread {
	pthread_t thread;
	struct runner_thread *next;
};

struct loop_runner {
	struct event_loop *loop;
	pthread_mutex_t m;
	pthread_cond_t monitor_cv; /* on CLOCK_MONOTONIC */
	pthread_cond_t spare_cv;   /* spares wait for the loop, main for its end */
	/* the call the loop's owner is in (its seq), 0 for none; whoever
	 * clears it first, the caller or the monitor, decides who owns the loop */
	_Atomic uint64_t current;
	_Atomic uint64_t seq; /* calls begun */
	atomic_bool monitor_idle;
	bool monitor_quit;
	bool monitor_started;
	pthread_t monitor;
	bool loop_done;
	int loop_rc;
	unsigned spares; /* threads waiting to be given the loop */
	unsigned wanted; /* hand-overs not yet taken by a spare */
	unsigned handoffs;
	struct runner_thread *threads;
};

/*
 * A runner thread: waits as a spare until the loop is handed to it, runs it,
 * and when it loses it inside a driver call, becomes a spare again.
 */
static void *runner_thread_main(void *arg)
{
	struct loop_runner *r = arg;
	pthread_mutex_lock(&r->m);
	for (;;) {
		while (!r->loop_done && r->wanted == 0)
			pthread_cond_wait(&r->spare_cv, &r->m);
		if (r->loop_done)
			break;
		r->wanted--;
		r->spares--;
		pthread_mutex_unlock(&r->m);
		int rc = el_run(r->loop);
		pthread_mutex_lock(&r->m);
		if (rc != EL_RUN_LEFT) {
			r->loop_done = true;
			r->loop_rc = rc;
			pthread_cond_broadcast(&r->spare_cv);
			break;
		}
		r->spares++;
	}
	pthread_mutex_unlock(&r->m);
	return NULL;
}

/* With r->m held: one more spare thread. */
static int spawn(struct loop_runner *r)
{
	struct runner_thread *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	if (pthread_create(&t->thread, NULL, runner_thread_main, r) != 0) {
		free(t);
		return -1;
	}
	t->next = r->threads;
	r->threads = t;
	r->spares++;
	return 0;
}

/* With r->m held: call `seq` overran; a spare takes the loop. */
static void hand_off(struct loop_runner *r, uint64_t seq)
{
	/* A thread must be ready before the caller loses the loop. */
	if (r->spares <= r->wanted && spawn(r) < 0) {
		log_error("cannot start a thread to take over the event loop; "
			  "clients wait for a slow driver");
		return;
	}
	if (!atomic_compare_exchange_strong(&r->current, &seq, 0))
		return; /* the call came back meanwhile: the loop stays where it is */
	r->handoffs++;
	r->wanted++;
	pthread_cond_broadcast(&r->spare_cv);
}

static void *monitor_main(void *arg)
{
	struct loop_runner *r = arg;
	uint64_t seen_call = 0, seen_seq = 0;
	unsigned quiet = 0;

	pthread_mutex_lock(&r->m);
	while (!r->monitor_quit) {
		if (quiet >= IDLE_PERIODS) {
			atomic_store(&r->monitor_idle, true);
			/* a call begun since sees the flag and wakes us (it takes the lock) */
			while (!r->monitor_quit && atomic_load(&r->monitor_idle) &&
			       atomic_load(&r->current) == 0)
				pthread_cond_wait(&r->monitor_cv, &r->m);
			atomic_store(&r->monitor_idle, false);
			quiet = 0;
			continue;
		}
		struct timespec deadline = deadline_in(CLOCK_MONOTONIC, RUNNER_PERIOD_MS);
		while (!r->monitor_quit &&
		       pthread_cond_timedwait(&r->monitor_cv, &r->m, &deadline) != ETIMEDOUT)
			;
		if (r->monitor_quit)
			break;
		/* The same call in the driver at two checks: it overran a whole period. */
		uint64_t call = atomic_load(&r->current);
		if (call && call == seen_call)
			hand_off(r, call);
		seen_call = call;
		uint64_t seq = atomic_load(&r->seq);
		quiet = seq == seen_seq && !call ? quiet + 1 : 0;
		seen_seq = seq;
	}
	pthread_mutex_unlock(&r->m);
	return NULL;
}

struct loop_runner *runner_new(struct event_loop *loop)
{
	struct loop_runner *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->loop = loop;
	pthread_mutex_init(&r->m, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->monitor_cv, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&r->spare_cv, NULL);
	if (pthread_create(&r->monitor, NULL, monitor_main, r) != 0) {
		runner_free(r, 0);
		return NULL;
	}
	r->monitor_started = true;
	return r;
}

/* The calling thread (main) never runs the loop itself, so that a driver
 * that never returns cannot keep it from shutting the daemon down. */
int runner_run(struct loop_runner *r)
{
	pthread_mutex_lock(&r->m);
	r->loop_done = false;
	if (spawn(r) < 0) {
		pthread_mutex_unlock(&r->m);
		return el_run(r->loop) == 0 ? 0 : -1;
	}
	r->wanted++;
	pthread_cond_broadcast(&r->spare_cv);
	while (!r->loop_done)
		pthread_cond_wait(&r->spare_cv, &r->m);
	int rc = r->loop_rc;
	pthread_mutex_unlock(&r->m);
	return rc;
}

bool runner_free(struct loop_runner *r, unsigned timeout_ms)
{
	if (!r)
		return true;
	pthread_mutex_lock(&r->m);
	r->monitor_quit = true;
	r->loop_done = true;
	pthread_cond_broadcast(&r->monitor_cv);
	pthread_cond_broadcast(&r->spare_cv);
	pthread_mutex_unlock(&r->m);
	if (r->monitor_started)
		pthread_join(r->monitor, NULL);

	struct timespec deadline = deadline_in(CLOCK_MONOTONIC, timeout_ms);
	bool all = true;
	while (r->threads) {
		struct runner_thread *t = r->threads;
		r->threads = t->next;
		if (pthread_clockjoin_np(t->thread, NULL, CLOCK_MONOTONIC, &deadline) != 0) {
			log_error("a driver call did not return; abandoning its thread");
			pthread_detach(t->thread);
			all = false;
		}
		free(t);
	}
	if (!all)
		return false; /* the stuck thread still uses r */
	pthread_cond_destroy(&r->monitor_cv);
	pthread_cond_destroy(&r->spare_cv);
	pthread_mutex_destroy(&r->m);
	free(r);
	return true;
}

void runner_call_begin(struct loop_runner *r, struct runner_call *c)
{
	c->seq = 0;
	if (!r)
		return;
	c->seq = atomic_fetch_add(&r->seq, 1) + 1;
	atomic_store(&r->current, c->seq);
	if (atomic_load(&r->monitor_idle)) {
		pthread_mutex_lock(&r->m);
		atomic_store(&r->monitor_idle, false);
		pthread_cond_signal(&r->monitor_cv);
		pthread_mutex_unlock(&r->m);
	}
}

bool runner_call_end(struct loop_runner *r, struct runner_call *c)
{
	if (!r)
		return true;
	uint64_t seq = c->seq;
	return atomic_compare_exchange_strong(&r->current, &seq, 0);
}

unsigned runner_handoffs(struct loop_runner *r)
{
	pthread_mutex_lock(&r->m);
	unsigned n = r->handoffs;
	pthread_mutex_unlock(&r->m);
	return n;
}
