/*
 * The loop runner: a call that blocks while the loop's owner is inside it
 * is noticed and the loop handed to another thread, which keeps serving
 * events; the blocked thread learns it lost the loop when its call returns.
 * Nothing here depends on how fast anything runs: the blocked call returns
 * only because the loop, run by the other thread, writes to its pipe.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "event_loop.h"
#include "loop_runner.h"

struct scene {
	struct event_loop *loop;
	struct loop_runner *runner;
	int block[2]; /* the "driver" call reads one byte from block[0] */
	bool called;
	bool lost;
	pthread_t caller;
	pthread_t server;       /* the thread that ran the timer while the call blocked */
	int passes_after;       /* hook calls after the blocked call came back */
	bool read_ok, write_ok; /* (no cmocka asserts off the main thread) */
};

static int hook(struct event_loop *loop, void *data)
{
	struct scene *sc = data;
	(void)loop;
	if (sc->called) {
		sc->passes_after++;
		return EL_SLEEP;
	}
	sc->called = true;
	sc->caller = pthread_self();
	struct runner_call call;
	runner_call_begin(sc->runner, &call);
	char c;
	sc->read_ok = read(sc->block[0], &c, 1) == 1; /* blocks */
	sc->lost = !runner_call_end(sc->runner, &call);
	return sc->lost ? EL_LEAVE : EL_SLEEP;
}

static void stop_cb(struct event_loop *loop, uint64_t id, void *data)
{
	(void)id;
	(void)data;
	el_stop(loop);
}

/* Runs on whoever owns the loop once the blocked call was handed off. */
static void unblock_cb(struct event_loop *loop, uint64_t id, void *data)
{
	struct scene *sc = data;
	(void)id;
	sc->server = pthread_self();
	sc->write_ok = write(sc->block[1], "x", 1) == 1;
	/* stop once the lost thread has come back and a pass ran after it */
	el_add_timer(loop, 50, stop_cb, NULL);
}

static void test_blocked_call_hands_the_loop_over(void **state)
{
	(void)state;
	struct scene sc = { 0 };
	sc.loop = el_new();
	sc.runner = runner_new(sc.loop);
	assert_non_null(sc.runner);
	assert_int_equal(pipe(sc.block), 0);
	el_set_before_sleep(sc.loop, hook, &sc);
	el_add_timer(sc.loop, 1, unblock_cb, &sc);

	assert_int_equal(runner_run(sc.runner), 0);
	assert_true(sc.called);
	assert_true(sc.read_ok && sc.write_ok);
	assert_true(sc.lost);
	assert_int_equal(runner_handoffs(sc.runner), 1);
	assert_false(pthread_equal(sc.caller, sc.server));
	assert_true(sc.passes_after >= 1);
	assert_true(runner_free(sc.runner, 5000));
	el_free(sc.loop);
	close(sc.block[0]);
	close(sc.block[1]);
}

static void arm_block_cb(struct event_loop *loop, uint64_t id, void *data)
{
	struct scene *sc = data;
	(void)id;
	sc->called = false; /* the next pass's hook blocks */
	el_add_timer(loop, 1, unblock_cb, sc);
}

/* The monitor, asleep after a quiet second, wakes for the next call. */
static void test_monitor_wakes_after_idle(void **state)
{
	(void)state;
	struct scene sc = { 0 };
	sc.loop = el_new();
	sc.runner = runner_new(sc.loop);
	assert_non_null(sc.runner);
	assert_int_equal(pipe(sc.block), 0);
	el_set_before_sleep(sc.loop, hook, &sc);
	sc.called = true; /* no call at all until the monitor has gone to sleep */
	el_add_timer(sc.loop, 1500, arm_block_cb, &sc);

	assert_int_equal(runner_run(sc.runner), 0);
	assert_true(sc.lost);
	assert_int_equal(runner_handoffs(sc.runner), 1);
	assert_true(runner_free(sc.runner, 5000));
	el_free(sc.loop);
	close(sc.block[0]);
	close(sc.block[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blocked_call_hands_the_loop_over),
		cmocka_unit_test(test_monitor_wakes_after_idle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
