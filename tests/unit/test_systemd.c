/*
 * Unit tests: the sockets systemd passes and the notifications scardd sends,
 * built once per back-end (SYSTEMD_BACKEND: "native", scardd's own code for a
 * build without libsystemd, and "libsystemd" when the build has it). Each
 * case sets the environment as systemd would, with real sockets at fd 3 on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "options.h"
#include "systemd.h"
#include "systemd_proto.h"
#include "unit_support.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/scardd-sdtest-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_in_dir(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

/* A socket of type on dir/name (listening if asked), on a descriptor above 100. */
static int make_socket(int type, const char *name, bool listening)
{
	int fd = socket(AF_UNIX, type, 0);
	assert_true(fd >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	path_in_dir(a.sun_path, sizeof(a.sun_path), name);
	unlink(a.sun_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	if (listening)
		assert_int_equal(listen(fd, 8), 0);
	int high = fcntl(fd, F_DUPFD, 100);
	assert_true(high >= 100);
	close(fd);
	return high;
}

/* Puts fds at 3, 4, ... as systemd does, with LISTEN_PID (pid) and LISTEN_FDS. */
static void pass(const int *fds, int n, long pid, const char *names)
{
	for (int i = 0; i < n; i++) {
		/* a descriptor already there would be lost, and the test meaningless */
		assert_true(fcntl(SYSTEMD_FIRST_FD + i, F_GETFD) < 0);
		assert_int_equal(dup2(fds[i], SYSTEMD_FIRST_FD + i), SYSTEMD_FIRST_FD + i);
		close(fds[i]);
	}
	char text[32];
	snprintf(text, sizeof(text), "%ld", pid);
	setenv("LISTEN_PID", text, 1);
	snprintf(text, sizeof(text), "%d", n);
	setenv("LISTEN_FDS", text, 1);
	if (names)
		setenv("LISTEN_FDNAMES", names, 1);
	else
		unsetenv("LISTEN_FDNAMES");
}

static void close_passed(int n)
{
	for (int i = 0; i < n; i++)
		close(SYSTEMD_FIRST_FD + i);
}

static void assert_listen_env_gone(void)
{
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
}

static void test_nothing_passed(void **state)
{
	(void)state;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	struct inherited_socket out[4];
	assert_int_equal(systemd_take_sockets(out, 4), 0);
}

static void test_two_sockets_with_names(void **state)
{
	(void)state;
	int fds[2] = { make_socket(SOCK_STREAM, "a.comm", true),
		       make_socket(SOCK_STREAM, "b.comm", true) };
	pass(fds, 2, (long)getpid(), "first:second");
	struct inherited_socket out[4];
	assert_int_equal(systemd_take_sockets(out, 4), 2);
	char want[128];
	path_in_dir(want, sizeof(want), "a.comm");
	assert_int_equal(out[0].fd, 3);
	assert_string_equal(out[0].path, want);
	assert_string_equal(out[0].name, "first");
	path_in_dir(want, sizeof(want), "b.comm");
	assert_int_equal(out[1].fd, 4);
	assert_string_equal(out[1].path, want);
	assert_string_equal(out[1].name, "second");
	for (int i = 0; i < 2; i++) {
		/* nothing a driver starts inherits them; accept never blocks the loop */
		assert_true(fcntl(out[i].fd, F_GETFD) & FD_CLOEXEC);
		assert_true(fcntl(out[i].fd, F_GETFL) & O_NONBLOCK);
	}
	assert_listen_env_gone();
	close_passed(2);
}

static void test_names_missing(void **state)
{
	(void)state;
	int fds[1] = { make_socket(SOCK_STREAM, "a.comm", true) };
	pass(fds, 1, (long)getpid(), NULL);
	struct inherited_socket out[1];
	assert_int_equal(systemd_take_sockets(out, 1), 1);
	assert_string_equal(out[0].name, "");
	close_passed(1);
}

static void test_another_process_sockets(void **state)
{
	(void)state;
	int fds[1] = { make_socket(SOCK_STREAM, "a.comm", true) };
	pass(fds, 1, (long)getpid() + 1, "x");
	struct inherited_socket out[1];
	assert_int_equal(systemd_take_sockets(out, 1), 0);
	assert_listen_env_gone();
	/* not ours: left as it was, open and without close-on-exec */
	assert_int_equal(fcntl(SYSTEMD_FIRST_FD, F_GETFD) & FD_CLOEXEC, 0);
	close_passed(1);
}

static void test_unservable_sockets(void **state)
{
	(void)state;
	struct inherited_socket out[2];
	int dgram[1] = { make_socket(SOCK_DGRAM, "d.sock", false) };
	pass(dgram, 1, (long)getpid(), NULL);
	assert_int_equal(systemd_take_sockets(out, 2), -1);
	assert_listen_env_gone();
	close_passed(1);

	int idle[1] = { make_socket(SOCK_STREAM, "idle.comm", false) };
	pass(idle, 1, (long)getpid(), NULL);
	assert_int_equal(systemd_take_sockets(out, 2), -1);
	close_passed(1);

	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	close(pipefd[1]);
	int high = fcntl(pipefd[0], F_DUPFD, 100);
	close(pipefd[0]);
	pass(&high, 1, (long)getpid(), NULL);
	assert_int_equal(systemd_take_sockets(out, 2), -1);
	close_passed(1);
}

static void test_more_than_served(void **state)
{
	(void)state;
	int fds[3] = { make_socket(SOCK_STREAM, "a.comm", true),
		       make_socket(SOCK_STREAM, "b.comm", true),
		       make_socket(SOCK_STREAM, "c.comm", true) };
	pass(fds, 3, (long)getpid(), "a:b:c");
	struct inherited_socket out[2];
	assert_int_equal(systemd_take_sockets(out, 2), -1);
	assert_listen_env_gone();
	close_passed(3);
}

static void add_option(struct options *o, const char *text)
{
	char err[128];
	assert_true(socket_spec_parse(text, &o->sockets[o->n_sockets++], err, sizeof(err)));
	o->sockets_given = true;
}

static struct inherited_socket inherited(int fd, const char *name)
{
	struct inherited_socket s = { .fd = fd };
	path_in_dir(s.path, sizeof(s.path), name);
	return s;
}

static void test_match_without_socket_options(void **state)
{
	(void)state;
	struct options o;
	memset(&o, 0, sizeof(o));
	assert_true(socket_spec_default(&o.sockets[0], "/run/pcscd/pcscd.comm"));
	o.n_sockets = 1; /* the default path: systemd's sockets replace it */
	struct inherited_socket inh[2] = { inherited(3, "a.comm"), inherited(4, "b.comm") };
	int fd_of[OPTIONS_MAX_SOCKETS];
	assert_true(systemd_match_sockets(&o, inh, 2, fd_of));
	assert_int_equal(o.n_sockets, 2);
	assert_string_equal(o.sockets[0].path, inh[0].path);
	assert_string_equal(o.sockets[1].path, inh[1].path);
	assert_int_equal(fd_of[0], 3);
	assert_int_equal(fd_of[1], 4);
	assert_int_equal(o.sockets[1].mode, 0666);
	assert_int_equal(o.sockets[1].readers, 0);
}

static void test_match_by_path_and_by_file(void **state)
{
	(void)state;
	/* b.comm exists, reached through a link to the directory too */
	close(make_socket(SOCK_STREAM, "b.comm", true));
	char link[128], via_link[160], text[200];
	path_in_dir(link, sizeof(link), "link");
	unlink(link);
	assert_int_equal(symlink(dir, link), 0);
	snprintf(via_link, sizeof(via_link), "%s/b.comm", link);

	struct options o;
	memset(&o, 0, sizeof(o));
	snprintf(text, sizeof(text), "%s:readers=48", via_link);
	add_option(&o, text);
	char own[128];
	path_in_dir(own, sizeof(own), "own.comm"); /* not passed: scardd binds it */
	add_option(&o, own);
	struct inherited_socket inh[3] = { inherited(3, "a.comm"), inherited(4, "b.comm"),
					   inherited(5, "c.comm") };
	int fd_of[OPTIONS_MAX_SOCKETS];
	assert_true(systemd_match_sockets(&o, inh, 3, fd_of));
	assert_int_equal(o.n_sockets, 4);
	assert_int_equal(fd_of[0], 4); /* the same file: its options kept */
	assert_int_equal(o.sockets[0].readers, 48);
	assert_int_equal(fd_of[1], -1);
	assert_string_equal(o.sockets[1].path, own);
	/* passed, named by no --socket: served with default options */
	assert_int_equal(fd_of[2], 3);
	assert_string_equal(o.sockets[2].path, inh[0].path);
	assert_int_equal(fd_of[3], 5);
	assert_int_equal(o.sockets[3].readers, 0);
}

static void test_match_too_many(void **state)
{
	(void)state;
	struct options o;
	memset(&o, 0, sizeof(o));
	char name[32], path[128];
	for (unsigned i = 0; i < OPTIONS_MAX_SOCKETS; i++) {
		snprintf(name, sizeof(name), "own%u.comm", i);
		path_in_dir(path, sizeof(path), name);
		add_option(&o, path);
	}
	struct inherited_socket inh[1] = { inherited(3, "a.comm") };
	int fd_of[OPTIONS_MAX_SOCKETS];
	assert_false(systemd_match_sockets(&o, inh, 1, fd_of));
}

/* A datagram socket on addr (a path, or "@name"): what $NOTIFY_SOCKET names. */
static int notify_listener(const char *value)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t len = strlen(value);
	memcpy(a.sun_path, value, len);
	if (value[0] == '@')
		a.sun_path[0] = '\0';
	assert_int_equal(bind(fd, (struct sockaddr *)&a,
			      offsetof(struct sockaddr_un, sun_path) + len),
			 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void assert_message(int fd, const char *want)
{
	char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void notify_round(const char *value)
{
	int fd = notify_listener(value);
	setenv("NOTIFY_SOCKET", value, 1);
	systemd_notify_init();
	systemd_notify_ready(2, 1, false);
	assert_message(fd, "READY=1\nSTATUS=Serving 2 reader(s) on 1 socket(s)");
	systemd_notify_ready(0, 3, true);
	char want[128];
	snprintf(want, sizeof(want),
		 "READY=1\nMAINPID=%d\nSTATUS=Serving 0 reader(s) on 3 socket(s)", (int)getpid());
	assert_message(fd, want);
	systemd_notify_stopping();
	assert_message(fd, "STOPPING=1\nSTATUS=Stopping");
	/* gone once the last message is out, whichever back-end */
	assert_null(getenv("NOTIFY_SOCKET"));
	close(fd);
}

static void test_notify_on_a_path(void **state)
{
	(void)state;
	char path[128];
	path_in_dir(path, sizeof(path), "notify");
	notify_round(path);
}

static void test_notify_abstract(void **state)
{
	(void)state;
	char name[64];
	snprintf(name, sizeof(name), "@scardd-sdtest-%d", (int)getpid());
	notify_round(name);
}

static void test_notify_without_socket(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	systemd_notify_init();
	assert_int_equal(systemd_proto_notify("READY=1", false), 0);
}

static void test_backend(void **state)
{
	(void)state;
	/* the program tests the back-end its name says */
	assert_string_equal(systemd_proto_name,
			    strcmp(SYSTEMD_BACKEND, "native") ? "libsystemd" : "built-in");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backend),
		cmocka_unit_test(test_nothing_passed),
		cmocka_unit_test(test_two_sockets_with_names),
		cmocka_unit_test(test_names_missing),
		cmocka_unit_test(test_another_process_sockets),
		cmocka_unit_test(test_unservable_sockets),
		cmocka_unit_test(test_more_than_served),
		cmocka_unit_test(test_match_without_socket_options),
		cmocka_unit_test(test_match_by_path_and_by_file),
		cmocka_unit_test(test_match_too_many),
		cmocka_unit_test(test_notify_on_a_path),
		cmocka_unit_test(test_notify_abstract),
		cmocka_unit_test(test_notify_without_socket),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
