/*
 * Deadlines for the daemon's timed waits (pthread_cond_timedwait on
 * condition variables set to CLOCK_MONOTONIC, pthread_clockjoin_np): a time
 * some milliseconds from now on a clock, and whether it has passed. The
 * daemon's waits are all on CLOCK_MONOTONIC, which a changed wall clock does
 * not move.
 */
#ifndef SCARDD_DEADLINE_H
#define SCARDD_DEADLINE_H

#include <stdbool.h>
#include <time.h>

static inline struct timespec deadline_in(clockid_t clock, unsigned ms)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static inline bool deadline_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static inline bool deadline_passed(clockid_t clock, const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(clock, &now);
	return !deadline_before(&now, deadline);
}

#endif
