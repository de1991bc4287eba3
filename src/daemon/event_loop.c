/*
 * epoll loop with one-shot timers.
 *
 * Each fd registration gets a generation number that travels in the epoll
 * event; an event whose generation no longer matches the fd's current
 * registration (deleted, or deleted and re-added, earlier in the same batch)
 * is dropped. Timers live in a binary min-heap; their nodes come from a pool
 * whose slot index and reuse count make the public id, so cancelling is
 * O(log n) and a stale id can never hit a newer timer.
 */
#include "event_loop.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* How many events one epoll_wait may return; the rest come next round. */
#define EL_BATCH_MAX 1024

struct el_file {
	el_file_fn *fn;
	void *data;
	int mask;
	uint32_t gen; /* 0 = free */
};

struct el_timer {
	uint64_t when;
	uint64_t order; /* creation order, breaks ties between equal deadlines */
	el_timer_fn *fn;
	void *data;
	uint32_t gen; /* bumped at each reuse of the slot; 0 never used */
	size_t heap_pos;
	bool active;
	uint32_t next_free;
};

struct event_loop {
	int epfd;
	bool stop;

	struct el_file *files; /* indexed by fd */
	size_t files_cap;
	size_t n_files;
	uint32_t next_gen;

	struct epoll_event *events;
	size_t events_cap;

	struct el_timer *timers; /* pool, indexed by slot */
	size_t timers_cap;
	uint32_t free_head; /* slot + 1; 0 = empty list */
	uint32_t *heap;     /* slot numbers ordered as a min-heap */
	size_t heap_len;
	uint64_t timer_order;

	el_before_sleep_fn *before_sleep;
	void *before_sleep_data;
};

uint64_t el_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct event_loop *el_new(void)
{
	struct event_loop *loop = calloc(1, sizeof *loop);
	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->events_cap = 16;
	loop->events = calloc(loop->events_cap, sizeof *loop->events);
	if (loop->epfd < 0 || !loop->events) {
		el_free(loop);
		return NULL;
	}
	return loop;
}

void el_free(struct event_loop *loop)
{
	if (!loop)
		return;
	if (loop->epfd >= 0)
		close(loop->epfd);
	free(loop->files);
	free(loop->events);
	free(loop->timers);
	free(loop->heap);
	free(loop);
}

/* ---- file events ---- */

static uint32_t to_epoll(int mask)
{
	uint32_t ev = EPOLLRDHUP;
	if (mask & EL_READ)
		ev |= EPOLLIN;
	if (mask & EL_WRITE)
		ev |= EPOLLOUT;
	return ev;
}

static int grow_files(struct event_loop *loop, int fd)
{
	size_t need = (size_t)fd + 1;
	if (need <= loop->files_cap)
		return 0;
	size_t cap = loop->files_cap ? loop->files_cap : 64;
	while (cap < need)
		cap *= 2;
	struct el_file *f = realloc(loop->files, cap * sizeof *f);
	if (!f)
		return -1;
	memset(f + loop->files_cap, 0, (cap - loop->files_cap) * sizeof *f);
	loop->files = f;
	loop->files_cap = cap;
	return 0;
}

static struct el_file *lookup(struct event_loop *loop, int fd)
{
	if (fd < 0 || (size_t)fd >= loop->files_cap || loop->files[fd].gen == 0)
		return NULL;
	return &loop->files[fd];
}

static uint32_t new_gen(struct event_loop *loop)
{
	if (++loop->next_gen == 0)
		loop->next_gen = 1;
	return loop->next_gen;
}

static uint64_t pack(int fd, uint32_t gen)
{
	return (uint64_t)(uint32_t)fd << 32 | gen;
}

int el_add_fd(struct event_loop *loop, int fd, int mask, el_file_fn *fn, void *data)
{
	if (fd < 0 || !fn) {
		errno = EINVAL;
		return -1;
	}
	if (grow_files(loop, fd) < 0)
		return -1;
	uint32_t gen = new_gen(loop);
	struct epoll_event ev = { .events = to_epoll(mask), .data.u64 = pack(fd, gen) };
	/* EEXIST means a live registration; success over an old slot means the
	 * fd was closed without el_del_fd and the slot is stale. */
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -1;
	struct el_file *f = &loop->files[fd];
	if (f->gen == 0)
		loop->n_files++;
	*f = (struct el_file){ .fn = fn, .data = data, .mask = mask, .gen = gen };
	return 0;
}

