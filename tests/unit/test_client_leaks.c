/*
 * No leak for a full establish..release cycle: this program runs itself with
 * --cycle under valgrind --leak-check=full --error-exitcode=1 against a real
 * scardd. In an AddressSanitizer build valgrind cannot run the binary, so the
 * child runs directly and LeakSanitizer does the checking at its exit.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <winscard.h>
#include <reader.h>

#include "test_client_daemon.h"
#include "unit_support.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static struct test_daemon daemon_;

struct canceller {
	SCARDCONTEXT ctx;
	pid_t waiter;  /* the thread in SCardGetStatusChange */
	bool saw_wait; /* it blocked waiting before the cancel */
};

/* Cancels once the waiter is really waiting: a cancel sent before would
 * find nothing to cancel, and the INFINITE wait would never end. */
static void *cancel_when_waiting(void *arg)
{
	struct canceller *c = arg;

	c->saw_wait = test_thread_in_poll(c->waiter, 60000);
	SCardCancel(c->ctx);
	return NULL;
}

/* Every allocating path once: contexts, lists, AUTOALLOCATE, a card handle,
 * attributes, a wait and its cancel, failed calls. Returns the failures. */
static int cycle(void)
{
	SCARDCONTEXT ctx, ctx2;
	int fails = 0;

	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) != SCARD_S_SUCCESS)
		return 100;
	fails += SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx2) != SCARD_S_SUCCESS;
	DWORD len = SCARD_AUTOALLOCATE;
	char *readers = NULL;
	fails += SCardListReaders(ctx, NULL, (LPSTR)&readers, &len) != SCARD_S_SUCCESS;
	fails += SCardFreeMemory(ctx, readers) != SCARD_S_SUCCESS;
	len = SCARD_AUTOALLOCATE;
	fails += SCardListReaderGroups(ctx, (LPSTR)&readers, &len) != SCARD_S_SUCCESS;
	fails += SCardFreeMemory(ctx, readers) != SCARD_S_SUCCESS;
	SCARDHANDLE card;
	DWORD proto;
	fails += SCardConnect(ctx, TEST_READER1, SCARD_SHARE_DIRECT, 0, &card, &proto) !=
		 SCARD_S_SUCCESS;
	len = SCARD_AUTOALLOCATE;
	BYTE *attr = NULL;
	fails += SCardGetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME, (LPBYTE)&attr, &len) !=
		 SCARD_S_SUCCESS;
	fails += SCardFreeMemory(ctx, attr) != SCARD_S_SUCCESS;
	len = SCARD_AUTOALLOCATE;
	fails += SCardStatus(card, (LPSTR)&readers, &len, NULL, NULL, NULL, NULL) !=
		 SCARD_S_SUCCESS;
	fails += SCardFreeMemory(ctx, readers) != SCARD_S_SUCCESS;
	SCARD_READERSTATE rs[2];
	memset(rs, 0, sizeof(rs));
	rs[0].szReader = TEST_READER1;
	rs[1].szReader = "\\\\?PnP?\\Notification";
	fails += SCardGetStatusChange(ctx, 0, rs, 2) != SCARD_S_SUCCESS;
	rs[0].dwCurrentState = rs[0].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	rs[1].dwCurrentState = rs[1].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	struct canceller canceller = { .ctx = ctx, .waiter = test_gettid() };
	pthread_t t;
	pthread_create(&t, NULL, cancel_when_waiting, &canceller);
	fails += SCardGetStatusChange(ctx, INFINITE, rs, 2) != SCARD_E_CANCELLED;
	pthread_join(t, NULL);
	fails += !canceller.saw_wait;
	fails += SCardGetStatusChange(ctx, 50, rs, 2) != SCARD_E_TIMEOUT;
	fails += SCardConnect(ctx, "No Such Reader", SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY, &card,
			      &proto) != SCARD_E_UNKNOWN_READER;
	fails += SCardReleaseContext(ctx2) != SCARD_S_SUCCESS;
	/* released with the card handle still open: the library frees it too */
	fails += SCardReleaseContext(ctx) != SCARD_S_SUCCESS;
	return fails;
}

static int group_setup(void **state)
{
	(void)state;
	if (test_daemon_init(&daemon_) != 0 || !daemon_.with_readers ||
	    test_daemon_start(&daemon_) != 0) {
		print_error("needs scardd and the vpcd driver\n");
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

static int run_child(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void test_cycle_has_no_leak(void **state)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	(void)state;
	assert_true(n > 0);
	self[n] = '\0';
#ifdef UNDER_ASAN
	char *argv[] = { self, "--cycle", NULL };
	assert_int_equal(run_child(argv), 0);
#else
	if (access("/usr/bin/valgrind", X_OK) != 0)
		skip_because("missing-peer: valgrind (scripts/install-deps --tests installs it)");
	char *argv[] = { "valgrind",
			 "--quiet",
			 "--leak-check=full",
			 "--show-leak-kinds=definite,indirect,possible",
			 "--errors-for-leak-kinds=definite,indirect,possible",
			 "--error-exitcode=99",
			 self,
			 "--cycle",
			 NULL };
	assert_int_equal(run_child(argv), 0);
#endif
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cycle_has_no_leak),
	};

	if (argc > 1 && strcmp(argv[1], "--cycle") == 0) {
		int fails = cycle();

		if (fails != 0)
			fprintf(stderr, "cycle: %d call(s) failed\n", fails);
		return fails == 0 ? 0 : 1;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
