/*
 * pcsc_probe: a small PC/SC client, cross-built for other architectures
 * (i386: 32-bit little-endian; s390x: 64-bit big-endian) against Debian's
 * libpcsclite or ours, to show what a daemon does with a client of another
 * word size or byte order.
 *
 * Every step prints one JSON object on its own line (stdout, flushed), with
 * "op" and, for PC/SC calls, "rv" as "0x%08X". Exit status 0 when every call
 * succeeded, 1 when one failed, 2 on bad usage.
 *
 *   pcsc_probe [--reader NAME] [--apdu HEX]...        the full sequence:
 *       arch, establish, is_valid, list_readers, status_change (timeout 0,
 *       all readers UNAWARE), connect NAME (shared, T=0|T=1), status,
 *       get_attrib_atr, begin_transaction, transmit each APDU,
 *       end_transaction, reconnect, disconnect, release
 *   pcsc_probe --wait NAME [--events N] [--timeout MS]
 *       prints "ready" with NAME's state, then waits for N (1) state changes
 *       of NAME, printing "changed" for each (timeout per wait, 20000 ms)
 *   pcsc_probe --cancel
 *       one thread waits on \\?PnP?\Notification with INFINITE timeout; the
 *       main thread calls SCardCancel every 100 ms (at most 100 times) until
 *       the wait returns; prints "cancel" with both results
 */
#define _GNU_SOURCE /* dladdr, RTLD_DEFAULT */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <winscard.h>
#include <pcsclite.h>
#include <reader.h>

static int failed;

static unsigned rv32(LONG rv)
{
	return (unsigned)((unsigned long)rv & 0xFFFFFFFFul);
}

static void print_hex(const unsigned char *p, unsigned long n)
{
	putchar('"');
	for (unsigned long i = 0; i < n; i++)
		printf("%02X", p[i]);
	putchar('"');
}

/* JSON string (reader names are plain ASCII; escape the few specials). */
static void print_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7F)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void begin_op(const char *op, LONG rv)
{
	printf("{\"op\":\"%s\",\"rv\":\"0x%08X\"", op, rv32(rv));
	if (rv != SCARD_S_SUCCESS)
		failed = 1;
}

static void end_op(void)
{
	printf("}\n");
	fflush(stdout);
}

static void op_rv(const char *op, LONG rv)
{
	begin_op(op, rv);
	end_op();
}

static int parse_hex(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;
	while (s[0] && s[1]) {
		unsigned v;
		if (n == max || sscanf(s, "%2x", &v) != 1)
			return -1;
		out[n++] = (unsigned char)v;
		s += 2;
	}
	return s[0] ? -1 : (int)n;
}

