/*
 * Loading real IFD handlers. Drivers call log_msg/log_xxd from the host, so
 * this program must be linked with its symbols exported (-rdynamic), like
 * the daemon.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "driver.h"
#include "log.h"
#include "unit_support.h"

#define VPCD "/usr/lib/pcsc/drivers/serial/libifdvpcd.so.0.8"
#define VPCD_LINK "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void test_load_vpcd(void **state)
{
	(void)state;
	char err[256] = "";
	if (!exists(VPCD))
		skip_because("missing-peer: Debian's vpcd driver %s (vsmartcard-vpcd)", VPCD);
	struct driver *d = driver_load(VPCD, err, sizeof err);
	if (!d)
		fail_msg("%s", err);
	assert_int_equal(d->api_version, 3);
	assert_string_equal(d->path, VPCD);
	assert_int_equal(d->refs, 1);
	const struct ifd_ops *o = &d->ops;
	assert_non_null(o->create_channel_by_name);
	assert_non_null(o->create_channel);
	assert_non_null(o->close_channel);
	assert_non_null(o->get_capabilities);
	assert_non_null(o->set_capabilities);
	assert_non_null(o->set_protocol_parameters);
	assert_non_null(o->power_icc);
	assert_non_null(o->transmit_to_icc);
	assert_non_null(o->icc_presence);
	assert_non_null(o->control_v3);
	assert_null(o->control_v2);

	/* Another name for the same file shares the handle. */
	if (exists(VPCD_LINK)) {
		struct driver *d2 = driver_load(VPCD_LINK, err, sizeof err);
		assert_ptr_equal(d2, d);
		assert_int_equal(d->refs, 2);
		driver_unref(d2);
		assert_int_equal(d->refs, 1);
	}
	driver_unref(d);

	/* After the last unref a new load is a fresh one. */
	d = driver_load(VPCD, err, sizeof err);
	assert_non_null(d);
	assert_int_equal(d->refs, 1);
	driver_unref(d);
	driver_unref(NULL);
}

static void test_load_failures(void **state)
{
	(void)state;
	char err[256];

	err[0] = '\0';
	assert_null(driver_load("/nonexistent/libnothing.so", err, sizeof err));
	assert_non_null(strstr(err, "/nonexistent/libnothing.so"));
	assert_non_null(strstr(err, "No such file"));

	err[0] = '\0';
	assert_null(driver_load("/etc/hostname", err, sizeof err));
	assert_non_null(strstr(err, "cannot load driver"));

	err[0] = '\0';
	assert_null(driver_load("/tmp", err, sizeof err));
	assert_non_null(strstr(err, "not a regular file"));

	err[0] = '\0';
	assert_null(driver_load("", err, sizeof err));
	assert_true(err[0] != '\0');
	assert_null(driver_load(NULL, NULL, 0)); /* no error buffer: still safe */

	/* A real shared library that is not a driver: cmocka's own, which this
	 * program has loaded, so it is there wherever the test runs. */
	Dl_info lib;
	assert_true(dladdr((void *)_cmocka_run_group_tests, &lib) != 0);
	assert_non_null(lib.dli_fname);
	err[0] = '\0';
	assert_null(driver_load(lib.dli_fname, err, sizeof err));
	assert_non_null(strstr(err, "not an IFD handler"));
}

int main(void)
{
	/* Also pulls log.o, which provides the drivers' log_msg, into the link. */
	log_init("test_driver", LOG_LEVEL_ERROR, true);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_vpcd),
		cmocka_unit_test(test_load_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
