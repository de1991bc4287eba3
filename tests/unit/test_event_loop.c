/* Event loop: readiness, hang-ups, deletion and fd reuse inside a batch, timers, before-sleep. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_support.h"

#include "event_loop.h"

static void stop_cb(struct event_loop *loop, uint64_t id, void *data)
{
	(void)id;
	(void)data;
	el_stop(loop);
}

/* Every test ends its loop with a deadline so a bug cannot hang the suite. */
static int run_for(struct event_loop *loop, uint64_t ms)
{
	uint64_t id = el_add_timer(loop, ms, stop_cb, NULL);
	assert_true(id > 0);
	int rc = el_run(loop);
	el_del_timer(loop, id);
	return rc;
}

static void make_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

/* ---- readiness ---- */

struct seen {
	int calls;
	int fd;
	int mask;
};

static void record_cb(struct event_loop *loop, int fd, void *data, int mask)
{
	struct seen *s = data;
	char buf[64];
	s->calls++;
	s->fd = fd;
	s->mask = mask;
	if (mask & EL_READ)
		while (read(fd, buf, sizeof buf) > 0)
			;
	el_stop(loop);
}

static void test_pipe_readable(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	int p[2];
	struct seen s = { 0 };
	assert_non_null(loop);
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(el_add_fd(loop, p[0], EL_READ, record_cb, &s), 0);

	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(run_for(loop, 2000), 0);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.fd, p[0]);
	assert_int_equal(s.mask, EL_READ);

	/* Nothing more to read: only the deadline ends the run. */
	assert_int_equal(run_for(loop, 30), 0);
	assert_int_equal(s.calls, 1);

	el_del_fd(loop, p[0]);
	close(p[0]);
	close(p[1]);
	el_free(loop);
}

static void test_writable_and_mod(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	int sv[2];
	struct seen s = { 0 };
	make_pair(sv);
	assert_int_equal(el_add_fd(loop, sv[0], EL_WRITE, record_cb, &s), 0);
	assert_int_equal(run_for(loop, 2000), 0);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.mask, EL_WRITE);

	/* Switched to reads, an idle socket must stay quiet. */
	assert_int_equal(el_mod_fd(loop, sv[0], EL_READ), 0);
	assert_int_equal(run_for(loop, 30), 0);
	assert_int_equal(s.calls, 1);

	assert_int_equal(write(sv[1], "y", 1), 1);
	assert_int_equal(run_for(loop, 2000), 0);
	assert_int_equal(s.calls, 2);
	assert_int_equal(s.mask, EL_READ);

	el_del_fd(loop, sv[0]);
	close(sv[0]);
	close(sv[1]);
	el_free(loop);
}

