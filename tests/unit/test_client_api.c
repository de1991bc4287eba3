/*
 * libpcsclite.so.1 API edge cases against a real scardd (no card needed):
 * NULL and invalid handles, short buffers with the required length returned,
 * SCARD_AUTOALLOCATE and SCardFreeMemory, timeouts, cancel, no daemon,
 * daemon crash and restart, threads, fork.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <winscard.h>
#include <reader.h>

#include "test_client_daemon.h"
#include "unit_support.h"

#define BOGUS ((SCARDCONTEXT)0x1234567)
#define PNP "\\\\?PnP?\\Notification"
#define READERS_LEN (sizeof(TEST_READER0) + sizeof(TEST_READER1) + 1)
#define NO_VPCD "missing-peer: Debian's vpcd driver (" TEST_VPCD_DRIVER ", vsmartcard-vpcd)"

static struct test_daemon daemon_;

static SCARDCONTEXT establish(void)
{
	SCARDCONTEXT ctx = 0;

	assert_int_equal(SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx),
			 SCARD_S_SUCCESS);
	assert_true(ctx != 0);
	return ctx;
}

static SCARDHANDLE connect_direct(SCARDCONTEXT ctx)
{
	SCARDHANDLE card = 0;
	DWORD proto = 99;

	assert_int_equal(SCardConnect(ctx, TEST_READER1, SCARD_SHARE_DIRECT, 0, &card, &proto),
			 SCARD_S_SUCCESS);
	assert_true(card != 0);
	return card;
}

static int group_setup(void **state)
{
	(void)state;
	if (test_daemon_init(&daemon_) != 0 || test_daemon_start(&daemon_) != 0) {
		print_error("could not start %s\n", SCARDD_TEST_BIN);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_daemon_cleanup(&daemon_);
	return 0;
}

static void test_no_daemon_is_no_service_at_once(void **state)
{
	SCARDCONTEXT ctx = 77;

	(void)state;
	setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/dir/pcscd.comm", 1);
	assert_int_equal(SCardEstablishContext(SCARD_SCOPE_USER, NULL, NULL, &ctx),
			 SCARD_E_NO_SERVICE);
	assert_int_equal(ctx, 0);
	setenv("PCSCLITE_CSOCK_NAME", daemon_.socket, 1);
}

static void test_null_and_invalid_handles(void **state)
{
	SCARD_IO_REQUEST pci = { SCARD_PROTOCOL_T1, sizeof(pci) };
	BYTE buf[16];
	DWORD len = sizeof(buf), proto;
	SCARDCONTEXT ctx;

	(void)state;
	assert_int_equal(SCardEstablishContext(SCARD_SCOPE_USER, NULL, NULL, NULL),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardEstablishContext(7, NULL, NULL, &ctx), SCARD_E_INVALID_VALUE);
	assert_int_equal(SCardIsValidContext(0), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardIsValidContext(BOGUS), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardReleaseContext(BOGUS), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardFreeMemory(BOGUS, NULL), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardCancel(BOGUS), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardListReaders(BOGUS, NULL, NULL, &len), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardListReaderGroups(BOGUS, NULL, &len), SCARD_E_INVALID_HANDLE);
	SCARDHANDLE card;
	assert_int_equal(SCardConnect(BOGUS, TEST_READER0, SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY,
				      &card, &proto),
			 SCARD_E_INVALID_HANDLE);
	SCARD_READERSTATE rs[17];
	memset(rs, 0, sizeof(rs));
	rs[0].szReader = TEST_READER0;
	assert_int_equal(SCardGetStatusChange(BOGUS, 0, rs, 1), SCARD_E_INVALID_HANDLE);

	/* every card call on a handle that does not exist */
	assert_int_equal(SCardReconnect(BOGUS, SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY,
					SCARD_LEAVE_CARD, &proto),
			 SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardDisconnect(BOGUS, SCARD_LEAVE_CARD), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardBeginTransaction(BOGUS), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardEndTransaction(BOGUS, SCARD_LEAVE_CARD), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardStatus(BOGUS, NULL, &len, NULL, NULL, NULL, NULL),
			 SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardTransmit(BOGUS, &pci, buf, 4, NULL, buf, &len),
			 SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardControl(BOGUS, CM_IOCTL_GET_FEATURE_REQUEST, NULL, 0, buf,
				      sizeof(buf), &len),
			 SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardGetAttrib(BOGUS, SCARD_ATTR_ATR_STRING, NULL, &len),
			 SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardSetAttrib(BOGUS, SCARD_ATTR_ATR_STRING, buf, 1),
			 SCARD_E_INVALID_HANDLE);

	/* NULL where a pointer is required: an error, never a crash */
	ctx = establish();
	assert_int_equal(SCardListReaders(ctx, NULL, NULL, NULL), SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardListReaderGroups(ctx, NULL, NULL), SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardConnect(ctx, TEST_READER0, SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY,
				      NULL, &proto),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardConnect(ctx, TEST_READER0, SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY,
				      &card, NULL),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardConnect(ctx, NULL, SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY, &card,
				      &proto),
			 SCARD_E_UNKNOWN_READER);
	assert_int_equal(SCardConnect(ctx, "No Such Reader 00 00", SCARD_SHARE_SHARED,
				      SCARD_PROTOCOL_ANY, &card, &proto),
			 SCARD_E_UNKNOWN_READER);
	assert_int_equal(SCardReconnect(BOGUS, SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY,
					SCARD_LEAVE_CARD, NULL),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardTransmit(BOGUS, NULL, buf, 4, NULL, buf, &len),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardTransmit(BOGUS, &pci, buf, 4, NULL, buf, NULL),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardGetAttrib(BOGUS, SCARD_ATTR_ATR_STRING, buf, NULL),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardSetAttrib(BOGUS, SCARD_ATTR_ATR_STRING, NULL, 1),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardSetAttrib(BOGUS, SCARD_ATTR_ATR_STRING, buf, 0),
			 SCARD_E_INVALID_PARAMETER);
	assert_int_equal(SCardGetStatusChange(ctx, 0, NULL, 1), SCARD_E_INVALID_PARAMETER);
	/* scardd speaks 4:6, which lifts pcsc-lite's 16-reader limit */
	memset(rs, 0, sizeof(rs));
	for (size_t i = 0; i < 17; i++)
		rs[i].szReader = PNP;
	assert_int_equal(SCardGetStatusChange(ctx, 0, rs, 17), SCARD_E_TIMEOUT);
	rs[0].szReader = NULL;
	assert_int_equal(SCardGetStatusChange(ctx, 0, rs, 1), SCARD_E_INVALID_VALUE);

	/* a released context is gone for good */
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
	assert_int_equal(SCardIsValidContext(ctx), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardReleaseContext(ctx), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardListReaders(ctx, NULL, NULL, &len), SCARD_E_INVALID_HANDLE);
}