/* What this process is, and which libpcsclite.so.1 the loader gave it. */
static void print_arch(void)
{
	const uint32_t one = 1;
	Dl_info info;
	void *sym = dlsym(RTLD_DEFAULT, "SCardEstablishContext");
	const char *lib = sym && dladdr(sym, &info) && info.dli_fname ? info.dli_fname : "";
	printf("{\"op\":\"arch\",\"bits\":%u,\"endian\":\"%s\",\"sizeof_long\":%u,"
	       "\"sizeof_dword\":%u,\"sizeof_handle\":%u,\"library\":",
	       (unsigned)(sizeof(void *) * 8), *(const unsigned char *)&one ? "little" : "big",
	       (unsigned)sizeof(long), (unsigned)sizeof(DWORD), (unsigned)sizeof(SCARDHANDLE));
	print_str(lib);
	printf("}\n");
	fflush(stdout);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* --- the full sequence ------------------------------------------------ */
static int run_sequence(SCARDCONTEXT ctx, const char *reader, char **apdus, int napdu)
{
	LONG rv = SCardIsValidContext(ctx);
	op_rv("is_valid", rv);

	DWORD len = 0;
	rv = SCardListReaders(ctx, NULL, NULL, &len);
	char *mszReaders = NULL;
	if (rv == SCARD_S_SUCCESS) {
		mszReaders = calloc(1, len + 1);
		rv = SCardListReaders(ctx, NULL, mszReaders, &len);
	}
	begin_op("list_readers", rv);
	printf(",\"readers\":[");
	int count = 0;
	if (rv == SCARD_S_SUCCESS)
		for (char *r = mszReaders; *r; r += strlen(r) + 1) {
			if (count++)
				putchar(',');
			print_str(r);
		}
	printf("]");
	end_op();
	if (rv != SCARD_S_SUCCESS)
		return 1;

	SCARD_READERSTATE *rs = calloc(count ? count : 1, sizeof(*rs));
	int i = 0;
	for (char *r = mszReaders; *r; r += strlen(r) + 1, i++) {
		rs[i].szReader = r;
		rs[i].dwCurrentState = SCARD_STATE_UNAWARE;
	}
	rv = SCardGetStatusChange(ctx, 0, rs, count);
	begin_op("status_change", rv);
	printf(",\"readers\":[");
	for (i = 0; i < count && rv == SCARD_S_SUCCESS; i++) {
		printf("%s{\"name\":", i ? "," : "");
		print_str(rs[i].szReader);
		printf(",\"state\":\"0x%08lX\",\"atr\":", (unsigned long)rs[i].dwEventState);
		print_hex(rs[i].rgbAtr, rs[i].cbAtr);
		printf("}");
	}
	printf("]");
	end_op();
	free(rs);

	if (!reader) {
		free(mszReaders);
		return 0;
	}

	SCARDHANDLE h = 0;
	DWORD proto = 0;
	rv = SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
			  &h, &proto);
	begin_op("connect", rv);
	printf(",\"protocol\":%lu", (unsigned long)proto);
	end_op();
	if (rv != SCARD_S_SUCCESS) {
		free(mszReaders);
		return 1;
	}

	char name[MAX_READERNAME + 1] = "";
	DWORD namelen = sizeof(name), state = 0, sproto = 0;
	unsigned char atr[MAX_ATR_SIZE];
	DWORD atrlen = sizeof(atr);
	rv = SCardStatus(h, name, &namelen, &state, &sproto, atr, &atrlen);
	begin_op("status", rv);
	if (rv == SCARD_S_SUCCESS) {
		printf(",\"reader\":");
		print_str(name);
		printf(",\"state\":\"0x%08lX\",\"protocol\":%lu,\"atr\":", (unsigned long)state,
		       (unsigned long)sproto);
		print_hex(atr, atrlen);
	}
	end_op();

	unsigned char attr[MAX_BUFFER_SIZE];
	DWORD attrlen = sizeof(attr);
	rv = SCardGetAttrib(h, SCARD_ATTR_ATR_STRING, attr, &attrlen);
	begin_op("get_attrib_atr", rv);
	if (rv == SCARD_S_SUCCESS) {
		printf(",\"atr\":");
		print_hex(attr, attrlen);
	}
	end_op();

	rv = SCardBeginTransaction(h);
	op_rv("begin_transaction", rv);

	const SCARD_IO_REQUEST *pci = proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	for (i = 0; i < napdu; i++) {
		unsigned char cmd[MAX_BUFFER_SIZE_EXTENDED], resp[MAX_BUFFER_SIZE_EXTENDED];
		int n = parse_hex(apdus[i], cmd, sizeof(cmd));
		DWORD rlen = sizeof(resp);
		if (n < 0) {
			fprintf(stderr, "bad APDU %s\n", apdus[i]);
			return 2;
		}
		rv = SCardTransmit(h, pci, cmd, (DWORD)n, NULL, resp, &rlen);
		begin_op("transmit", rv);
		printf(",\"apdu\":\"%s\",\"response\":", apdus[i]);
		print_hex(resp, rv == SCARD_S_SUCCESS ? rlen : 0);
		end_op();
	}

	rv = SCardEndTransaction(h, SCARD_LEAVE_CARD);
	op_rv("end_transaction", rv);

	DWORD rproto = 0;
	rv = SCardReconnect(h, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
			    SCARD_LEAVE_CARD, &rproto);
	begin_op("reconnect", rv);
	printf(",\"protocol\":%lu", (unsigned long)rproto);
	end_op();

	rv = SCardDisconnect(h, SCARD_LEAVE_CARD);
	op_rv("disconnect", rv);
	free(mszReaders);
	return 0;
}

/* --- waiting for events --------------------------------------------- */
static void print_state_op(const char *op, LONG rv, const SCARD_READERSTATE *rs)
{
	begin_op(op, rv);
	printf(",\"state\":\"0x%08lX\",\"atr\":", (unsigned long)rs->dwEventState);
	print_hex(rs->rgbAtr, rv == SCARD_S_SUCCESS ? rs->cbAtr : 0);
	end_op();
}

