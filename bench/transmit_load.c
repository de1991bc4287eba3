/*
 * SCardTransmit throughput: one client process per reader named, each with
 * its own context and card handle, transmitting in a loop for SECONDS.
 *
 *   transmit_load LIBRARY SECONDS DAEMON_PID READER [READER...]
 *
 * Prints "transmits_per_s R" (summed over the processes), "transmits N" and
 * "daemon_cpu_us_per_transmit C": the daemon's user+system time from
 * /proc/DAEMON_PID/stat, from the start signal until every client is done,
 * divided by the transmits, and "daemon_wakeups_per_transmit W": the times
 * the daemon's threads went to sleep (and were woken) over the same span.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_api.h"

#define MAX_CLIENTS 64

struct result {
	long transmits;
	double seconds;
};

/*
 * A client: set up, say ready, wait for the start (EOF on go), run, report,
 * then keep its connection until the daemon's counters are read (EOF on
 * done): pcscd's thread for the client ends at the disconnect, and its
 * context switches leave the daemon's sum with it. Each pipe end is closed
 * once used, so a client that fails is an EOF to the parent, not a wait on
 * the others.
 */
static void client(const char *lib, const char *reader, double seconds, int ready, int go,
		   int report, int done)
{
	struct pcsc api;
	SCARDCONTEXT ctx;
	SCARDHANDLE card;
	DWORD protocol;
	char byte = 0;

	pcsc_load(&api, lib);
	check(api.establish(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx), SCARD_S_SUCCESS,
	      "SCardEstablishContext");
	check(api.connect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
			  &card, &protocol),
	      SCARD_S_SUCCESS, "SCardConnect");
	for (int i = 0; i < 100; i++)
		transmit_once(&api, card, protocol); /* warm up */
	if (write(ready, &byte, 1) != 1)
		exit(1);
	close(ready);
	if (read(go, &byte, 1) != 0)
		exit(1);

	struct result r = { 0, 0 };
	double t0 = now_us(), end = t0 + seconds * 1e6, t = t0;
	while (t < end) {
		transmit_once(&api, card, protocol);
		r.transmits++;
		t = now_us();
	}
	r.seconds = (t - t0) / 1e6;
	if (write(report, &r, sizeof r) != (ssize_t)sizeof r)
		exit(1);
	close(report);
	if (read(done, &byte, 1) != 0)
		exit(1);
	api.disconnect(card, SCARD_LEAVE_CARD);
	api.release(ctx);
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc - 4 > MAX_CLIENTS) {
		fprintf(stderr, "usage: %s LIBRARY SECONDS DAEMON_PID READER [READER...]\n",
			argv[0]);
		return 2;
	}
	const char *lib = argv[1];
	double seconds = arg_number(argv[2], "SECONDS");
	pid_t daemon = (pid_t)arg_number(argv[3], "DAEMON_PID");
	int n = argc - 4;
	int ready[2], go[2], report[2], done[2];
	if (pipe(ready) < 0 || pipe(go) < 0 || pipe(report) < 0 || pipe(done) < 0) {
		perror("pipe");
		return 2;
	}
	pid_t pids[MAX_CLIENTS];
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			return 2;
		}
		if (pids[i] == 0) {
			close(go[1]);
			close(done[1]);
			client(lib, argv[4 + i], seconds, ready[1], go[0], report[1], done[0]);
		}
	}
	close(go[0]);
	close(done[0]);
	close(ready[1]);
	close(report[1]);
	char byte;
	for (int i = 0; i < n; i++) {
		if (read(ready[0], &byte, 1) != 1) {
			fprintf(stderr, "a client failed to start\n");
			return 1;
		}
	}
	double cpu0 = process_cpu_us(daemon);
	double sleeps0 = process_sleeps(daemon);
	close(go[1]); /* every client starts now */
	long total = 0;
	double rate = 0;
	for (int i = 0; i < n; i++) {
		struct result r;
		if (read(report[0], &r, sizeof r) != (ssize_t)sizeof r) {
			fprintf(stderr, "a client failed while transmitting\n");
			return 1;
		}
		total += r.transmits;
		rate += r.transmits / r.seconds;
	}
	double cpu1 = process_cpu_us(daemon);
	double sleeps1 = process_sleeps(daemon);
	close(done[1]); /* the clients may disconnect now */
	int failed = 0;
	for (int i = 0; i < n; i++) {
		int st;
		if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	if (cpu0 < 0 || cpu1 < 0) {
		fprintf(stderr, "cannot read /proc/%ld/stat\n", (long)daemon);
		return 1;
	}
	printf("transmits_per_s %.1f\n", rate);
	printf("transmits %ld\n", total);
	printf("daemon_cpu_us_per_transmit %.2f\n", (cpu1 - cpu0) / (double)total);
	if (sleeps0 >= 0 && sleeps1 >= 0)
		printf("daemon_wakeups_per_transmit %.2f\n", (sleeps1 - sleeps0) / (double)total);
	return failed;
}