static void test_bad_registrations(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	int sv[2];
	struct seen s = { 0 };
	make_pair(sv);

	assert_int_equal(el_add_fd(loop, sv[0], EL_READ, record_cb, &s), 0);
	assert_int_equal(el_add_fd(loop, sv[0], EL_READ, record_cb, &s), -1);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(el_mod_fd(loop, sv[1], EL_READ), -1);
	assert_int_equal(el_add_fd(loop, -1, EL_READ, record_cb, &s), -1);

	/* Regular files cannot be polled. */
	int fd = open("/proc/self/exe", O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(el_add_fd(loop, fd, EL_READ, record_cb, &s), -1);
	close(fd);

	el_del_fd(loop, sv[1]); /* never added: no-op */
	el_del_fd(loop, sv[0]);
	el_del_fd(loop, sv[0]); /* twice: no-op */
	close(sv[0]);
	close(sv[1]);
	el_free(loop);
}

/* ---- hang-ups ---- */

static void test_hangup_delivered(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	int sv[2], p[2], q[2];
	struct seen s1 = { 0 }, s2 = { 0 }, s3 = { 0 };

	make_pair(sv);
	assert_int_equal(el_add_fd(loop, sv[0], EL_READ, record_cb, &s1), 0);
	close(sv[1]);
	assert_int_equal(run_for(loop, 2000), 0);
	assert_int_equal(s1.calls, 1);
	assert_int_equal(s1.mask, EL_READ | EL_HUP);
	el_del_fd(loop, sv[0]);
	close(sv[0]);

	/* Mask 0 still hears the hang-up, reported as a read too. */
	make_pair(q);
	assert_int_equal(el_add_fd(loop, q[0], 0, record_cb, &s2), 0);
	assert_int_equal(write(q[1], "z", 1), 1);
	assert_int_equal(run_for(loop, 30), 0);
	assert_int_equal(s2.calls, 0);
	close(q[1]);
	assert_int_equal(run_for(loop, 2000), 0);
	assert_int_equal(s2.calls, 1);
	assert_int_equal(s2.mask, EL_READ | EL_HUP);
	el_del_fd(loop, q[0]);
	close(q[0]);

	/* A pipe whose writer went away. */
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(el_add_fd(loop, p[0], EL_READ, record_cb, &s3), 0);
	close(p[1]);
	assert_int_equal(run_for(loop, 2000), 0);
	assert_int_equal(s3.calls, 1);
	assert_true(s3.mask & EL_HUP);
	assert_true(s3.mask & EL_READ);
	el_del_fd(loop, p[0]);
	close(p[0]);
	el_free(loop);
}

/* ---- deletion and reuse inside one batch ---- */

struct pair_ctx {
	int fds[2]; /* the two watched fds */
	int calls[2];
	int new_fd; /* registered in place of the deleted one (reuse test) */
	int new_calls;
	bool reuse;
};

static void new_cb(struct event_loop *loop, int fd, void *data, int mask)
{
	struct pair_ctx *c = data;
	char buf[8];
	(void)loop;
	(void)mask;
	c->new_calls++;
	while (read(fd, buf, sizeof buf) > 0)
		;
}

/* Whichever callback runs first deletes and closes the other fd. */
static void killer_cb(struct event_loop *loop, int fd, void *data, int mask)
{
	struct pair_ctx *c = data;
	char buf[8];
	int me = fd == c->fds[0] ? 0 : 1;
	int other = c->fds[!me];
	(void)mask;
	c->calls[me]++;
	while (read(fd, buf, sizeof buf) > 0)
		;
	if (other < 0)
		return;
	c->fds[!me] = -1;
	if (!c->reuse) {
		el_del_fd(loop, other);
		close(other);
		return;
	}
	/* Put an idle pipe on the very same fd number under a new callback:
	 * dup2 closes the old socket and hands its number to the pipe. */
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	el_del_fd(loop, other);
	assert_int_equal(dup2(p[0], other), other);
	close(p[0]);
	c->new_fd = p[1]; /* keep the writer to feed it later */
	assert_int_equal(el_add_fd(loop, other, EL_READ, new_cb, c), 0);
}

static void setup_two_readable(struct event_loop *loop, struct pair_ctx *c, int a[2], int b[2])
{
	make_pair(a);
	make_pair(b);
	c->fds[0] = a[0];
	c->fds[1] = b[0];
	assert_int_equal(write(a[1], "1", 1), 1);
	assert_int_equal(write(b[1], "2", 1), 1);
	assert_int_equal(el_add_fd(loop, a[0], EL_READ, killer_cb, c), 0);
	assert_int_equal(el_add_fd(loop, b[0], EL_READ, killer_cb, c), 0);
}

static void test_delete_other_in_batch(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct pair_ctx c = { .new_fd = -1 };
	int a[2], b[2];
	setup_two_readable(loop, &c, a, b);

	assert_int_equal(run_for(loop, 50), 0);
	/* Exactly one ran; the deleted one never did, though both were ready. */
	assert_int_equal(c.calls[0] + c.calls[1], 1);
	int survivor = c.calls[0] ? a[0] : b[0];

	el_del_fd(loop, survivor);
	close(survivor);
	close(a[1]);
	close(b[1]);
	el_free(loop);
}

static void test_fd_reuse_in_batch(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct pair_ctx c = { .new_fd = -1, .reuse = true };
	int a[2], b[2];
	setup_two_readable(loop, &c, a, b);

	assert_int_equal(run_for(loop, 50), 0);
	assert_int_equal(c.calls[0] + c.calls[1], 1);
	/* The old event for that number must not reach the new registration. */
	assert_int_equal(c.new_calls, 0);
	assert_true(c.new_fd >= 0);

	/* The new registration itself works. */
	assert_int_equal(write(c.new_fd, "n", 1), 1);
	assert_int_equal(run_for(loop, 50), 0);
	assert_int_equal(c.new_calls, 1);

	int reused = c.calls[0] ? b[0] : a[0];
	int survivor = c.calls[0] ? a[0] : b[0];
	el_del_fd(loop, reused);
	el_del_fd(loop, survivor);
	close(reused);
	close(survivor);
	close(c.new_fd);
	close(a[1]);
	close(b[1]);
	el_free(loop);
}

static void self_delete_cb(struct event_loop *loop, int fd, void *data, int mask)
{
	int *calls = data;
	(void)mask;
	(*calls)++;
	el_del_fd(loop, fd);
}

static void test_delete_self(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	int sv[2], calls = 0;
	make_pair(sv);
	assert_int_equal(write(sv[1], "s", 1), 1);
	assert_int_equal(el_add_fd(loop, sv[0], EL_READ, self_delete_cb, &calls), 0);
	/* Level-triggered and never read: only the deletion keeps it to one call. */
	assert_int_equal(run_for(loop, 50), 0);
	assert_int_equal(calls, 1);
	close(sv[0]);
	close(sv[1]);
	el_free(loop);
}

/* ---- many fds ---- */

struct many_ctx {
	int done;
	int target;
};

static void drain_close_cb(struct event_loop *loop, int fd, void *data, int mask)
{
	struct many_ctx *m = data;
	char buf[8];
	(void)mask;
	assert_int_equal(read(fd, buf, sizeof buf), 1);
	el_del_fd(loop, fd);
	close(fd);
	if (++m->done == m->target)
		el_stop(loop);
}

static void test_thousands_of_fds(void **state)
{
	(void)state;
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 8192 && rl.rlim_max > rl.rlim_cur) {
		rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	int n = (int)((rl.rlim_cur - 64) / 2);
	if (n > 3000)
		n = 3000;
	if (n < 100)
		skip_because(
			"environment: RLIMIT_NOFILE allows %d socket pairs, the test needs 100", n);

	struct event_loop *loop = el_new();
	struct many_ctx m = { .target = n };
	int *peers = calloc((size_t)n, sizeof *peers);
	assert_non_null(peers);
	int max_fd = 0;
	for (int i = 0; i < n; i++) {
		int sv[2];
		make_pair(sv);
		peers[i] = sv[1];
		max_fd = sv[0] > max_fd ? sv[0] : max_fd;
		assert_int_equal(el_add_fd(loop, sv[0], EL_READ, drain_close_cb, &m), 0);
	}
	for (int i = 0; i < n; i++)
		assert_int_equal(write(peers[i], "m", 1), 1);
	assert_int_equal(run_for(loop, 10000), 0);
	assert_int_equal(m.done, n);
	if (n >= 600)
		assert_true(max_fd > 1024); /* beyond any select()-style cap */
	for (int i = 0; i < n; i++)
		close(peers[i]);
	free(peers);
	el_free(loop);
}

/* ---- timers ---- */

struct order_log {
	int seq[64];
	int n;
};

struct order_item {
	struct order_log *log;
	int tag;
};

static void order_cb(struct event_loop *loop, uint64_t id, void *data)
{
	struct order_item *it = data;
	(void)loop;
	(void)id;
	it->log->seq[it->log->n++] = it->tag;
}

static void test_timer_order(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct order_log log = { 0 };
	struct order_item it[6];
	static const uint64_t delay[] = { 30, 10, 20, 0, 0, 0 };
	for (int i = 0; i < 6; i++) {
		it[i] = (struct order_item){ &log, i };
		assert_true(el_add_timer(loop, delay[i], order_cb, &it[i]) > 0);
	}
	uint64_t start = el_now_ms();
	assert_int_equal(run_for(loop, 200), 0);
	assert_true(el_now_ms() - start >= 200);
	assert_int_equal(log.n, 6);
	/* Equal deadlines fire in the order they were added. */
	static const int want[] = { 3, 4, 5, 1, 2, 0 };
	for (int i = 0; i < 6; i++)
		assert_int_equal(log.seq[i], want[i]);
	el_free(loop);
}

static void test_timer_cancel(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct order_log log = { 0 };
	struct order_item a = { &log, 1 }, b = { &log, 2 }, c = { &log, 3 };

	uint64_t ida = el_add_timer(loop, 10, order_cb, &a);
	uint64_t idb = el_add_timer(loop, 10, order_cb, &b);
	assert_true(ida > 0 && idb > 0 && ida != idb);
	el_del_timer(loop, ida);
	el_del_timer(loop, 0);
	el_del_timer(loop, 0xdeadbeef12345ULL);
	assert_int_equal(run_for(loop, 50), 0);
	assert_int_equal(log.n, 1);
	assert_int_equal(log.seq[0], 2);

	/* idb fired; its slot is reused by c; cancelling idb must not touch c. */
	uint64_t idc = el_add_timer(loop, 10, order_cb, &c);
	assert_true(idc != idb);
	el_del_timer(loop, idb);
	el_del_timer(loop, ida);
	assert_int_equal(run_for(loop, 50), 0);
	assert_int_equal(log.n, 2);
	assert_int_equal(log.seq[1], 3);
	el_free(loop);
}

struct chain {
	struct event_loop *loop;
	uint64_t victim;
	int fired;
	int victim_fired;
	int rearmed;
};

static void victim_cb(struct event_loop *loop, uint64_t id, void *data)
{
	struct chain *ch = data;
	(void)loop;
	(void)id;
	ch->victim_fired++;
}

static void chain_cb(struct event_loop *loop, uint64_t id, void *data)
{
	struct chain *ch = data;
	ch->fired++;
	el_del_timer(loop, id); /* own id, already fired: no-op */
	el_del_timer(loop, ch->victim);
	if (ch->rearmed++ < 3)
		assert_true(el_add_timer(loop, 0, chain_cb, ch) > 0);
}

static void test_timer_callbacks_modify(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct chain ch = { .loop = loop };
	/* Same deadline, the canceller first: the victim is due but must not fire. */
	assert_true(el_add_timer(loop, 5, chain_cb, &ch) > 0);
	ch.victim = el_add_timer(loop, 5, victim_cb, &ch);
	assert_int_equal(run_for(loop, 50), 0);
	assert_int_equal(ch.victim_fired, 0);
	assert_int_equal(ch.fired, 4); /* first + three re-armed 0 ms timers */
	el_free(loop);
}

struct many_timers {
	uint64_t delay[4000];
	int order[4000];
	int n_fired;
};

struct mt_item {
	struct many_timers *mt;
	int idx;
	uint64_t not_before;
};

static void mt_cb(struct event_loop *loop, uint64_t id, void *data)
{
	struct mt_item *it = data;
	(void)loop;
	(void)id;
	assert_true(el_now_ms() >= it->not_before);
	it->mt->order[it->mt->n_fired++] = it->idx;
}

static void test_many_timers(void **state)
{
	(void)state;
	enum { N = 4000 };
	struct event_loop *loop = el_new();
	struct many_timers *mt = calloc(1, sizeof *mt);
	struct mt_item *items = calloc(N, sizeof *items);
	uint64_t *ids = calloc(N, sizeof *ids);
	assert_non_null(mt);
	assert_non_null(items);
	assert_non_null(ids);
	srand(7);
	uint64_t t0 = el_now_ms();
	for (int i = 0; i < N; i++) {
		mt->delay[i] = (uint64_t)(rand() % 60);
		items[i] = (struct mt_item){ mt, i, el_now_ms() + mt->delay[i] };
		ids[i] = el_add_timer(loop, mt->delay[i], mt_cb, &items[i]);
		assert_true(ids[i] > 0);
	}
	uint64_t spread = el_now_ms() - t0;
	int cancelled = 0;
	for (int i = 0; i < N; i += 3, cancelled++)
		el_del_timer(loop, ids[i]);
	assert_int_equal(run_for(loop, 150), 0);
	assert_int_equal(mt->n_fired, N - cancelled);
	for (int k = 0; k < mt->n_fired; k++) {
		assert_true(mt->order[k] % 3 != 0);
		/* Deadline order, give or take the time spent adding them. */
		if (k > 0)
			assert_true(mt->delay[mt->order[k - 1]] <=
				    mt->delay[mt->order[k]] + spread);
	}
	free(ids);
	free(items);
	free(mt);
	el_free(loop);
}

/* ---- signals ---- */

static void on_alarm(int sig)
{
	(void)sig;
}

static void test_eintr_tolerated(void **state)
{
	(void)state;
	struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART */
	struct sigaction old;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	struct itimerval it = { .it_value = { 0, 10000 }, .it_interval = { 0, 10000 } };
	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);

	struct event_loop *loop = el_new();
	uint64_t start = el_now_ms();
	assert_int_equal(run_for(loop, 100), 0);
	assert_true(el_now_ms() - start >= 100);

	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	el_free(loop);
}