static int run_wait(SCARDCONTEXT ctx, const char *reader, int events, long timeout)
{
	SCARD_READERSTATE rs;
	memset(&rs, 0, sizeof(rs));
	rs.szReader = reader;
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	LONG rv = SCardGetStatusChange(ctx, 0, &rs, 1);
	print_state_op("ready", rv, &rs);
	if (rv != SCARD_S_SUCCESS)
		return 1;
	for (int i = 0; i < events; i++) {
		rs.dwCurrentState = rs.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
		rv = SCardGetStatusChange(ctx, (DWORD)timeout, &rs, 1);
		print_state_op("changed", rv, &rs);
		if (rv != SCARD_S_SUCCESS)
			return 1;
	}
	return 0;
}

/* --- cancelling a wait -------------------------------------------------- */
struct waiter {
	SCARDCONTEXT ctx;
	LONG rv;
	volatile int done;
	pthread_mutex_t lock;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	SCARD_READERSTATE rs;
	memset(&rs, 0, sizeof(rs));
	rs.szReader = "\\\\?PnP?\\Notification";
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	/* UNAWARE does not mark the PnP entry changed: a timeout is the normal
	 * answer here, and dwEventState holds the reader count either way */
	LONG rv = SCardGetStatusChange(w->ctx, 0, &rs, 1);
	if (rv == SCARD_S_SUCCESS || rv == SCARD_E_TIMEOUT) {
		rs.dwCurrentState = rs.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
		rv = SCardGetStatusChange(w->ctx, INFINITE, &rs, 1);
	}
	pthread_mutex_lock(&w->lock);
	w->rv = rv;
	w->done = 1;
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int run_cancel(SCARDCONTEXT ctx)
{
	struct waiter w = { .ctx = ctx };
	pthread_t t;
	pthread_mutex_init(&w.lock, NULL);
	if (pthread_create(&t, NULL, wait_thread, &w) != 0)
		return 2;
	LONG crv = SCARD_S_SUCCESS;
	int tries = 0, done = 0;
	while (tries < 100) {
		sleep_ms(100);
		pthread_mutex_lock(&w.lock);
		done = w.done;
		pthread_mutex_unlock(&w.lock);
		if (done)
			break;
		crv = SCardCancel(ctx);
		tries++;
	}
	if (!done) {
		/* give the last cancel a moment, then report without joining */
		for (int i = 0; i < 50 && !done; i++) {
			sleep_ms(100);
			pthread_mutex_lock(&w.lock);
			done = w.done;
			pthread_mutex_unlock(&w.lock);
		}
	}
	begin_op("cancel", crv);
	printf(",\"tries\":%d,\"wait_returned\":%s,\"wait_rv\":\"0x%08X\"", tries,
	       done ? "true" : "false", done ? rv32(w.rv) : 0u);
	end_op();
	if (!done) {
		failed = 1;
		fflush(stdout);
		_Exit(1); /* the waiter is stuck in the library: do not release */
	}
	pthread_join(t, NULL);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pcsc_probe [--reader NAME] [--apdu HEX]...\n"
			"       pcsc_probe --wait NAME [--events N] [--timeout MS]\n"
			"       pcsc_probe --cancel\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *reader = NULL, *wait_reader = NULL;
	char **apdus = calloc(argc, sizeof(char *));
	int napdu = 0, events = 1, cancel = 0;
	long timeout = 20000;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reader") && i + 1 < argc)
			reader = argv[++i];
		else if (!strcmp(argv[i], "--apdu") && i + 1 < argc)
			apdus[napdu++] = argv[++i];
		else if (!strcmp(argv[i], "--wait") && i + 1 < argc)
			wait_reader = argv[++i];
		else if (!strcmp(argv[i], "--events") && i + 1 < argc)
			events = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout = atol(argv[++i]);
		else if (!strcmp(argv[i], "--cancel"))
			cancel = 1;
		else
			usage();
	}

	print_arch();
	SCARDCONTEXT ctx = 0;
	LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	op_rv("establish", rv);
	if (rv != SCARD_S_SUCCESS)
		return 1;

	int r;
	if (cancel)
		r = run_cancel(ctx);
	else if (wait_reader)
		r = run_wait(ctx, wait_reader, events, timeout);
	else
		r = run_sequence(ctx, reader, apdus, napdu);

	rv = SCardReleaseContext(ctx);
	op_rv("release", rv);
	free(apdus);
	if (r == 2)
		return 2;
	return failed || r ? 1 : 0;
}