int el_mod_fd(struct event_loop *loop, int fd, int mask)
{
	struct el_file *f = lookup(loop, fd);
	if (!f) {
		errno = ENOENT;
		return -1;
	}
	struct epoll_event ev = { .events = to_epoll(mask), .data.u64 = pack(fd, f->gen) };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -1;
	f->mask = mask;
	return 0;
}

void el_del_fd(struct event_loop *loop, int fd)
{
	struct el_file *f = lookup(loop, fd);
	if (!f)
		return;
	/* Fails harmlessly if the caller already closed the fd. */
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	*f = (struct el_file){ 0 };
	loop->n_files--;
}

/* ---- timers: min-heap on (when, order) ---- */

static bool timer_before(const struct event_loop *loop, uint32_t a, uint32_t b)
{
	const struct el_timer *ta = &loop->timers[a], *tb = &loop->timers[b];
	if (ta->when != tb->when)
		return ta->when < tb->when;
	return ta->order < tb->order;
}

static void heap_set(struct event_loop *loop, size_t pos, uint32_t slot)
{
	loop->heap[pos] = slot;
	loop->timers[slot].heap_pos = pos;
}

static void sift_up(struct event_loop *loop, size_t pos)
{
	uint32_t slot = loop->heap[pos];
	while (pos > 0) {
		size_t parent = (pos - 1) / 2;
		if (!timer_before(loop, slot, loop->heap[parent]))
			break;
		heap_set(loop, pos, loop->heap[parent]);
		pos = parent;
	}
	heap_set(loop, pos, slot);
}

static void sift_down(struct event_loop *loop, size_t pos)
{
	uint32_t slot = loop->heap[pos];
	for (;;) {
		size_t child = 2 * pos + 1;
		if (child >= loop->heap_len)
			break;
		if (child + 1 < loop->heap_len &&
		    timer_before(loop, loop->heap[child + 1], loop->heap[child]))
			child++;
		if (!timer_before(loop, loop->heap[child], slot))
			break;
		heap_set(loop, pos, loop->heap[child]);
		pos = child;
	}
	heap_set(loop, pos, slot);
}

static void heap_remove(struct event_loop *loop, size_t pos)
{
	uint32_t last = loop->heap[--loop->heap_len];
	if (pos == loop->heap_len)
		return;
	heap_set(loop, pos, last);
	sift_down(loop, pos);
	sift_up(loop, loop->timers[last].heap_pos);
}

static int grow_timers(struct event_loop *loop)
{
	if (loop->timers_cap >= UINT32_MAX / 2)
		return -1;
	size_t cap = loop->timers_cap ? loop->timers_cap * 2 : 16;
	struct el_timer *t = realloc(loop->timers, cap * sizeof *t);
	if (!t)
		return -1;
	loop->timers = t;
	uint32_t *h = realloc(loop->heap, cap * sizeof *h);
	if (!h)
		return -1;
	loop->heap = h;
	for (size_t i = loop->timers_cap; i < cap; i++) {
		t[i] = (struct el_timer){ .next_free = loop->free_head };
		loop->free_head = (uint32_t)i + 1;
	}
	loop->timers_cap = cap;
	return 0;
}

static void release_timer(struct event_loop *loop, uint32_t slot)
{
	struct el_timer *t = &loop->timers[slot];
	t->active = false;
	t->next_free = loop->free_head;
	loop->free_head = slot + 1;
}

uint64_t el_add_timer(struct event_loop *loop, uint64_t ms, el_timer_fn *fn, void *data)
{
	if (!fn)
		return 0;
	if (!loop->free_head && grow_timers(loop) < 0)
		return 0;
	uint32_t slot = loop->free_head - 1;
	struct el_timer *t = &loop->timers[slot];
	loop->free_head = t->next_free;

	uint64_t now = el_now_ms();
	t->when = ms > UINT64_MAX - now ? UINT64_MAX : now + ms;
	t->order = loop->timer_order++;
	t->fn = fn;
	t->data = data;
	t->active = true;
	if (++t->gen == 0)
		t->gen = 1;
	loop->heap[loop->heap_len++] = slot;
	sift_up(loop, loop->heap_len - 1);
	return (uint64_t)slot << 32 | t->gen;
}

void el_del_timer(struct event_loop *loop, uint64_t id)
{
	uint64_t slot = id >> 32;
	uint32_t gen = (uint32_t)id;
	if (slot >= loop->timers_cap)
		return;
	struct el_timer *t = &loop->timers[slot];
	if (!t->active || t->gen != gen)
		return;
	heap_remove(loop, t->heap_pos);
	release_timer(loop, (uint32_t)slot);
}