static void test_list_readers_buffers(void **state)
{
	SCARDCONTEXT ctx = establish();
	DWORD len;

	(void)state;
	if (!daemon_.with_readers) {
		len = 0;
		assert_int_equal(SCardListReaders(ctx, NULL, NULL, &len),
				 SCARD_E_NO_READERS_AVAILABLE);
		SCardReleaseContext(ctx);
		skip_because(NO_VPCD);
	}
	len = 0;
	assert_int_equal(SCardListReaders(ctx, NULL, NULL, &len), SCARD_S_SUCCESS);
	assert_int_equal(len, READERS_LEN);
	len = 5;
	char buf[256];
	assert_int_equal(SCardListReaders(ctx, NULL, buf, &len), SCARD_E_INSUFFICIENT_BUFFER);
	assert_int_equal(len, READERS_LEN); /* the required length comes back */
	len = sizeof(buf);
	assert_int_equal(SCardListReaders(ctx, NULL, buf, &len), SCARD_S_SUCCESS);
	assert_int_equal(len, READERS_LEN);
	assert_memory_equal(buf, TEST_READER0 "\0" TEST_READER1 "\0", READERS_LEN);

	char *auto_buf = NULL;
	len = SCARD_AUTOALLOCATE;
	assert_int_equal(SCardListReaders(ctx, NULL, NULL, &len), SCARD_E_INVALID_PARAMETER);
	len = SCARD_AUTOALLOCATE;
	assert_int_equal(SCardListReaders(ctx, NULL, (LPSTR)&auto_buf, &len), SCARD_S_SUCCESS);
	assert_non_null(auto_buf);
	assert_int_equal(len, READERS_LEN);
	assert_memory_equal(auto_buf, buf, READERS_LEN);
	assert_int_equal(SCardFreeMemory(ctx, auto_buf), SCARD_S_SUCCESS);

	len = 4;
	assert_int_equal(SCardListReaderGroups(ctx, buf, &len), SCARD_E_INSUFFICIENT_BUFFER);
	assert_int_equal(len, 22);
	len = 0;
	assert_int_equal(SCardListReaderGroups(ctx, NULL, &len), SCARD_S_SUCCESS);
	assert_int_equal(len, 22);
	len = SCARD_AUTOALLOCATE;
	assert_int_equal(SCardListReaderGroups(ctx, (LPSTR)&auto_buf, &len), SCARD_S_SUCCESS);
	assert_memory_equal(auto_buf, "SCard$DefaultReaders\0", 22);
	assert_int_equal(SCardFreeMemory(ctx, auto_buf), SCARD_S_SUCCESS);
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
}

