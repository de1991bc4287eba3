/* Unit tests: --socket PATH[:OPTIONS] parsing and the peer sandbox guess. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "peer_info.h"
#include "socket_spec.h"

static void test_plain_path(void **state)
{
	struct socket_spec s;
	char err[128];
	(void)state;

	assert_true(socket_spec_parse("/run/pcscd/pcscd.comm", &s, err, sizeof(err)));
	assert_string_equal(s.path, "/run/pcscd/pcscd.comm");
	assert_int_equal(s.readers, 0); /* auto */
	assert_int_equal(s.name_len, 128);
	assert_string_equal(s.prefer, "");
	assert_int_equal(s.mode, 0666); /* pcscd's: every user may connect */
	assert_string_equal(s.group, "");
}

static void test_options(void **state)
{
	struct socket_spec s;
	char err[128], text[256];
	(void)state;

	assert_true(socket_spec_parse("/tmp/b.comm:readers=48", &s, err, sizeof(err)));
	assert_string_equal(s.path, "/tmp/b.comm");
	assert_int_equal(s.readers, 48);
	assert_true(socket_spec_parse("/tmp/c.comm:names=100,readers=auto,prefer=SIM 0*", &s, err,
				      sizeof(err)));
	assert_int_equal(s.readers, 0);
	assert_int_equal(s.name_len, 100);
	assert_string_equal(s.prefer, "SIM 0*");
	socket_spec_describe(&s, text, sizeof(text));
	assert_string_equal(text, "/tmp/c.comm (readers=auto, names=100, prefer=SIM 0*)");
	/* a ':' in the path is only a separator when options follow it */
	assert_true(socket_spec_parse("/tmp/a:b/x.comm", &s, err, sizeof(err)));
	assert_string_equal(s.path, "/tmp/a:b/x.comm");
	assert_true(socket_spec_parse("/tmp/a:b/x.comm:readers=16", &s, err, sizeof(err)));
	assert_string_equal(s.path, "/tmp/a:b/x.comm");
	assert_int_equal(s.readers, 16);
}

static void test_access_options(void **state)
{
	struct socket_spec s;
	char err[128], text[256];
	(void)state;

	assert_true(socket_spec_parse("/run/scard/users.comm:mode=0660,group=scard", &s, err,
				      sizeof(err)));
	assert_string_equal(s.path, "/run/scard/users.comm");
	assert_int_equal(s.mode, 0660);
	assert_string_equal(s.group, "scard");
	socket_spec_describe(&s, text, sizeof(text));
	assert_string_equal(text, "/run/scard/users.comm (readers=auto, mode=0660, group=scard)");
	/* three digits, a numeric group, beside the array options */
	assert_true(socket_spec_parse("/tmp/x.comm:readers=48,mode=600,group=1234", &s, err,
				      sizeof(err)));
	assert_int_equal(s.mode, 0600);
	assert_string_equal(s.group, "1234");
	assert_int_equal(s.readers, 48);
	socket_spec_describe(&s, text, sizeof(text));
	assert_string_equal(text, "/tmp/x.comm (readers=48, mode=0600, group=1234)");
	/* the default mode is not repeated in logs */
	assert_true(socket_spec_parse("/tmp/y.comm:mode=0666", &s, err, sizeof(err)));
	socket_spec_describe(&s, text, sizeof(text));
	assert_string_equal(text, "/tmp/y.comm (readers=auto)");
}

static void expect_error(const char *text, const char *message)
{
	struct socket_spec s;
	char err[256];

	assert_false(socket_spec_parse(text, &s, err, sizeof(err)));
	assert_non_null(strstr(err, message));
}

static void test_errors(void **state)
{
	char longpath[200];
	(void)state;

	expect_error("/tmp/a:readers=0", "readers= wants");
	expect_error("/tmp/a:readers=4097", "readers= wants");
	expect_error("/tmp/a:readers=-1", "readers= wants");
	expect_error("/tmp/a:readers=16x", "readers= wants");
	expect_error("/tmp/a:names=64", "names= wants");
	expect_error("/tmp/a:prefer=", "prefer= wants");
	expect_error("/tmp/a:colour=blue", "unknown socket option");
	expect_error("/tmp/a:readers=16,junk", "KEY=VALUE");
	expect_error(":readers=16", "empty socket path");
	expect_error("/tmp/a:mode=0668", "mode= wants octal");
	expect_error("/tmp/a:mode=01777", "mode= wants octal");
	expect_error("/tmp/a:mode=00660", "mode= wants octal");
	expect_error("/tmp/a:mode=rw", "mode= wants octal");
	expect_error("/tmp/a:mode=", "mode= wants octal");
	expect_error("/tmp/a:mode=-660", "mode= wants octal");
	expect_error("/tmp/a:group=", "group= wants");
	expect_error(
		"/tmp/a:group=a-group-name-that-is-far-too-long-for-any-system-to-have-it-1234",
		"group= wants");
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	expect_error(longpath, "too long");
}

static void test_sandbox_from_cgroup(void **state)
{
	char name[64];
	(void)state;

	assert_string_equal(peer_sandbox_from_cgroup(
				    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
				    "app-flatpak-org.example.Reader-12345.scope\n",
				    name, sizeof(name)),
			    "flatpak app");
	assert_string_equal(name, "org.example.Reader");
	assert_string_equal(peer_sandbox_from_cgroup(
				    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
				    "snap.firefox.firefox-1a2b.scope\n",
				    name, sizeof(name)),
			    "snap");
	assert_string_equal(name, "firefox");
	assert_string_equal(peer_sandbox_from_cgroup("0::/system.slice/docker-0123abcd.scope\n",
						     name, sizeof(name)),
			    "docker container");
	assert_string_equal(peer_sandbox_from_cgroup("0::/machine.slice/libpod-77aa.scope\n", name,
						     sizeof(name)),
			    "podman container");
	assert_null(peer_sandbox_from_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n",
					     name, sizeof(name)));
	assert_string_equal(name, "");
	/* a long id is cut, never overflows */
	assert_string_equal(
		peer_sandbox_from_cgroup(
			"0::/app-flatpak-org.example.AVeryLongApplicationIdentifierThatGoesOnAndOnAndOn"
			"AndOnForEver-1.scope",
			name, 16),
		"flatpak app");
	assert_int_equal(strlen(name), 15);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_path),          cmocka_unit_test(test_options),
		cmocka_unit_test(test_access_options),      cmocka_unit_test(test_errors),
		cmocka_unit_test(test_sandbox_from_cgroup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
