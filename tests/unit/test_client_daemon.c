/* scardd for the client-library unit tests (see test_client_daemon.h). */
#include "test_client_daemon.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <winscard.h>

long long test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pid_t test_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* The system call thread tid is blocked in, -1 if it runs or is unknown. */
static long blocked_syscall(pid_t tid)
{
	char path[64], buf[256];
	long nr = -1;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	/* "nr arg1 ... sp pc" while blocked, "running" otherwise */
	if (fgets(buf, sizeof(buf), f) && buf[0] >= '0' && buf[0] <= '9')
		nr = strtol(buf, NULL, 10);
	fclose(f);
	return nr;
}

bool test_thread_in_poll(pid_t tid, int timeout_ms)
{
	long long deadline = test_now_ms() + timeout_ms;

	do {
		long nr = blocked_syscall(tid);

		if (nr == SYS_poll || nr == SYS_ppoll)
			return true;
		usleep(2000);
	} while (test_now_ms() < deadline);
	return false;
}

static bool port_free(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* An even port p with p and p+1 free: vpcd listens there for its slots. */
static int pick_port(void)
{
	long long seed = (long long)getpid() * 7919 + test_now_ms();

	for (int i = 0; i < 1000; i++) {
		int port = 40000 + (int)((seed + i * 104729) % 10000) * 2;

		if (port_free(port) && port_free(port + 1))
			return port;
	}
	return 40000;
}

int test_daemon_init(struct test_daemon *d)
{
	memset(d, 0, sizeof(*d));
	d->pid = -1;
	snprintf(d->dir, sizeof(d->dir), "/tmp/scardd-client-XXXXXX");
	if (!mkdtemp(d->dir))
		return -1;
	snprintf(d->socket, sizeof(d->socket), "%s/pcscd.comm", d->dir);
	snprintf(d->confdir, sizeof(d->confdir), "%s/conf", d->dir);
	if (mkdir(d->confdir, 0700) != 0)
		return -1;
	d->with_readers = access(TEST_VPCD_DRIVER, R_OK) == 0;
	if (d->with_readers) {
		int port = pick_port();
		char path[192];

		snprintf(path, sizeof(path), "%s/vpcd", d->confdir);
		FILE *f = fopen(path, "w");
		if (!f)
			return -1;
		fprintf(f,
			"FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:%d\nLIBPATH %s\n"
			"CHANNELID %d\n",
			port, TEST_VPCD_DRIVER, port);
		fclose(f);
	}
	setenv("PCSCLITE_CSOCK_NAME", d->socket, 1);
	return 0;
}

static bool daemon_ready(struct test_daemon *d)
{
	SCARDCONTEXT ctx;
	DWORD len = 0;

	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) != SCARD_S_SUCCESS)
		return false;
	bool ok = !d->with_readers || (SCardListReaders(ctx, NULL, NULL, &len) == SCARD_S_SUCCESS &&
				       len == sizeof(TEST_READER0) + sizeof(TEST_READER1) + 1);
	SCardReleaseContext(ctx);
	return ok;
}

int test_daemon_start(struct test_daemon *d)
{
	char log[192];
	long long deadline = test_now_ms() + 20000;

	snprintf(log, sizeof(log), "%s/scardd.log", d->dir);
	d->pid = fork();
	if (d->pid < 0)
		return -1;
	if (d->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		const char *argv[10] = { "scardd",       "--foreground", "--socket", d->socket,
					 "--config-dir", d->confdir,     "--error" };
		/* as root, root on purpose (the files here are root's): without
		 * --user scardd wants the pcscd account and does not start without it */
		if (geteuid() == 0) {
			argv[7] = "--user";
			argv[8] = "root";
		}
		execv(SCARDD_TEST_BIN, (char *const *)argv);
		_exit(127);
	}
	while (test_now_ms() < deadline) {
		int status;

		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = -1;
			return -1;
		}
		if (daemon_ready(d))
			return 0;
		usleep(50000);
	}
	return -1;
}

void test_daemon_stop(struct test_daemon *d, bool crash)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, crash ? SIGKILL : SIGTERM);
	while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
		;
	d->pid = -1;
}

void test_daemon_cleanup(struct test_daemon *d)
{
	char cmd[256];

	test_daemon_stop(d, false);
	if (d->dir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", d->dir);
}