static void test_direct_handle_buffers(void **state)
{
	(void)state;
	if (!daemon_.with_readers)
		skip_because(NO_VPCD);
	SCARDCONTEXT ctx = establish();
	SCARDHANDLE card = connect_direct(ctx);

	/* SCardStatus: size query, short buffer, auto-allocation */
	DWORD len = 0, state_word = 99, proto = 99, atr_len = 99;
	assert_int_equal(SCardStatus(card, NULL, &len, &state_word, &proto, NULL, &atr_len),
			 SCARD_S_SUCCESS);
	assert_int_equal(len, sizeof(TEST_READER1));
	assert_int_equal(state_word & 0xFFFF, SCARD_ABSENT);
	assert_int_equal(atr_len, 0);
	len = 3;
	char name[128];
	assert_int_equal(SCardStatus(card, name, &len, NULL, NULL, NULL, NULL),
			 SCARD_E_INSUFFICIENT_BUFFER);
	assert_int_equal(len, sizeof(TEST_READER1));
	char *auto_name = NULL;
	len = SCARD_AUTOALLOCATE;
	assert_int_equal(SCardStatus(card, (LPSTR)&auto_name, &len, NULL, NULL, NULL, NULL),
			 SCARD_S_SUCCESS);
	assert_string_equal(auto_name, TEST_READER1);
	assert_int_equal(SCardFreeMemory(ctx, auto_name), SCARD_S_SUCCESS);

	/* SCardGetAttrib: the daemon answers the friendly name itself */
	len = 0;
	assert_int_equal(SCardGetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME, NULL, &len),
			 SCARD_S_SUCCESS);
	assert_int_equal(len, sizeof(TEST_READER1));
	len = 4;
	BYTE attr[300];
	assert_int_equal(SCardGetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME, attr, &len),
			 SCARD_E_INSUFFICIENT_BUFFER);
	assert_int_equal(len, sizeof(TEST_READER1));
	len = sizeof(attr); /* larger than the protocol's 264: still fine */
	assert_int_equal(SCardGetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME, attr, &len),
			 SCARD_S_SUCCESS);
	assert_string_equal((char *)attr, TEST_READER1);
	len = SCARD_AUTOALLOCATE;
	assert_int_equal(SCardGetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME, NULL, &len),
			 SCARD_E_INVALID_PARAMETER);
	BYTE *auto_attr = NULL;
	len = SCARD_AUTOALLOCATE;
	assert_int_equal(SCardGetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME, (LPBYTE)&auto_attr,
					&len),
			 SCARD_S_SUCCESS);
	assert_int_equal(len, sizeof(TEST_READER1));
	assert_string_equal((char *)auto_attr, TEST_READER1);
	assert_int_equal(SCardFreeMemory(ctx, auto_attr), SCARD_S_SUCCESS);
	assert_int_equal(SCardSetAttrib(card, SCARD_ATTR_VENDOR_NAME, attr, 300),
			 SCARD_E_INSUFFICIENT_BUFFER);

	/* oversized transmit/control are refused before anything is sent */
	len = sizeof(attr);
	assert_int_equal(SCardTransmit(card, SCARD_PCI_T1, attr, MAX_BUFFER_SIZE_EXTENDED + 1, NULL,
				       attr, &len),
			 SCARD_E_INSUFFICIENT_BUFFER);
	assert_int_equal(SCardControl(card, CM_IOCTL_GET_FEATURE_REQUEST, attr,
				      MAX_BUFFER_SIZE_EXTENDED + 1, attr, 8, &len),
			 SCARD_E_INSUFFICIENT_BUFFER);
	assert_int_equal(SCardEndTransaction(card, SCARD_LEAVE_CARD), SCARD_E_NOT_TRANSACTED);
	assert_int_equal(SCardDisconnect(card, SCARD_LEAVE_CARD), SCARD_S_SUCCESS);
	assert_int_equal(SCardDisconnect(card, SCARD_LEAVE_CARD), SCARD_E_INVALID_HANDLE);
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
}

