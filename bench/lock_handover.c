/*
 * Lock hand-over between two processes on one reader. Each iteration:
 * A holds a transaction; B calls SCardBeginTransaction on its own handle and
 * blocks; A, after holding for a while, calls SCardEndTransaction. The
 * sample is the time from A calling SCardEndTransaction to B's
 * SCardBeginTransaction returning, on CLOCK_MONOTONIC (one clock for both
 * processes), so it holds A's release reaching the daemon, the grant, and
 * the answer reaching B.
 *
 *   lock_handover LIBRARY READER ITERATIONS
 *
 * A's hold time is drawn uniformly from 2..98 ms with a fixed seed: the
 * same sequence for every daemon, all under the 100 ms after which both
 * daemons answer a waiting BEGIN with SCARD_E_SHARING_VIOLATION.
 * Prints "handover_median_us M" and "handover_p90_us P".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_api.h"

#define HOLD_MIN_MS 2
#define HOLD_SPAN_MS 97

struct side {
	struct pcsc api;
	SCARDCONTEXT ctx;
	SCARDHANDLE card;
};

static void open_side(struct side *s, const char *lib, const char *reader)
{
	DWORD protocol;
	pcsc_load(&s->api, lib);
	check(s->api.establish(SCARD_SCOPE_SYSTEM, NULL, NULL, &s->ctx), SCARD_S_SUCCESS,
	      "SCardEstablishContext");
	check(s->api.connect(s->ctx, reader, SCARD_SHARE_SHARED,
			     SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &s->card, &protocol),
	      SCARD_S_SUCCESS, "SCardConnect");
}

static void put(int fd, const void *buf, size_t n)
{
	if (write(fd, buf, n) != (ssize_t)n) {
		fprintf(stderr, "lock_handover: the other process went away\n");
		exit(1);
	}
}

static void get(int fd, void *buf, size_t n)
{
	if (read(fd, buf, n) != (ssize_t)n) {
		fprintf(stderr, "lock_handover: the other process went away\n");
		exit(1);
	}
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* B: waits for A to hold the lock, asks for it, reports the sample. */
static void side_b(const char *lib, const char *reader, int from_a, int to_a)
{
	struct side b;
	char byte;
	open_side(&b, lib, reader);
	put(to_a, "R", 1);
	for (;;) {
		if (read(from_a, &byte, 1) != 1)
			exit(0); /* A is done */
		put(to_a, "W", 1);
		check(b.api.begin(b.card), SCARD_S_SUCCESS, "SCardBeginTransaction (B)");
		double t1 = now_us(), t0;
		get(from_a, &t0, sizeof t0);
		check(b.api.end(b.card, SCARD_LEAVE_CARD), SCARD_S_SUCCESS,
		      "SCardEndTransaction (B)");
		double sample = t1 - t0;
		put(to_a, &sample, sizeof sample);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s LIBRARY READER ITERATIONS\n", argv[0]);
		return 2;
	}
	const char *lib = argv[1], *reader = argv[2];
	int n = (int)arg_number(argv[3], "ITERATIONS");
	int a2b[2], b2a[2];
	if (pipe(a2b) < 0 || pipe(b2a) < 0) {
		perror("pipe");
		return 2;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		close(a2b[1]);
		close(b2a[0]);
		side_b(lib, reader, a2b[0], b2a[1]);
	}
	close(a2b[0]);
	close(b2a[1]);

	struct side a;
	char byte;
	open_side(&a, lib, reader);
	get(b2a[0], &byte, 1);
	double *samples = calloc((size_t)n, sizeof *samples);
	if (!samples)
		return 2;
	unsigned seed = 1;
	int early = 0;
	for (int i = 0; i < n; i++) {
		check(a.api.begin(a.card), SCARD_S_SUCCESS, "SCardBeginTransaction (A)");
		put(a2b[1], "H", 1);
		get(b2a[0], &byte, 1); /* B is about to ask */
		sleep_ms(HOLD_MIN_MS + (unsigned)rand_r(&seed) % HOLD_SPAN_MS);
		double t0 = now_us();
		check(a.api.end(a.card, SCARD_LEAVE_CARD), SCARD_S_SUCCESS,
		      "SCardEndTransaction (A)");
		put(a2b[1], &t0, sizeof t0);
		get(b2a[0], &samples[i], sizeof samples[i]);
		if (samples[i] < 0)
			early++;
	}
	close(a2b[1]);
	int st;
	waitpid(pid, &st, 0);
	if (early) {
		fprintf(stderr, "lock_handover: B was granted the lock %d times while A held it\n",
			early);
		return 1;
	}
	double med = median(samples, (size_t)n);
	printf("handover_median_us %.1f\n", med);
	printf("handover_p90_us %.1f\n", samples[(size_t)n * 9 / 10]);
	a.api.disconnect(a.card, SCARD_LEAVE_CARD);
	a.api.release(a.ctx);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
