/*
 * ifd-virtual as a USB driver (vusb.c): the libudev device strings daemons
 * give it, and the configuration files that stand for an interface.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vusb.h"

static void test_parse(void **state)
{
	(void)state;
	struct vusb_device d;
	assert_true(vusb_parse("usb:1050/0407:libudev:2:/dev/bus/usb/001/012", &d));
	assert_int_equal(d.vendor, 0x1050);
	assert_int_equal(d.product, 0x0407);
	assert_int_equal(d.interface, 2);
	assert_int_equal(d.bus, 1);
	assert_int_equal(d.address, 12);
	assert_string_equal(d.node, "/dev/bus/usb/001/012");
	/* what pcscd prints: lower-case hex, any width */
	assert_true(vusb_parse("usb:8e6/3437:libudev:0:/dev/bus/usb/3/4", &d));
	assert_int_equal(d.vendor, 0x8e6);
	assert_int_equal(d.bus, 3);

	const char *bad[] = {
		"",
		"usb:",
		"usb:1050/0407",                                 /* libusb-style, no node */
		"usb:1050/0407:libusb-1.0:1:12:0",               /* not libudev's */
		"usb:10500/0407:libudev:0:/dev/bus/usb/001/002", /* id too wide */
		"usb:1050/0407:libudev:x:/dev/bus/usb/001/002",
		"usb:1050/0407:libudev:0:/tmp/001/002",
		"usb:1050/0407:libudev:0:/dev/bus/usb/001/002/x",
		"usb:1050/0407:libudev:999:/dev/bus/usb/001/002",
		"serial:/dev/ttyS0",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(vusb_parse(bad[i], &d));
	assert_true(vusb_is_usb("usb:x"));
	assert_false(vusb_is_usb("/etc/scardd/virtual.conf"));
	assert_false(vusb_is_usb(NULL));
}

static void test_paths(void **state)
{
	(void)state;
	char dir[VUSB_PATH_MAX];
	assert_false(vusb_dir_from_library("libifd-virtual.so", dir, sizeof(dir)));
	assert_false(
		vusb_dir_from_library("/x/t.bundle/Contents/Linux/libifd-virtual.so", dir, 20));
	assert_true(vusb_dir_from_library("/x/t.bundle/Contents/Linux/libifd-virtual.so", dir,
					  sizeof(dir)));
	assert_string_equal(dir, "/x/t.bundle/Contents/usb");

	struct vusb_device d;
	char paths[2][VUSB_PATH_MAX];
	assert_true(vusb_parse("usb:1209/000a:libudev:1:/dev/bus/usb/002/017", &d));
	assert_true(vusb_config_paths(dir, &d, paths));
	assert_string_equal(paths[0], "/x/t.bundle/Contents/usb/002-017-1.conf");
	assert_string_equal(paths[1], "/x/t.bundle/Contents/usb/1209-000a-1.conf");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