static void test_status_change_timeouts(void **state)
{
	SCARD_READERSTATE rs[2];

	(void)state;
	if (!daemon_.with_readers)
		skip_because(NO_VPCD);
	SCARDCONTEXT ctx = establish();
	memset(rs, 0, sizeof(rs));
	rs[0].szReader = TEST_READER1;
	rs[0].dwCurrentState = SCARD_STATE_UNAWARE;
	assert_int_equal(SCardGetStatusChange(ctx, 0, rs, 1), SCARD_S_SUCCESS);
	assert_true(rs[0].dwEventState & SCARD_STATE_CHANGED);
	assert_true(rs[0].dwEventState & SCARD_STATE_EMPTY);

	/* nothing changes: timeout 0, then a real timeout */
	rs[0].dwCurrentState = rs[0].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	assert_int_equal(SCardGetStatusChange(ctx, 0, rs, 1), SCARD_E_TIMEOUT);
	assert_false(rs[0].dwEventState & SCARD_STATE_CHANGED);
	long long t0 = test_now_ms();
	assert_int_equal(SCardGetStatusChange(ctx, 250, rs, 1), SCARD_E_TIMEOUT);
	long long dt = test_now_ms() - t0;
	assert_true(dt >= 240); /* it waited: a lower bound no load can break */

	/* a different event counter is a change */
	rs[0].dwCurrentState = (rs[0].dwEventState & 0xFFFF) | (0x7777ul << 16);
	assert_int_equal(SCardGetStatusChange(ctx, 0, rs, 1), SCARD_S_SUCCESS);
	assert_true(rs[0].dwEventState & SCARD_STATE_CHANGED);

	/* the PnP pseudo reader alone: nothing to report, but (4:5 and up) the
	 * daemon's reader-events counter in the upper word ... */
	rs[1].szReader = PNP;
	rs[1].dwCurrentState = 0;
	assert_int_equal(SCardGetStatusChange(ctx, 0, &rs[1], 1), SCARD_E_TIMEOUT);
	assert_true((rs[1].dwEventState >> 16) != 0);
	/* ... which, handed back, is no change, and any other value is one */
	rs[1].dwCurrentState = rs[1].dwEventState;
	assert_int_equal(SCardGetStatusChange(ctx, 0, &rs[1], 1), SCARD_E_TIMEOUT);
	rs[1].dwCurrentState = (((rs[1].dwEventState >> 16) % 0x7FFF) + 1) << 16;
	assert_int_equal(SCardGetStatusChange(ctx, 0, &rs[1], 1), SCARD_S_SUCCESS);
	assert_true(rs[1].dwEventState & SCARD_STATE_CHANGED);

	/* unknown names, all ignored, none at all */
	rs[1].szReader = "No Such Reader 00 00";
	assert_int_equal(SCardGetStatusChange(ctx, 0, &rs[1], 1), SCARD_E_UNKNOWN_READER);
	rs[1].dwCurrentState = SCARD_STATE_IGNORE;
	assert_int_equal(SCardGetStatusChange(ctx, 0, &rs[1], 1), SCARD_S_SUCCESS);
	assert_int_equal(SCardGetStatusChange(ctx, INFINITE, NULL, 0), SCARD_S_SUCCESS);
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
}

