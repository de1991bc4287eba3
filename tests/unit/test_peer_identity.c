/*
 * Unit tests: who a client is, read from a /proc made in a temporary
 * directory (PROC/PID/exe, cgroup, attr, ns, root, mountinfo), and from a
 * real socket pair for the kernel's part.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "peer_identity.h"
#include "unit_support.h"

#define PID 4242

static char proc[256];

static void write_file(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", proc, rel);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void mkdir_rel(const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", proc, rel);
	assert_int_equal(mkdir(path, 0755), 0);
}

static void link_rel(const char *target, const char *rel)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", proc, rel);
	unlink(path);
	assert_int_equal(symlink(target, path), 0);
}

static void remove_tree(const char *path)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	assert_int_equal(system(cmd), 0);
}

/* A process PID on the host: same namespaces as PROC/self, exe /usr/bin/app. */
static int setup(void **state)
{
	(void)state;
	snprintf(proc, sizeof(proc), "/tmp/scardd-proc-XXXXXX");
	if (!mkdtemp(proc))
		return -1;
	mkdir_rel("self");
	mkdir_rel("self/ns");
	link_rel("pid:[4026531836]", "self/ns/pid");
	link_rel("mnt:[4026531832]", "self/ns/mnt");
	link_rel("user:[4026531837]", "self/ns/user");
	mkdir_rel("4242");
	mkdir_rel("4242/ns");
	mkdir_rel("4242/attr");
	mkdir_rel("4242/root");
	link_rel("pid:[4026531836]", "4242/ns/pid");
	link_rel("mnt:[4026531832]", "4242/ns/mnt");
	link_rel("user:[4026531837]", "4242/ns/user");
	link_rel("/usr/bin/app", "4242/exe");
	write_file("4242/cgroup", "0::/user.slice/user-1000.slice/session-2.scope\n");
	write_file("4242/attr/current", "unconfined\n");
	write_file("4242/mountinfo", "");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	remove_tree(proc);
	return 0;
}

static void read_peer(struct peer_identity *id)
{
	static const gid_t groups[] = { 27, 100 };
	peer_identity_read_proc(id, proc, PID, 1000, 1000, groups, 2, -1, 0);
}

/* Makes PROC/4242/root/.flatpak-info and a mountinfo naming its mount's type. */
static void flatpak_info(const char *text, const char *fs_type)
{
	write_file("4242/root/.flatpak-info", text);
	char path[512];
	snprintf(path, sizeof(path), "%s/4242/root/.flatpak-info", proc);
	struct statx stx;
	assert_int_equal(statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx), 0);
	assert_true(stx.stx_mask & STATX_MNT_ID);
	char mountinfo[512];
	snprintf(mountinfo, sizeof(mountinfo),
		 "1 0 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
		 "%llu 1 0:42 / /.flatpak-info ro,nosuid shared:7 - %s none rw\n",
		 (unsigned long long)stx.stx_mnt_id, fs_type);
	write_file("4242/mountinfo", mountinfo);
}

static void test_host_process(void **state)
{
	(void)state;
	struct peer_identity id;
	read_peer(&id);
	assert_int_equal(id.pid, PID);
	assert_int_equal(id.uid, 1000);
	assert_false(id.gone);
	assert_string_equal(id.exe, "/usr/bin/app");
	assert_int_equal(id.sandbox, PEER_HOST);
	assert_null(id.app);
	assert_int_equal(id.n_groups, 2);
	assert_true(peer_identity_in_group(&id, 1000)); /* its own group */
	assert_true(peer_identity_in_group(&id, 100));
	assert_false(peer_identity_in_group(&id, 0));
	char line[256];
	peer_identity_format(&id, line, sizeof(line));
	assert_string_equal(line, "pid 4242 uid 1000 gid 1000 exe /usr/bin/app");
	peer_identity_clear(&id);
}

