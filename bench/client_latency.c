/*
 * Per-call latency of one libpcsclite.so.1, loaded with dlopen so the same
 * program measures Debian's library and ours against the same daemon.
 *
 *   client_latency LIBRARY READER [ITERATIONS]
 *
 * READER must hold a card that answers SELECT MF (00 A4 00 0C 02 3F 00).
 * Prints one line per operation: name, median and 90th percentile in
 * microseconds. bench/run-client-bench runs it twice and prints the ratios.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <winscard.h>

struct api {
	LONG (*establish)(DWORD, LPCVOID, LPCVOID, LPSCARDCONTEXT);
	LONG (*release)(SCARDCONTEXT);
	LONG (*list)(SCARDCONTEXT, LPCSTR, LPSTR, LPDWORD);
	LONG (*connect)(SCARDCONTEXT, LPCSTR, DWORD, DWORD, LPSCARDHANDLE, LPDWORD);
	LONG (*disconnect)(SCARDHANDLE, DWORD);
	LONG (*transmit)(SCARDHANDLE, const SCARD_IO_REQUEST *, LPCBYTE, DWORD, SCARD_IO_REQUEST *,
			 LPBYTE, LPDWORD);
	LONG (*status)(SCARDHANDLE, LPSTR, LPDWORD, LPDWORD, LPDWORD, LPBYTE, LPDWORD);
	LONG (*gsc)(SCARDCONTEXT, DWORD, SCARD_READERSTATE *, DWORD);
};

static struct api api;
static SCARDCONTEXT ctx;
static SCARDHANDLE card;
static DWORD proto;
static const char *reader;
static SCARD_READERSTATE gsc_state;

static void *sym(void *lib, const char *name)
{
	void *p = dlsym(lib, name);

	if (p == NULL) {
		fprintf(stderr, "%s: %s\n", name, dlerror());
		exit(2);
	}
	return p;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void check(LONG rv, LONG want, const char *what)
{
	if (rv != want) {
		fprintf(stderr, "%s: 0x%08lX\n", what, (unsigned long)rv);
		exit(1);
	}
}

static void op_establish_release(void)
{
	SCARDCONTEXT c;

	check(api.establish(SCARD_SCOPE_SYSTEM, NULL, NULL, &c), SCARD_S_SUCCESS, "establish");
	check(api.release(c), SCARD_S_SUCCESS, "release");
}

static void op_list_readers(void)
{
	char buf[512];
	DWORD len = sizeof(buf);

	check(api.list(ctx, NULL, buf, &len), SCARD_S_SUCCESS, "list");
}

static void op_transmit(void)
{
	static const BYTE select_mf[] = { 0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00 };
	SCARD_IO_REQUEST pci = { proto, sizeof(SCARD_IO_REQUEST) };
	BYTE resp[258];
	DWORD len = sizeof(resp);

	check(api.transmit(card, &pci, select_mf, sizeof(select_mf), NULL, resp, &len),
	      SCARD_S_SUCCESS, "transmit");
}

static void op_status(void)
{
	BYTE atr[33];
	DWORD atr_len = sizeof(atr), state, p;

	check(api.status(card, NULL, NULL, &state, &p, atr, &atr_len), SCARD_S_SUCCESS, "status");
}

static void op_gsc_timeout0(void)
{
	check(api.gsc(ctx, 0, &gsc_state, 1), SCARD_E_TIMEOUT, "get status change");
}

static void measure(const char *name, void (*op)(void), int n)
{
	double *t = calloc((size_t)n, sizeof(*t));

	if (t == NULL)
		exit(2);
	for (int i = 0; i < n / 10 + 1; i++)
		op(); /* warm up */
	for (int i = 0; i < n; i++) {
		double t0 = now_us();

		op();
		t[i] = now_us() - t0;
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	printf("%-28s %10.1f %10.1f\n", name, t[n / 2], t[n * 9 / 10]);
	free(t);
}

int main(int argc, char **argv)
{
	void *lib;
	int n;

	if (argc < 3) {
		fprintf(stderr, "usage: %s LIBRARY READER [ITERATIONS]\n", argv[0]);
		return 2;
	}
	reader = argv[2];
	n = argc > 3 ? atoi(argv[3]) : 2000;
	if (n < 10)
		n = 10;
	lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		fprintf(stderr, "%s\n", dlerror());
		return 2;
	}
	*(void **)&api.establish = sym(lib, "SCardEstablishContext");
	*(void **)&api.release = sym(lib, "SCardReleaseContext");
	*(void **)&api.list = sym(lib, "SCardListReaders");
	*(void **)&api.connect = sym(lib, "SCardConnect");
	*(void **)&api.disconnect = sym(lib, "SCardDisconnect");
	*(void **)&api.transmit = sym(lib, "SCardTransmit");
	*(void **)&api.status = sym(lib, "SCardStatus");
	*(void **)&api.gsc = sym(lib, "SCardGetStatusChange");

	check(api.establish(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx), SCARD_S_SUCCESS, "establish");
	check(api.connect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY, &card, &proto),
	      SCARD_S_SUCCESS, "connect");
	gsc_state.szReader = reader;
	gsc_state.dwCurrentState = SCARD_STATE_UNAWARE;
	check(api.gsc(ctx, 0, &gsc_state, 1), SCARD_S_SUCCESS, "get status change (unaware)");
	gsc_state.dwCurrentState = gsc_state.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;

	printf("%-28s %10s %10s\n", "# operation", "median_us", "p90_us");
	measure("EstablishContext+Release", op_establish_release, n / 4 > 10 ? n / 4 : 10);
	measure("ListReaders", op_list_readers, n);
	/* vpcd/vicc answer in tens of ms: the card, not the library, dominates */
	measure("Transmit(SELECT MF)", op_transmit, n / 50 > 20 ? n / 50 : 20);
	measure("Status", op_status, n);
	measure("GetStatusChange(timeout 0)", op_gsc_timeout0, n);

	api.disconnect(card, SCARD_LEAVE_CARD);
	api.release(ctx);
	return 0;
}
