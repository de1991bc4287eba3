/*
 * The daemon's event loop: one epoll instance, file events and one-shot
 * timers, a handful of verbs. Nothing else in the daemon knows about epoll.
 * Single-threaded: every verb must be called from the thread that runs the
 * loop (which may change between passes, see loop_runner.h).
 */
#ifndef SCARDD_EVENT_LOOP_H
#define SCARDD_EVENT_LOOP_H

#include <stdint.h>

struct event_loop;

enum {
	EL_READ = 1, /* readable; also set on hang-up and error so the reader sees EOF */
	EL_WRITE = 2,
	EL_HUP = 4, /* peer hung up or error (only in the mask passed to callbacks) */
};

typedef void el_file_fn(struct event_loop *loop, int fd, void *data, int mask);
typedef void el_timer_fn(struct event_loop *loop, uint64_t id, void *data);

/* What a before-sleep hook tells the loop. */
enum {
	EL_SLEEP, /* nothing left: wait for events and timers */
	EL_AGAIN, /* more work is ready: look for events without waiting, then call again */
	EL_LEAVE, /* this thread no longer owns the loop: el_run returns EL_RUN_LEFT at once */
};
/*
 * Called once per pass of the loop, after the pass's events and timers
 * (and once when el_run starts), before the loop waits: the one place where
 * work collected during the pass is done (Redis's beforeSleep).
 */
typedef int el_before_sleep_fn(struct event_loop *loop, void *data);

struct event_loop *el_new(void);
void el_free(struct event_loop *loop);

/*
 * Watches fd for mask (EL_READ|EL_WRITE, may be 0 to watch only hang-ups).
 * A callback may add, modify or delete any fd, itself included; events
 * already collected for a deleted fd are not delivered.
 */
int el_add_fd(struct event_loop *loop, int fd, int mask, el_file_fn *fn, void *data);
int el_mod_fd(struct event_loop *loop, int fd, int mask);
void el_del_fd(struct event_loop *loop, int fd);

/* One-shot timer after ms milliseconds; returns an id > 0 (0 on failure). */
uint64_t el_add_timer(struct event_loop *loop, uint64_t ms, el_timer_fn *fn, void *data);
void el_del_timer(struct event_loop *loop, uint64_t id);

void el_set_before_sleep(struct event_loop *loop, el_before_sleep_fn *fn, void *data);

enum { EL_RUN_LEFT = 1 };
/*
 * Runs until el_stop; returns 0, -1 if epoll failed, or EL_RUN_LEFT when the
 * before-sleep hook gave the loop away (another thread may call el_run now).
 */
int el_run(struct event_loop *loop);
void el_stop(struct event_loop *loop);
/*
 * One pass that never waits, for a caller that drives the loop itself (the
 * session fuzzer): the events ready now, the timers due, then the
 * before-sleep hook, which does the work they brought. Returns 1 if the hook
 * answered EL_AGAIN (work left: pass again), 0 if it did not (the loop is
 * quiet until the next event), -1 if epoll failed or the hook answered
 * EL_LEAVE. An el_stop during the pass ends its batch early, as it ends el_run.
 */
int el_run_pass(struct event_loop *loop);

/* Monotonic clock in milliseconds. */
uint64_t el_now_ms(void);

#endif