/* Fires the timers due now and returns how many. Bounded by the count at
 * entry so a callback that re-arms a 0 ms timer cannot keep the loop here forever. */
static int run_timers(struct event_loop *loop)
{
	uint64_t now = el_now_ms();
	size_t budget = loop->heap_len;
	int fired = 0;

	while (budget-- > 0 && loop->heap_len > 0 && !loop->stop) {
		uint32_t slot = loop->heap[0];
		struct el_timer *t = &loop->timers[slot];
		if (t->when > now)
			break;
		el_timer_fn *fn = t->fn;
		void *data = t->data;
		uint64_t id = (uint64_t)slot << 32 | t->gen;
		heap_remove(loop, 0);
		release_timer(loop, slot);
		fn(loop, id, data);
		fired++;
	}
	return fired;
}

static int wait_timeout(const struct event_loop *loop)
{
	if (loop->heap_len == 0)
		return -1;
	uint64_t when = loop->timers[loop->heap[0]].when;
	uint64_t now = el_now_ms();
	if (when <= now)
		return 0;
	return when - now > INT_MAX ? INT_MAX : (int)(when - now);
}

/* ---- dispatch ---- */

static int to_mask(uint32_t ev)
{
	int mask = 0;
	if (ev & EPOLLIN)
		mask |= EL_READ;
	if (ev & EPOLLOUT)
		mask |= EL_WRITE;
	if (ev & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
		mask |= EL_READ | EL_HUP;
	return mask;
}

static void dispatch(struct event_loop *loop, const struct epoll_event *ev)
{
	int fd = (int)(ev->data.u64 >> 32);
	uint32_t gen = (uint32_t)ev->data.u64;
	struct el_file *f = lookup(loop, fd);
	if (!f || f->gen != gen)
		return; /* deleted, or replaced, earlier in this batch */
	int mask = to_mask(ev->events);
	/* A callback earlier in the batch may have changed what we watch;
	 * a hang-up is always delivered, as a read so the owner sees EOF. */
	mask &= f->mask | ((mask & EL_HUP) ? EL_READ | EL_HUP : 0);
	if (mask)
		f->fn(loop, fd, f->data, mask);
}

/* Grow the batch with the number of fds so a busy loop drains in few rounds. */
static void fit_events(struct event_loop *loop)
{
	size_t want = loop->n_files < EL_BATCH_MAX ? loop->n_files : EL_BATCH_MAX;
	if (want <= loop->events_cap)
		return;
	struct epoll_event *e = realloc(loop->events, want * sizeof *e);
	if (!e)
		return; /* keep the smaller batch */
	loop->events = e;
	loop->events_cap = want;
}

void el_set_before_sleep(struct event_loop *loop, el_before_sleep_fn *fn, void *data)
{
	loop->before_sleep = fn;
	loop->before_sleep_data = data;
}

/* Returns how many events and timers fired (an interrupted wait counts as
 * one, so that el_run_pass's caller looks again), or -1 if epoll failed. */
static int run_once(struct event_loop *loop, bool wait)
{
	fit_events(loop);
	int n = epoll_wait(loop->epfd, loop->events, (int)loop->events_cap,
			   wait ? wait_timeout(loop) : 0);
	if (n < 0)
		return errno == EINTR ? 1 : -1;
	for (int i = 0; i < n && !loop->stop; i++)
		dispatch(loop, &loop->events[i]);
	return n + run_timers(loop);
}

int el_run(struct event_loop *loop)
{
	loop->stop = false;
	while (!loop->stop) {
		int next = EL_SLEEP;
		if (loop->before_sleep)
			next = loop->before_sleep(loop, loop->before_sleep_data);
		if (next == EL_LEAVE)
			return EL_RUN_LEFT; /* another thread's loop now: touch nothing */
		if (loop->stop)
			break;
		if (run_once(loop, next == EL_SLEEP) < 0)
			return -1;
	}
	return 0;
}

int el_run_pass(struct event_loop *loop)
{
	loop->stop = false;
	if (run_once(loop, false) < 0)
		return -1;
	int next = EL_SLEEP;
	if (loop->before_sleep)
		next = loop->before_sleep(loop, loop->before_sleep_data);
	if (next == EL_LEAVE)
		return -1;
	return next == EL_AGAIN;
}

void el_stop(struct event_loop *loop)
{
	loop->stop = true;
}