/* Waiters are static: one that never returns (a failed test) must not
 * point into a stack frame cmocka has left. */
struct waiter {
	SCARDCONTEXT ctx;
	SCARD_READERSTATE rs;
	LONG rv;
	long long ended;
	volatile pid_t tid;
	pthread_t thread;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->tid = test_gettid();
	w->rv = SCardGetStatusChange(w->ctx, INFINITE, &w->rs, 1);
	w->ended = test_now_ms();
	return NULL;
}

/* Starts a thread waiting (INFINITE) for a change that will not come, and
 * returns once that wait is registered with the daemon (the thread blocks
 * in poll() for its answer). */
static void start_waiter(struct waiter *w, SCARDCONTEXT ctx)
{
	memset(w, 0, sizeof(*w));
	w->ctx = ctx;
	w->rs.szReader = TEST_READER1;
	assert_int_equal(SCardGetStatusChange(ctx, 0, &w->rs, 1), SCARD_S_SUCCESS);
	w->rs.dwCurrentState = w->rs.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	w->rv = 1;
	assert_int_equal(pthread_create(&w->thread, NULL, wait_thread, w), 0);
	for (long long deadline = test_now_ms() + 30000; w->tid == 0;) {
		assert_true(test_now_ms() < deadline);
		usleep(1000);
	}
	if (!test_thread_in_poll(w->tid, 30000))
		fail_msg("the waiting thread never blocked in SCardGetStatusChange's poll()");
	assert_int_equal(w->ended, 0); /* still waiting */
}

/* Joins a waiter that must have been woken; fails instead of hanging. */
static void join_waiter(struct waiter *w)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	if (pthread_timedjoin_np(w->thread, NULL, &until) != 0)
		fail_msg("SCardGetStatusChange still waits 30 s after it should have returned");
}

static void test_cancel_from_another_thread(void **state)
{
	static struct waiter w;

	(void)state;
	if (!daemon_.with_readers)
		skip_because(NO_VPCD);
	SCARDCONTEXT ctx = establish();
	assert_int_equal(SCardCancel(ctx), SCARD_S_SUCCESS); /* nobody waits: no-op */
	start_waiter(&w, ctx);
	assert_int_equal(SCardCancel(ctx), SCARD_S_SUCCESS);
	join_waiter(&w);
	assert_int_equal(w.rv, SCARD_E_CANCELLED);
	/* the context is fine afterwards */
	w.rs.dwCurrentState = w.rs.dwEventState;
	assert_int_equal(SCardGetStatusChange(ctx, 0, &w.rs, 1), SCARD_E_TIMEOUT);

	/* releasing a context wakes its waiter instead of blocking behind it */
	start_waiter(&w, ctx);
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
	join_waiter(&w);
	assert_int_equal(w.rv, SCARD_E_CANCELLED);
}

struct lister {
	SCARDCONTEXT ctx;
	int failures;
};

static void *list_thread(void *arg)
{
	struct lister *l = arg;

	for (int i = 0; i < 200; i++) {
		char buf[128];
		DWORD len = sizeof(buf);
		LONG rv = SCardListReaders(l->ctx, NULL, buf, &len);

		if (rv != SCARD_S_SUCCESS && rv != SCARD_E_NO_READERS_AVAILABLE)
			l->failures++;
	}
	return NULL;
}

