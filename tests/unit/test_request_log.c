/* Unit tests: the request log line (client, command, reader, result) and pcsc-lite's code names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <pcsclite.h>

#include "request_log.h"

static void test_rv_names(void **state)
{
	(void)state;
	assert_string_equal(request_log_rv_name(SCARD_S_SUCCESS), "SCARD_S_SUCCESS");
	assert_string_equal(request_log_rv_name((uint32_t)SCARD_E_NO_SMARTCARD),
			    "SCARD_E_NO_SMARTCARD");
	assert_string_equal(request_log_rv_name(0x8010000B), "SCARD_E_SHARING_VIOLATION");
	assert_string_equal(request_log_rv_name(0x80100069), "SCARD_W_REMOVED_CARD");
	assert_string_equal(request_log_rv_name(0x8010006F), "SCARD_W_CARD_NOT_AUTHENTICATED");
	/* one value, two names in pcsclite.h: the one pcsc-lite's daemon means */
	assert_string_equal(request_log_rv_name(0x8010001F), "SCARD_E_UNSUPPORTED_FEATURE");
	assert_null(request_log_rv_name(0x80100022)); /* Windows only */
	assert_null(request_log_rv_name(0x12345678));
	/* every pcsc-lite code from 0x80100001 to 0x80100031 has its name, but 0x22 */
	for (uint32_t rv = 0x80100001; rv <= 0x80100031; rv++) {
		const char *name = request_log_rv_name(rv);
		if (rv == 0x80100022)
			continue;
		assert_non_null(name);
		assert_true(strncmp(name, "SCARD_", 6) == 0);
	}
}

static void test_client(void **state)
{
	char buf[96];
	(void)state;
	request_log_client(buf, sizeof(buf), 7, 4242, 1000);
	assert_string_equal(buf, "client 7 (pid 4242, uid 1000)");
	request_log_client(buf, sizeof(buf), 7, -1, (uid_t)-1);
	assert_string_equal(buf, "client 7");
	request_log_client(buf, sizeof(buf), 7, 0, 0); /* pid 0: from another pid namespace */
	assert_string_equal(buf, "client 7 (uid 0)");
	request_log_client(buf, sizeof(buf), 7, 12, (uid_t)-1);
	assert_string_equal(buf, "client 7 (pid 12)");
}

static void test_line_with_reader_and_error(void **state)
{
	char buf[256];
	(void)state;
	struct request_line l = { .client = 3,
				  .pid = 4242,
				  .uid = 1000,
				  .cmd = "SCARD_CONNECT",
				  .reader = "Virtual PCD 00 00",
				  .has_rv = true,
				  .rv = (uint32_t)SCARD_E_NO_SMARTCARD };
	size_t n = request_log_line(buf, sizeof(buf), &l);
	assert_string_equal(buf,
			    "client 3 (pid 4242, uid 1000): SCARD_CONNECT reader \"Virtual PCD "
			    "00 00\": SCARD_E_NO_SMARTCARD (0x8010000C)");
	assert_int_equal(n, strlen(buf));
}

static void test_line_without_reader(void **state)
{
	char buf[256];
	(void)state;
	struct request_line l = { .client = 1,
				  .pid = 9,
				  .uid = 0,
				  .cmd = "SCARD_ESTABLISH_CONTEXT",
				  .reader = "",
				  .has_rv = true,
				  .rv = 0 };
	request_log_line(buf, sizeof(buf), &l);
	assert_string_equal(buf,
			    "client 1 (pid 9, uid 0): SCARD_ESTABLISH_CONTEXT: SCARD_S_SUCCESS "
			    "(0x00000000)");
}

static void test_line_outcomes(void **state)
{
	char buf[256];
	(void)state;
	struct request_line arr = { .client = 2,
				    .pid = 9,
				    .uid = 0,
				    .cmd = "CMD_GET_READERS_STATE",
				    .outcome = "16 reader records" };
	request_log_line(buf, sizeof(buf), &arr);
	assert_string_equal(buf,
			    "client 2 (pid 9, uid 0): CMD_GET_READERS_STATE: 16 reader records");

	struct request_line ver = { .client = 2,
				    .pid = 9,
				    .uid = 0,
				    .cmd = "CMD_VERSION",
				    .detail = "4:4",
				    .outcome = "served 4:4, big-endian, 16-record reader arrays",
				    .has_rv = true,
				    .rv = 0 };
	request_log_line(buf, sizeof(buf), &ver);
	assert_string_equal(buf,
			    "client 2 (pid 9, uid 0): CMD_VERSION 4:4: served 4:4, big-endian, "
			    "16-record reader arrays: SCARD_S_SUCCESS (0x00000000)");

	struct request_line odd = { .client = 2,
				    .pid = 9,
				    .uid = 0,
				    .cmd = "SCARD_CONTROL",
				    .reader = "R",
				    .has_rv = true,
				    .rv = 0x00000612 };
	request_log_line(buf, sizeof(buf), &odd);
	assert_string_equal(buf,
			    "client 2 (pid 9, uid 0): SCARD_CONTROL reader \"R\": unknown code "
			    "(0x00000612)");
}

/* A line longer than the buffer is cut, terminated, and its length is what was kept. */
static void test_line_cut(void **state)
{
	char buf[40];
	(void)state;
	memset(buf, 'x', sizeof(buf));
	struct request_line l = { .client = 3,
				  .pid = 4242,
				  .uid = 1000,
				  .cmd = "SCARD_CONNECT",
				  .reader = "A reader with a very long name indeed 00 00",
				  .has_rv = true,
				  .rv = 0 };
	size_t n = request_log_line(buf, sizeof(buf), &l);
	assert_int_equal(n, sizeof(buf) - 1);
	assert_int_equal(buf[sizeof(buf) - 1], '\0');
	assert_int_equal(strlen(buf), n);
	assert_true(strncmp(buf, "client 3 (pid 4242, uid 1000): SCARD_CO", n) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rv_names),
		cmocka_unit_test(test_client),
		cmocka_unit_test(test_line_with_reader_and_error),
		cmocka_unit_test(test_line_without_reader),
		cmocka_unit_test(test_line_outcomes),
		cmocka_unit_test(test_line_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