static void test_flatpak_info(void **state)
{
	(void)state;
	struct peer_identity id;
	flatpak_info("[Application]\nname=org.example.Reader\nruntime=runtime/org.gnome.Platform\n"
		     "\n[Instance]\ninstance-id=123\n",
		     "tmpfs");
	/* the sandbox has namespaces of its own: the file says more than they do */
	link_rel("mnt:[4026532999]", "4242/ns/mnt");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_string_equal(id.app, "org.example.Reader");
	char line[256];
	peer_identity_format(&id, line, sizeof(line));
	assert_string_equal(
		line, "pid 4242 uid 1000 gid 1000 exe /usr/bin/app, flatpak org.example.Reader");
	peer_identity_clear(&id);
}

/* A FUSE file system could keep the daemon waiting: the file is not read, yet tells. */
static void test_flatpak_info_on_untrusted_fs(void **state)
{
	(void)state;
	struct peer_identity id;
	flatpak_info("[Application]\nname=org.example.Reader\n", "fuse.sshfs");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_null(id.app);
	peer_identity_clear(&id);

	/* with systemd's scope naming the app, that name is taken */
	write_file("4242/cgroup", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
				  "app-flatpak-org.example.Other-7781.scope\n");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_string_equal(id.app, "org.example.Other");
	peer_identity_clear(&id);

	/* a mount not in mountinfo at all is not trusted either */
	write_file("4242/cgroup", "0::/\n");
	write_file("4242/mountinfo", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_null(id.app);
	peer_identity_clear(&id);
}

static void test_flatpak_info_hostile(void **state)
{
	(void)state;
	struct peer_identity id;
	/* an app id with a shell's worth of punctuation is no app id */
	flatpak_info("[Application]\nname=org.x;rm -rf\n", "tmpfs");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_null(id.app);
	peer_identity_clear(&id);

	/* a directory where the file would be */
	char path[512];
	snprintf(path, sizeof(path), "%s/4242/root/.flatpak-info", proc);
	unlink(path);
	mkdir_rel("4242/root/.flatpak-info");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_null(id.app);
	peer_identity_clear(&id);
	rmdir(path);

	/* too large to be flatpak's */
	char *big = malloc(70000);
	assert_non_null(big);
	memset(big, 'a', 69999);
	big[69999] = '\0';
	memcpy(big, "[Application]\nname=org.big.App\n", 31);
	flatpak_info(big, "tmpfs");
	free(big);
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_null(id.app);
	peer_identity_clear(&id);
}

/* The tail of an overlong mountinfo line must not pass for a line of its own. */
static void test_mountinfo_overlong_line(void **state)
{
	(void)state;
	flatpak_info("[Application]\nname=org.example.Reader\n", "fuse.evil");
	char path[512];
	snprintf(path, sizeof(path), "%s/4242/root/.flatpak-info", proc);
	struct statx stx;
	assert_int_equal(statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx), 0);
	char tail[128];
	int n = snprintf(tail, sizeof(tail), "%llu 1 0:1 / /x rw - tmpfs none rw\n",
			 (unsigned long long)stx.stx_mnt_id);
	/* A mount point filling the reader's 8192-byte buffer, then what looks
	 * like a tmpfs line for our mount, at the start of the next read. */
	size_t len = 8192 + (size_t)n + 200;
	char *text = malloc(len);
	assert_non_null(text);
	char *p = text + sprintf(text, "99 1 0:9 / /");
	memset(p, 'a', 8192 - (size_t)(p - text));
	p = text + 8192;
	memcpy(p, tail, (size_t)n);
	p += n;
	p += sprintf(p, "%llu 1 0:42 / /.flatpak-info ro - fuse.evil none rw\n",
		     (unsigned long long)stx.stx_mnt_id);
	*p = '\0';
	write_file("4242/mountinfo", text);
	free(text);
	struct peer_identity id;
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_FLATPAK);
	assert_null(id.app); /* not read: the real line says fuse */
	peer_identity_clear(&id);
}

