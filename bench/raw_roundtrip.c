/*
 * The physical limit for a daemon round trip: two processes bouncing a
 * 300-byte message over an AF_UNIX SOCK_STREAM socket, no PC/SC at all.
 *
 *   raw_roundtrip SECONDS
 *
 * Prints "round_trips_per_s R".
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_api.h"

#define MESSAGE 300

/* The peer: answers every message until the socket closes. */
static void echo(int fd)
{
	char buf[MESSAGE];
	while (io_all(fd, buf, sizeof buf, false) == 0)
		if (io_all(fd, buf, sizeof buf, true) < 0)
			break;
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
		return 2;
	}
	double seconds = arg_number(argv[1], "SECONDS");
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		perror("socketpair");
		return 2;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		close(sv[0]);
		echo(sv[1]);
	}
	close(sv[1]);
	char buf[MESSAGE] = { 0 };
	long n = 0;
	double t0 = now_us(), end = t0 + seconds * 1e6, t = t0;
	while (t < end) {
		if (io_all(sv[0], buf, sizeof buf, true) < 0 ||
		    io_all(sv[0], buf, sizeof buf, false) < 0) {
			fprintf(stderr, "the echo process went away\n");
			return 1;
		}
		n++;
		t = now_us();
	}
	close(sv[0]);
	waitpid(pid, NULL, 0);
	printf("round_trips_per_s %.1f\n", n / ((t - t0) / 1e6));
	return 0;
}
