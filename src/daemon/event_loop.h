/*
 * The daemon's event loop: one epoll instance, file events and one-shot
 * timers, a handful of verbs. Nothing else in the daemon knows about epoll.
 * Single-threaded: every verb must be called from the loop's thread.
 */
#ifndef SCARDD_EVENT_LOOP_H
#define SCARDD_EVENT_LOOP_H

#include <stdint.h>

struct event_loop;

enum {
	EL_READ = 1,  /* readable; also set on hang-up and error so the reader sees EOF */
	EL_WRITE = 2,
	EL_HUP = 4,   /* peer hung up or error (only in the mask passed to callbacks) */
};

typedef void el_file_fn(struct event_loop *loop, int fd, void *data, int mask);
typedef void el_timer_fn(struct event_loop *loop, uint64_t id, void *data);

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

/* Runs until el_stop; returns 0, or -1 if epoll failed. */
int el_run(struct event_loop *loop);
void el_stop(struct event_loop *loop);

/* Monotonic clock in milliseconds. */
uint64_t el_now_ms(void);

#endif