/* ---- the before-sleep hook ---- */

struct hook_state {
	int calls;
	int events_seen_at_call; /* callbacks that had run when the hook last ran */
	int events;
	int again;    /* answer EL_AGAIN this many times */
	int leave_at; /* answer EL_LEAVE at this call (0: never) */
};

static void count_event_cb(struct event_loop *loop, int fd, void *data, int mask)
{
	struct hook_state *h = data;
	char buf[16];
	(void)loop;
	(void)mask;
	while (read(fd, buf, sizeof buf) > 0)
		;
	h->events++;
}

static int hook(struct event_loop *loop, void *data)
{
	struct hook_state *h = data;
	h->calls++;
	h->events_seen_at_call = h->events;
	if (h->leave_at && h->calls == h->leave_at)
		return EL_LEAVE;
	if (h->again > 0) {
		h->again--;
		return EL_AGAIN;
	}
	if (h->events > 0 && h->again == 0 && !h->leave_at)
		el_stop(loop);
	return EL_SLEEP;
}

static void test_before_sleep_after_events(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct hook_state h = { 0 };
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(el_add_fd(loop, p[0], EL_READ, count_event_cb, &h), 0);
	el_set_before_sleep(loop, hook, &h);
	assert_int_equal(write(p[1], "x", 1), 1);

	assert_int_equal(run_for(loop, 5000), 0);
	/* once on entry, then once after the pass that saw the event, which stopped it */
	assert_int_equal(h.calls, 2);
	assert_int_equal(h.events, 1);
	assert_int_equal(h.events_seen_at_call, 1);
	el_free(loop);
	close(p[0]);
	close(p[1]);
}

