/* Unit tests: --apdu logging leaves PINs out. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "apdu_log.h"
#include "log.h"

static void test_what_is_shown(void **state)
{
	(void)state;
	static const uint8_t select[] = { 0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00 };
	static const uint8_t verify[] = { 0x00, 0x20, 0x00, 0x81, 0x04, '1', '2', '3', '4' };
	static const uint8_t verify_odd[] = { 0x00, 0x21, 0x00, 0x81, 0x03, 0x80, 0x01, 0x31 };
	static const uint8_t change[] = { 0x00, 0x24, 0x00, 0x81, 0x08, '1', '2',
					  '3',  '4',  '5',  '6',  '7',  '8' };
	static const uint8_t reset[] = { 0x00, 0x2C, 0x00, 0x81, 0x02, 0x99, 0x99 };
	static const uint8_t reset_odd[] = { 0x0C, 0x2D, 0x00, 0x81, 0x01, 0x99 };
	static const uint8_t extended[] = { 0x00, 0x20, 0x00, 0x81, 0x00, 0x00, 0x02, 0x31, 0x32 };
	static const uint8_t status_query[] = { 0x00, 0x20, 0x00, 0x81 }; /* tries left: no data */
	static const uint8_t with_le[] = { 0x00, 0x20, 0x00, 0x81, 0x00 };
	assert_int_equal(apdu_shown_bytes(select, sizeof(select)), sizeof(select));
	assert_int_equal(apdu_shown_bytes(verify, sizeof(verify)), 5);
	assert_int_equal(apdu_shown_bytes(verify_odd, sizeof(verify_odd)), 5);
	assert_int_equal(apdu_shown_bytes(change, sizeof(change)), 5);
	assert_int_equal(apdu_shown_bytes(reset, sizeof(reset)), 5);
	assert_int_equal(apdu_shown_bytes(reset_odd, sizeof(reset_odd)), 5);
	assert_int_equal(apdu_shown_bytes(extended, sizeof(extended)), 7);
	assert_int_equal(apdu_shown_bytes(status_query, sizeof(status_query)), 4);
	assert_int_equal(apdu_shown_bytes(with_le, sizeof(with_le)), 5);
	/* a malformed VERIFY hides everything after its header too */
	static const uint8_t junk[] = { 0x00, 0x20, 0x00, 0x81, 0x00, 0x31 };
	assert_int_equal(apdu_shown_bytes(junk, sizeof(junk)), 5);
}

/* What apdu_log_command writes to stderr (the log in the foreground). */
static char *logged(const uint8_t *apdu, size_t len)
{
	static char buf[1024];
	char path[] = "/tmp/scardd-apdu-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	apdu_log_command("", apdu, len);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void test_log_lines(void **state)
{
	(void)state;
	log_init("test", LOG_LEVEL_ERROR, true);
	log_set_apdu(true);
	static const uint8_t verify[] = { 0x00, 0x20, 0x00, 0x81, 0x04, 0x31, 0x32, 0x33, 0x34 };
	char *line = logged(verify, sizeof(verify));
	assert_non_null(strstr(line, "APDU (VERIFY, 4 data bytes not logged): 00 20 00 81 04\n"));
	assert_null(strstr(line, "31 32"));
	static const uint8_t select[] = { 0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00 };
	line = logged(select, sizeof(select));
	assert_non_null(strstr(line, "APDU: 00 A4 04 00 02 3F 00\n"));
	log_set_apdu(false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_what_is_shown),
		cmocka_unit_test(test_log_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
