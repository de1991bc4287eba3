/*
 * Per-call latency of one libpcsclite.so.1 on one reader: what an
 * application waits for each call, so Debian's library and ours can be
 * compared against the same daemon.
 *
 *   client_calls LIBRARY READER ITERATIONS
 *
 * Prints one line per call: "call NAME MEDIAN_US".
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_api.h"

static struct pcsc api;
static SCARDCONTEXT ctx;
static SCARDHANDLE card;
static DWORD protocol;
static SCARD_READERSTATE watched;

static void establish_release(void)
{
	SCARDCONTEXT c;
	check(api.establish(SCARD_SCOPE_SYSTEM, NULL, NULL, &c), SCARD_S_SUCCESS,
	      "SCardEstablishContext");
	check(api.release(c), SCARD_S_SUCCESS, "SCardReleaseContext");
}

static void list_readers(void)
{
	char buf[1024];
	DWORD len = sizeof buf;
	check(api.list(ctx, NULL, buf, &len), SCARD_S_SUCCESS, "SCardListReaders");
}

static void status(void)
{
	BYTE atr[33];
	DWORD atr_len = sizeof atr, state, p;
	check(api.status(card, NULL, NULL, &state, &p, atr, &atr_len), SCARD_S_SUCCESS,
	      "SCardStatus");
}

static void status_change_poll(void)
{
	check(api.get_status_change(ctx, 0, &watched, 1), SCARD_E_TIMEOUT,
	      "SCardGetStatusChange(timeout 0)");
}

static void transmit(void)
{
	transmit_once(&api, card, protocol);
}

static void measure(const char *name, void (*op)(void), int n)
{
	double *t = calloc((size_t)n, sizeof *t);
	if (!t)
		exit(2);
	for (int i = 0; i < n / 10 + 1; i++)
		op(); /* warm up */
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		op();
		t[i] = now_us() - t0;
	}
	printf("call %s %.1f\n", name, median(t, (size_t)n));
	free(t);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s LIBRARY READER ITERATIONS\n", argv[0]);
		return 2;
	}
	const char *reader = argv[2];
	int n = (int)arg_number(argv[3], "ITERATIONS");
	pcsc_load(&api, argv[1]);
	check(api.establish(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx), SCARD_S_SUCCESS,
	      "SCardEstablishContext");
	check(api.connect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
			  &card, &protocol),
	      SCARD_S_SUCCESS, "SCardConnect");
	watched.szReader = reader;
	watched.dwCurrentState = SCARD_STATE_UNAWARE;
	check(api.get_status_change(ctx, 0, &watched, 1), SCARD_S_SUCCESS,
	      "SCardGetStatusChange(unaware)");
	watched.dwCurrentState = watched.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;

	measure("EstablishContext+ReleaseContext", establish_release, n / 4 > 10 ? n / 4 : 10);
	measure("ListReaders", list_readers, n);
	measure("Status", status, n);
	measure("GetStatusChange(timeout 0)", status_change_poll, n);
	measure("Transmit", transmit, n);

	api.disconnect(card, SCARD_LEAVE_CARD);
	api.release(ctx);
	return 0;
}