static int again_hook(struct event_loop *loop, void *data)
{
	struct hook_state *h = data;
	if (++h->calls == 6) {
		el_stop(loop);
		return EL_SLEEP;
	}
	return EL_AGAIN;
}

static void test_before_sleep_again_does_not_wait(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct hook_state h = { 0 };
	el_set_before_sleep(loop, again_hook, &h);
	/*
	 * Nothing but the hook's own EL_AGAIN answers brings it back: were the
	 * loop to wait, only this (far) deadline would end the run, and meson's
	 * timeout would fail the test first.
	 */
	assert_int_equal(run_for(loop, 600000), 0);
	assert_int_equal(h.calls, 6);
	el_free(loop);
}

static void test_before_sleep_leave(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct hook_state h = { .leave_at = 2 };
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(el_add_fd(loop, p[0], EL_READ, count_event_cb, &h), 0);
	el_set_before_sleep(loop, hook, &h);
	assert_int_equal(write(p[1], "x", 1), 1);

	/* the second hook call gives the loop away: el_run returns at once */
	assert_int_equal(el_run(loop), EL_RUN_LEFT);
	assert_int_equal(h.calls, 2);
	assert_int_equal(h.events, 1);
	/* whoever takes it over runs it on (here: until the deadline) */
	assert_int_equal(run_for(loop, 10), 0);
	assert_true(h.calls > 2);
	el_free(loop);
	close(p[0]);
	close(p[1]);
}

