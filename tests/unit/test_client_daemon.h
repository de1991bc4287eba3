/*
 * A real scardd for the client-library unit tests: started on a private
 * socket in a temp dir (with Debian's vpcd driver as two empty readers when
 * it is installed), PCSCLITE_CSOCK_NAME pointed at it, stopped by PID.
 */
#ifndef TEST_CLIENT_DAEMON_H
#define TEST_CLIENT_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

#define TEST_VPCD_DRIVER "/usr/lib/pcsc/drivers/serial/libifdvpcd.so.0.8"
#define TEST_READER0 "Virtual PCD 00 00"
#define TEST_READER1 "Virtual PCD 00 01"

struct test_daemon {
	char dir[64];
	char socket[128];
	char confdir[128];
	bool with_readers;
	pid_t pid;
};

/* Creates the temp dir and config, sets PCSCLITE_CSOCK_NAME; does not start. */
int test_daemon_init(struct test_daemon *d);
/* Starts scardd and waits until it answers (and lists its readers). */
int test_daemon_start(struct test_daemon *d);
/* SIGKILL (crash) or SIGTERM (clean stop); waits for the PID. */
void test_daemon_stop(struct test_daemon *d, bool crash);
/* Stops if running, removes the temp dir. */
void test_daemon_cleanup(struct test_daemon *d);
/* Milliseconds of CLOCK_MONOTONIC. */
long long test_now_ms(void);
/* The calling thread's id, for test_thread_in_poll(). */
pid_t test_gettid(void);
/*
 * Waits (up to timeout_ms) until thread tid of this process is blocked in
 * poll(): inside SCardGetStatusChange that means the library has registered
 * the wait with the daemon and sits waiting for its answer, so a cancel or a
 * daemon crash from now on must end that wait. False on timeout.
 */
bool test_thread_in_poll(pid_t tid, int timeout_ms);

#endif
