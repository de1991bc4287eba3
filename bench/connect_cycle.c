/*
 * The connect cycle of a short-lived client, repeated for SECONDS:
 * SCardEstablishContext, SCardConnect, SCardDisconnect, SCardReleaseContext.
 *
 *   connect_cycle LIBRARY READER SECONDS
 *
 * Prints "cycles_per_s R".
 */
#include <stdio.h>

#include "bench_api.h"

static void cycle(const struct pcsc *api, const char *reader)
{
	SCARDCONTEXT ctx;
	SCARDHANDLE card;
	DWORD protocol;
	check(api->establish(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx), SCARD_S_SUCCESS,
	      "SCardEstablishContext");
	check(api->connect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
			   &card, &protocol),
	      SCARD_S_SUCCESS, "SCardConnect");
	check(api->disconnect(card, SCARD_LEAVE_CARD), SCARD_S_SUCCESS, "SCardDisconnect");
	check(api->release(ctx), SCARD_S_SUCCESS, "SCardReleaseContext");
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s LIBRARY READER SECONDS\n", argv[0]);
		return 2;
	}
	struct pcsc api;
	pcsc_load(&api, argv[1]);
	double seconds = arg_number(argv[3], "SECONDS");
	for (int i = 0; i < 20; i++)
		cycle(&api, argv[2]); /* warm up */
	long n = 0;
	double t0 = now_us(), end = t0 + seconds * 1e6, t = t0;
	while (t < end) {
		cycle(&api, argv[2]);
		n++;
		t = now_us();
	}
	printf("cycles_per_s %.1f\n", n / ((t - t0) / 1e6));
	return 0;
}