static void count_timer_cb(struct event_loop *loop, uint64_t id, void *data)
{
	(void)loop;
	(void)id;
	(*(int *)data)++;
}

static void test_run_pass(void **state)
{
	(void)state;
	struct event_loop *loop = el_new();
	struct hook_state h = { .again = 1 };
	int fired = 0;
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	assert_int_equal(el_add_fd(loop, p[0], EL_READ, count_event_cb, &h), 0);
	/* a far timer: a pass that waited for it would hang the test */
	assert_true(el_add_timer(loop, 600000, stop_cb, NULL) > 0);

	/* no hook, nothing ready: quiet */
	assert_int_equal(el_run_pass(loop), 0);

	el_set_before_sleep(loop, hook, &h);
	/* the hook's EL_AGAIN asks for another pass */
	assert_int_equal(el_run_pass(loop), 1);
	assert_int_equal(h.calls, 1);
	assert_int_equal(el_run_pass(loop), 0);
	assert_int_equal(h.calls, 2);

	/* a ready fd fires in the pass, and the hook sees it in the same pass */
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(el_run_pass(loop), 0);
	assert_int_equal(h.events, 1);
	assert_int_equal(h.calls, 3);
	assert_int_equal(h.events_seen_at_call, 1);
	assert_int_equal(el_run_pass(loop), 0);
	assert_int_equal(h.events, 1);

	/* a due timer fires in the pass (without the hook, which stops the loop
	 * once it has seen an event: a stop ends a pass's batch too) */
	el_set_before_sleep(loop, NULL, NULL);
	assert_true(el_add_timer(loop, 0, count_timer_cb, &fired) > 0);
	assert_int_equal(el_run_pass(loop), 0);
	assert_int_equal(fired, 1);
	assert_int_equal(el_run_pass(loop), 0);
	assert_int_equal(fired, 1);

	/* a hook that gives the loop away: -1, after the pass's events */
	el_set_before_sleep(loop, hook, &h);
	h.leave_at = h.calls + 1;
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(el_run_pass(loop), -1);
	assert_int_equal(h.events, 2);
	el_free(loop);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_readable),
		cmocka_unit_test(test_writable_and_mod),
		cmocka_unit_test(test_bad_registrations),
		cmocka_unit_test(test_hangup_delivered),
		cmocka_unit_test(test_delete_other_in_batch),
		cmocka_unit_test(test_fd_reuse_in_batch),
		cmocka_unit_test(test_delete_self),
		cmocka_unit_test(test_thousands_of_fds),
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_timer_cancel),
		cmocka_unit_test(test_timer_callbacks_modify),
		cmocka_unit_test(test_many_timers),
		cmocka_unit_test(test_eintr_tolerated),
		cmocka_unit_test(test_before_sleep_after_events),
		cmocka_unit_test(test_before_sleep_again_does_not_wait),
		cmocka_unit_test(test_before_sleep_leave),
		cmocka_unit_test(test_run_pass),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