static void test_app_id_parser(void **state)
{
	(void)state;
	char app[256];
	const char *ok = "[Runtime]\nname=org.gnome.Platform\n[Application]\r\nname = org.a.B \r\n";
	assert_true(peer_flatpak_app_id(ok, strlen(ok), app, sizeof(app)));
	assert_string_equal(app, "org.a.B");
	const char *runtime_only = "[Runtime]\nname=org.gnome.Platform\n";
	assert_false(peer_flatpak_app_id(runtime_only, strlen(runtime_only), app, sizeof(app)));
	const char *names = "[Application]\nnamespace=x\nname=org.a.C\n";
	assert_true(peer_flatpak_app_id(names, strlen(names), app, sizeof(app)));
	assert_string_equal(app, "org.a.C");
	const char *empty = "[Application]\nname=\n";
	assert_false(peer_flatpak_app_id(empty, strlen(empty), app, sizeof(app)));
	/* no NUL needed, none read beyond len */
	const char cut[] = { '[', 'A', 'p',  'p', 'l', 'i', 'c', 'a', 't', 'i', 'o',
			     'n', ']', '\n', 'n', 'a', 'm', 'e', '=', 'o', '.', 'p' };
	assert_true(peer_flatpak_app_id(cut, sizeof(cut), app, sizeof(app)));
	assert_string_equal(app, "o.p");
	assert_false(peer_flatpak_app_id(cut, sizeof(cut), app, 3)); /* does not fit */
}

static void test_snap(void **state)
{
	(void)state;
	struct peer_identity id;
	write_file("4242/cgroup", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
				  "snap.firefox.firefox-1234.scope\n");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_SNAP);
	assert_string_equal(id.app, "firefox");
	peer_identity_clear(&id);

	/* without a snap cgroup, snapd's AppArmor label tells */
	write_file("4242/cgroup", "0::/\n");
	write_file("4242/attr/current", "snap.chromium.chromium (enforce)\n");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_SNAP);
	assert_string_equal(id.app, "chromium");
	peer_identity_clear(&id);

	write_file("4242/attr/current", "snap.\n");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_HOST);
	peer_identity_clear(&id);
}

static void test_containers(void **state)
{
	(void)state;
	struct peer_identity id;
	write_file("4242/cgroup", "0::/system.slice/docker-0123abcd.scope\n");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_CONTAINER);
	assert_string_equal(id.container, "docker");
	peer_identity_clear(&id);

	write_file("4242/cgroup", "0::/machine.slice/systemd-nspawn@deb.service/payload\n");
	read_peer(&id);
	assert_string_equal(id.container, "nspawn");
	peer_identity_clear(&id);

	/* no manager named: a pid namespace of its own is enough */
	write_file("4242/cgroup", "0::/\n");
	link_rel("pid:[4026532100]", "4242/ns/pid");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_CONTAINER);
	assert_string_equal(id.container, "namespaces");
	char line[256];
	peer_identity_format(&id, line, sizeof(line));
	assert_string_equal(line,
			    "pid 4242 uid 1000 gid 1000 exe /usr/bin/app, container namespaces");
	peer_identity_clear(&id);

	/* PID 1's namespaces, when they can be read, are the reference */
	mkdir_rel("1");
	mkdir_rel("1/ns");
	link_rel("pid:[4026532100]", "1/ns/pid");
	link_rel("mnt:[4026531832]", "1/ns/mnt");
	link_rel("user:[4026531837]", "1/ns/user");
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_HOST);
	peer_identity_clear(&id);
}

static void test_gone(void **state)
{
	(void)state;
	struct peer_identity id;
	peer_identity_read_proc(&id, proc, 4343, 1000, 1000, NULL, 0, -1, 0);
	assert_true(id.gone);
	assert_null(id.exe);
	char line[256];
	peer_identity_format(&id, line, sizeof(line));
	assert_string_equal(line, "pid 4343 uid 1000 gid 1000, gone before it could be seen");
	peer_identity_clear(&id);

	peer_identity_read_proc(&id, proc, 0, 1000, 1000, NULL, 0, -1, 0);
	assert_true(id.gone);
	peer_identity_clear(&id);

	/* A process that left after connecting: /proc may show another by now. */
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	if (pidfd < 0)
		skip_because("environment: no pidfd_open (Linux 5.3)");
	waitpid(child, NULL, 0);
	write_file("4242/cgroup", "0::/system.slice/docker-0123abcd.scope\n");
	peer_identity_read_proc(&id, proc, PID, 1000, 1000, NULL, 0, pidfd, 0);
	close(pidfd);
	assert_true(id.gone);
	assert_null(id.exe);
	assert_int_equal(id.sandbox, PEER_HOST);
	assert_null(id.container);
	peer_identity_clear(&id);
}

