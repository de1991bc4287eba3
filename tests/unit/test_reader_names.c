/*
 * Reader names as pcscd 1.9.9 builds them (reader_names.c): USB names from
 * the friendly name, interface string and serial number, the XX YY suffix,
 * the cut at 121 characters, $PCSCLITE_FILTER_EXTEND_READER_NAMES and
 * $PCSCLITE_FILTER_IGNORE_READER_NAMES. The integration tests compare the
 * same names with Debian's pcscd on emulated USB devices.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reader_names.h"
#include "wire.h"

static void check_usb(const char *friendly, const char *iface, const char *serial, const char *want)
{
	char *name = reader_name_usb(friendly, iface, serial);
	assert_non_null(name);
	assert_string_equal(name, want);
	free(name);
}

static void test_usb_names(void **state)
{
	(void)state;
	check_usb("Yubico YubiKey OTP+FIDO+CCID", NULL, "1234567",
		  "Yubico YubiKey OTP+FIDO+CCID (1234567)");
	check_usb("Reader", "CCID", "A1", "Reader [CCID] (A1)");
	check_usb("Reader", "CCID", NULL, "Reader [CCID]");
	check_usb("Reader", NULL, NULL, "Reader");
	/* a serial number the interface string already shows is left out */
	check_usb("Gemalto Prox-DU", "Prox-DU Contact_09A00795", "09A00795",
		  "Gemalto Prox-DU [Prox-DU Contact_09A00795]");
	/* non-ASCII bytes of the interface become dots, one per byte; the serial
	 * number is left as it is, and compared with the interface as it was */
	check_usb("Reader", "Contactless \xc3\xa9", "\xc3\xa9X",
		  "Reader [Contactless ..] (\xc3\xa9X)");
	check_usb("Reader", "Contactless \xc3\xa9", "\xc3\xa9", "Reader [Contactless ..]");
	/* empty strings are present strings */
	check_usb("Reader", "", "", "Reader []");
	check_usb("Reader", NULL, "", "Reader ()");
}

static void test_build(void **state)
{
	(void)state;
	char out[WIRE_MAX_READERNAME];
	reader_name_build(out, sizeof(out), "Reader", NULL, 0, 0);
	assert_string_equal(out, "Reader 00 00");
	reader_name_build(out, sizeof(out), "Reader", NULL, 1, 3);
	assert_string_equal(out, "Reader 01 03");
	reader_name_build(out, sizeof(out), "Reader", NULL, 0x1AB, 0x10);
	assert_string_equal(out, "Reader AB 10");
	reader_name_build(out, sizeof(out), "Reader", " host1", 2, 1);
	assert_string_equal(out, "Reader host1 02 01");

	/* a long name is cut to 121 characters before " XX YY" */
	char longname[200];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	reader_name_build(out, sizeof(out), longname, NULL, 0, 1);
	assert_int_equal(strlen(out), READER_NAME_BASE_MAX + 6);
	assert_string_equal(out + READER_NAME_BASE_MAX, " 00 01");
	/* with an extension the whole is cut to the field, and the slot still
	 * replaces the last two characters (pcscd's arithmetic) */
	reader_name_build(out, sizeof(out), longname, "-ext-", 0, 2);
	assert_int_equal(strlen(out), WIRE_MAX_READERNAME - 1);
	assert_string_equal(out + WIRE_MAX_READERNAME - 3, "02");
}

static void test_ignored(void **state)
{
	(void)state;
	char pat[64];
	assert_false(reader_name_ignored("Reader [CCID]", NULL, pat, sizeof(pat)));
	assert_false(reader_name_ignored("Reader [CCID]", "", pat, sizeof(pat)));
	assert_false(reader_name_ignored("Reader [CCID]", ":::", pat, sizeof(pat)));
	assert_false(reader_name_ignored("Reader [CCID]", "Yubi:Gemalto", pat, sizeof(pat)));
	assert_true(reader_name_ignored("Yubico YubiKey", "Gemalto:Yubi", pat, sizeof(pat)));
	assert_string_equal(pat, "Yubi");
	assert_true(reader_name_ignored("Reader [CCID]", "::CCID", pat, sizeof(pat)));
	assert_string_equal(pat, "CCID");
	/* a pattern is a substring, case and all */
	assert_false(reader_name_ignored("Reader", "reader", pat, sizeof(pat)));
	assert_true(reader_name_ignored("Reader", "ead", pat, sizeof(pat)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usb_names),
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
