#include "loop_runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

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
	struct runner_call *current;
	uint64_t seq;
	bool monitor_idle;
	bool monitor_quit;
	bool monitor_started;
	pthread_t monitor;
	bool loop_done;
	int loop_rc;
	unsigned spares;           /* threads waiting to be given the loop */
	unsigned wanted;           /* hand-overs not yet taken by a spare */
	unsigned handoffs;
	struct runner_thread *threads;
};

/* Runs the loop; when it is handed over, waits as a spare to run it again. */
static void *runner_thread_main(void *arg)
{
	struct loop_runner *r = arg;
	for (;;) {
		int rc = el_run(r->loop);
		pthread_mutex_lock(&r->m);
		if (rc != EL_RUN_LEFT) {
			r->loop_done = true;
			r->loop_rc = rc;
			pthread_cond_broadcast(&r->spare_cv);
			pthread_mutex_unlock(&r->m);
			return NULL;
		}
		r->spares++;
		while (!r->loop_done && r->wanted == 0)
			pthread_cond_wait(&r->spare_cv, &r->m);
		r->spares--;
		bool done = r->loop_done;
		if (!done)
			r->wanted--;
		pthread_mutex_unlock(&r->m);
		if (done)
			return NULL;
	}
}

/* With r->m held. */
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
	return 0;
}

/* With r->m held: the current call overran; another thread takes the loop. */
static void hand_off(struct loop_runner *r)
{
	if (r->spares > r->wanted) {
		r->wanted++;
		pthread_cond_broadcast(&r->spare_cv);
	} else if (spawn(r) < 0) {
		/* Nobody can take over: the loop waits for the call, as before. */
		log_error("cannot start a thread to take over the event loop; "
			  "clients wait for a slow driver");
		return;
	}
	r->current->lost = true;
	r->current = NULL;
	r->handoffs++;
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += (long)ms * 1000000L;
	while (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *monitor_main(void *arg)
{
	struct loop_runner *r = arg;
	uint64_t seen_call = 0, seen_seq = 0;
	unsigned quiet = 0;

	pthread_mutex_lock(&r->m);
	while (!r->monitor_quit) {
		if (!r->current && quiet >= IDLE_PERIODS) {
			r->monitor_idle = true;
			while (!r->monitor_quit && r->monitor_idle)
				pthread_cond_wait(&r->monitor_cv, &r->m);
			quiet = 0;
			continue;
		}
		struct timespec deadline;
		deadline_after(&deadline, RUNNER_PERIOD_MS);
		while (!r->monitor_quit &&
		       pthread_cond_timedwait(&r->monitor_cv, &r->m, &deadline) != ETIMEDOUT)
			;
		if (r->monitor_quit)
			break;
		/* The same call in the driver at two checks: it overran a whole period. */
		if (r->current && r->current->seq == seen_call)
			hand_off(r);
		seen_call = r->current ? r->current->seq : 0;
		quiet = r->seq == seen_seq ? quiet + 1 : 0;
		seen_seq = r->seq;
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
	r->monitor_idle = false;
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

	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	bool all = true;
	while (r->threads) {
		struct runner_thread *t = r->threads;
		r->threads = t->next;
		if (pthread_timedjoin_np(t->thread, NULL, &deadline) != 0) {
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
	c->lost = false;
	if (!r)
		return;
	pthread_mutex_lock(&r->m);
	c->seq = ++r->seq;
	r->current = c;
	if (r->monitor_idle) {
		r->monitor_idle = false;
		pthread_cond_signal(&r->monitor_cv);
	}
	pthread_mutex_unlock(&r->m);
}

bool runner_call_end(struct loop_runner *r, struct runner_call *c)
{
	if (!r)
		return true;
	pthread_mutex_lock(&r->m);
	bool lost = c->lost;
	if (!lost)
		r->current = NULL;
	pthread_mutex_unlock(&r->m);
	return !lost;
}

unsigned runner_handoffs(struct loop_runner *r)
{
	pthread_mutex_lock(&r->m);
	unsigned n = r->handoffs;
	pthread_mutex_unlock(&r->m);
	return n;
}