/* A stat line whose process started at start_s seconds after boot. */
static void write_stat(const char *name, unsigned start_s)
{
	char line[512];
	long hz = sysconf(_SC_CLK_TCK);
	snprintf(line, sizeof(line),
		 "4242 (%s) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 %llu 12345 67 "
		 "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		 name, (unsigned long long)start_s * (unsigned long long)hz);
	write_file("4242/stat", line);
}

static void test_pid_taken_since_it_connected(void **state)
{
	(void)state;
	struct peer_identity id;
	/* started before it connected (at 20 s): the client itself */
	write_stat("app", 10);
	peer_identity_read_proc(&id, proc, PID, 1000, 1000, NULL, 0, -1, 20000);
	assert_false(id.gone);
	assert_string_equal(id.exe, "/usr/bin/app");
	peer_identity_clear(&id);

	/* started after: another process has the pid now */
	write_stat("app", 30);
	peer_identity_read_proc(&id, proc, PID, 1000, 1000, NULL, 0, -1, 20000);
	assert_true(id.gone);
	assert_null(id.exe);
	peer_identity_clear(&id);

	/* a name made to look like the end of one, with spaces: the last ')' counts */
	write_stat("x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 (", 30);
	peer_identity_read_proc(&id, proc, PID, 1000, 1000, NULL, 0, -1, 20000);
	assert_true(id.gone);
	peer_identity_clear(&id);

	/* not checked without a connect time, nor without a readable stat */
	peer_identity_read_proc(&id, proc, PID, 1000, 1000, NULL, 0, -1, 0);
	assert_false(id.gone);
	peer_identity_clear(&id);
	char stat_path[512];
	snprintf(stat_path, sizeof(stat_path), "%s/4242/stat", proc);
	assert_int_equal(unlink(stat_path), 0);
	peer_identity_read_proc(&id, proc, PID, 1000, 1000, NULL, 0, -1, 20000);
	assert_false(id.gone);
	peer_identity_clear(&id);
}

static void test_format_escapes_and_bounds(void **state)
{
	(void)state;
	struct peer_identity id;
	link_rel("/tmp/evil\nERROR forged line\\", "4242/exe");
	read_peer(&id);
	char line[256];
	int n = peer_identity_format(&id, line, sizeof(line));
	assert_string_equal(line, "pid 4242 uid 1000 gid 1000 exe "
				  "/tmp/evil\\x0aERROR forged line\\x5c");
	assert_int_equal(n, (int)strlen(line));
	/* cut short, it says how long it would be */
	char small[16];
	assert_int_equal(peer_identity_format(&id, small, sizeof(small)), n);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(peer_identity_format(&id, NULL, 0), n);
	peer_identity_clear(&id);

	/* a cgroup file longer than read is cut, not overrun */
	char *big = malloc(20000);
	assert_non_null(big);
	memset(big, '/', 19999);
	big[19999] = '\0';
	write_file("4242/cgroup", big);
	free(big);
	read_peer(&id);
	assert_int_equal(id.sandbox, PEER_HOST);
	peer_identity_clear(&id);
}

/* The kernel's part, from a real socket: this process, its groups. */
static void test_socket(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct peer_identity id;
	/* connected now: this process started before, so it is the one */
	struct timespec now;
	clock_gettime(CLOCK_BOOTTIME, &now);
	uint64_t now_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
	peer_identity_read(&id, sv[0], getpid(), getuid(), getgid(), now_ms);
	assert_false(id.gone);
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	assert_string_equal(id.exe, self);
	gid_t groups[256];
	int ng = getgroups(256, groups);
	assert_int_equal(id.n_groups, (size_t)ng);
	for (int i = 0; i < ng; i++)
		assert_true(peer_identity_in_group(&id, groups[i]));
	peer_identity_clear(&id);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatpak_info, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatpak_info_on_untrusted_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flatpak_info_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mountinfo_overlong_line, setup, teardown),
		cmocka_unit_test(test_app_id_parser),
		cmocka_unit_test_setup_teardown(test_snap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_containers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pid_taken_since_it_connected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format_escapes_and_bounds, setup, teardown),
		cmocka_unit_test(test_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