static void test_threads_share_a_context(void **state)
{
	SCARDCONTEXT ctx = establish();
	struct lister l[8];
	pthread_t t[8];

	(void)state;
	for (int i = 0; i < 8; i++) {
		l[i].ctx = ctx;
		l[i].failures = 0;
		assert_int_equal(pthread_create(&t[i], NULL, list_thread, &l[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(l[i].failures, 0);
	}
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
}

static void test_daemon_restart_recovery(void **state)
{
	SCARDHANDLE card = 0;
	static struct waiter w;

	(void)state;
	SCARDCONTEXT ctx = establish();
	if (daemon_.with_readers) {
		card = connect_direct(ctx);
		start_waiter(&w, ctx);
	}

	/* the daemon crashes: a waiting call returns, nothing hangs */
	test_daemon_stop(&daemon_, true);
	DWORD len;
	if (daemon_.with_readers) {
		join_waiter(&w);
		assert_int_equal(w.rv, SCARD_E_NO_SERVICE);
		len = 0;
		assert_int_equal(SCardStatus(card, NULL, &len, NULL, NULL, NULL, NULL),
				 SCARD_E_NO_SERVICE);
	}
	len = 0;
	assert_int_equal(SCardListReaders(ctx, NULL, NULL, &len), SCARD_E_NO_SERVICE);
	SCARDCONTEXT other;
	assert_int_equal(SCardEstablishContext(SCARD_SCOPE_USER, NULL, NULL, &other),
			 SCARD_E_NO_SERVICE);
	assert_int_equal(SCardIsValidContext(ctx), SCARD_S_SUCCESS);

	/* it comes back: the same context works, the old card handle is stale */
	assert_int_equal(test_daemon_start(&daemon_), 0);
	len = 0;
	assert_int_equal(SCardListReaders(ctx, NULL, NULL, &len),
			 daemon_.with_readers ? SCARD_S_SUCCESS : SCARD_E_NO_READERS_AVAILABLE);
	if (daemon_.with_readers) {
		assert_int_equal(SCardStatus(card, NULL, &len, NULL, NULL, NULL, NULL),
				 SCARD_E_NO_SERVICE);
		assert_int_equal(SCardDisconnect(card, SCARD_LEAVE_CARD), SCARD_S_SUCCESS);
		assert_int_equal(SCardDisconnect(card, SCARD_LEAVE_CARD), SCARD_E_INVALID_HANDLE);
		card = connect_direct(ctx);
		assert_int_equal(SCardDisconnect(card, SCARD_LEAVE_CARD), SCARD_S_SUCCESS);
	}
	other = establish();
	assert_int_equal(SCardReleaseContext(other), SCARD_S_SUCCESS);
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
	if (!daemon_.with_readers) /* the checks with a card handle and a waiter did not run */
		skip_because(NO_VPCD);
}

static void test_fork_child_reconnects(void **state)
{
	(void)state;
	if (!daemon_.with_readers)
		skip_because(NO_VPCD);
	SCARDCONTEXT ctx = establish();
	SCARDHANDLE card = connect_direct(ctx);
	pid_t pid = fork();
	assert_true(pid >= 0);
	DWORD len;
	if (pid == 0) {
		int fails = 0;

		len = 0;
		fails |= (SCardIsValidContext(ctx) != SCARD_S_SUCCESS) << 0;
		fails |= (SCardListReaders(ctx, NULL, NULL, &len) != SCARD_S_SUCCESS) << 1;
		fails |= (SCardStatus(card, NULL, &len, NULL, NULL, NULL, NULL) !=
			  SCARD_E_INVALID_HANDLE)
			 << 2;
		/* releasing in the child must not release the parent's context */
		fails |= (SCardReleaseContext(ctx) != SCARD_S_SUCCESS) << 3;
		_exit(fails);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	len = 0;
	assert_int_equal(SCardStatus(card, NULL, &len, NULL, NULL, NULL, NULL), SCARD_S_SUCCESS);
	assert_int_equal(SCardDisconnect(card, SCARD_LEAVE_CARD), SCARD_S_SUCCESS);
	assert_int_equal(SCardReleaseContext(ctx), SCARD_S_SUCCESS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_daemon_is_no_service_at_once),
		cmocka_unit_test(test_null_and_invalid_handles),
		cmocka_unit_test(test_list_readers_buffers),
		cmocka_unit_test(test_direct_handle_buffers),
		cmocka_unit_test(test_status_change_timeouts),
		cmocka_unit_test(test_cancel_from_another_thread),
		cmocka_unit_test(test_threads_share_a_context),
		cmocka_unit_test(test_fork_child_reconnects),
		cmocka_unit_test(test_daemon_restart_recovery),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
