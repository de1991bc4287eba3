/*
 * scard watch: one line per change of a reader (card in/out, mute, taken,
 * released) and per reader appearing or going, from SCardGetStatusChange
 * with the \\?PnP?\Notification pseudo-reader. No polling: the process
 * sleeps in the daemon's wait until something happens.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "scard.h"

#define PNP_NAME "\\\\?PnP?\\Notification"

struct watched {
	char *name;
	DWORD state; /* last dwEventState seen, 0 = not yet */
	uint8_t atr[MAX_ATR_SIZE];
	size_t atr_len;
};

static SCARDCONTEXT g_ctx;
static atomic_bool g_stop; /* set by the signal thread, read by the main one */

/* SIGINT/SIGTERM arrive here (blocked everywhere else) and cancel the wait. */
static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;
	if (sigwait(set, &sig) == 0) {
		g_stop = 1;
		SCardCancel(g_ctx);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void stamp(char *buf, size_t cap)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	localtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(buf, cap, "%H:%M:%S", &tm);
	snprintf(buf + n, cap - n, ".%03ld", (long)(tv.tv_usec / 1000));
}

static void emit(const char *event, const char *reader, DWORD state, const uint8_t *atr,
		 size_t atr_len)
{
	char ts[32];
	stamp(ts, sizeof(ts));
	if (g_opts.json) {
		printf("{\"time\":\"%s\",\"event\":\"%s\",\"reader\":", ts, event);
		json_str(stdout, reader);
		printf(",\"card\":\"%s\",\"atr\":", card_word(state));
		if (atr_len)
			json_hex(stdout, atr, atr_len);
		else
			printf("null");
		json_state_fields(stdout, state);
		printf("}\n");
	} else {
		printf("%s  %-28s %s", ts, reader, event);
		if (atr_len) {
			printf("  ATR ");
			print_hex(stdout, atr, atr_len);
		}
		printf("\n");
	}
	fflush(stdout);
}

/* What changed between two states of one reader, as event names. */
static int describe(DWORD old, DWORD now, const char **ev, int max)
{
	int n = 0;
	bool was_in = old & SCARD_STATE_PRESENT, is_in = now & SCARD_STATE_PRESENT;
	unsigned long c_old = old >> 16, c_now = now >> 16;
	if (was_in && is_in && c_old && c_now && c_now != c_old) {
		ev[n++] = "card removed"; /* a swap between two looks */
		ev[n++] = "card inserted";
	} else if (!was_in && is_in) {
		ev[n++] = "card inserted";
	} else if (was_in && !is_in) {
		ev[n++] = "card removed";
	}
	if (n < max && (now & SCARD_STATE_MUTE) && !(old & SCARD_STATE_MUTE))
		ev[n++] = "card mute";
	const char *h_old = holder_word(old), *h_now = holder_word(now);
	if (n < max && is_in && h_old != h_now) {
		if (!h_now)
			ev[n++] = "released";
		else if (!strcmp(h_now, "exclusive"))
			ev[n++] = "taken exclusively";
		else
			ev[n++] = "in use (shared)";
	}
	if (n < max && (now & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE)) &&
	    !(old & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE)))
		ev[n++] = "reader unavailable";
	return n;
}

static void free_watched(struct watched *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i].name);
	free(w);
}

int cmd_watch(int argc, char **argv)
{
	double timeout = -1;
	long count = -1;
	for (int i = 1; i < argc; i++) {
		char *end;
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			timeout = strtod(argv[++i], &end);
			if (*end || timeout < 0) {
				err_msg("--timeout wants seconds");
				return EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
			count = strtol(argv[++i], &end, 10);
			if (*end || count < 1) {
				err_msg("--count wants a positive number");
				return EXIT_USAGE;
			}
		} else {
			err_msg("usage: scard watch [--timeout SECONDS] [--count EVENTS]");
			return EXIT_USAGE;
		}
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	int rc = open_context(&g_ctx);
	if (rc)
		return rc;
	pthread_t sig_thread;
	pthread_create(&sig_thread, NULL, signal_thread, &set);

	double deadline = timeout >= 0 ? now_s() + timeout : 0;
	long events = 0;
	struct watched *w = NULL;
	size_t nw = 0;
	SCARD_READERSTATE *st = NULL;
	DWORD pnp_state = SCARD_STATE_UNAWARE;
	bool relist = true, first = true;

	while (!g_stop) {
		if (relist) {
			struct reader_list rl;
			LONG rv = list_readers(g_ctx, &rl);
			if (rv != SCARD_S_SUCCESS) {
				rc = pcsc_fail("cannot list readers", rv);
				break;
			}
			/* readers that went away */
			for (size_t i = 0; i < nw; i++) {
				bool still = false;
				for (size_t k = 0; k < rl.n && !still; k++)
					still = !strcmp(rl.names[k], w[i].name);
				if (!still) {
					emit("reader removed", w[i].name, 0, NULL, 0);
					events++;
				}
			}
			struct watched *nwv = calloc(rl.n + 1, sizeof(*nwv));
			if (!nwv) {
				reader_list_free(&rl);
				rc = EXIT_ERROR;
				break;
			}
			for (size_t k = 0; k < rl.n; k++) {
				nwv[k].name = strdup(rl.names[k]);
				for (size_t i = 0; i < nw; i++)
					if (!strcmp(w[i].name, rl.names[k]))
						nwv[k].state = w[i].state;
				if (!first && !nwv[k].state) {
					emit("reader added", rl.names[k], 0, NULL, 0);
					events++;
				}
			}
			free_watched(w, nw);
			w = nwv;
			nw = rl.n;
			reader_list_free(&rl);
			free(st);
			st = calloc(nw + 1, sizeof(*st));
			if (!st) {
				rc = EXIT_ERROR;
				break;
			}
			relist = false;
		}
		for (size_t i = 0; i < nw; i++) {
			st[i].szReader = w[i].name;
			st[i].dwCurrentState = w[i].state;
		}
		st[nw].szReader = PNP_NAME;
		st[nw].dwCurrentState = pnp_state;

		DWORD wait_ms = INFINITE;
		if (timeout >= 0) {
			double left = deadline - now_s();
			if (left <= 0)
				break;
			wait_ms = (DWORD)(left * 1000) + 1;
		}
		LONG rv = SCardGetStatusChange(g_ctx, wait_ms, st, (DWORD)nw + 1);
		if (g_stop || rv == (LONG)SCARD_E_CANCELLED)
			break;
		if (rv == (LONG)SCARD_E_TIMEOUT)
			continue;
		if (rv == (LONG)SCARD_E_UNKNOWN_READER || rv == (LONG)SCARD_E_READER_UNAVAILABLE) {
			relist = true; /* a reader went between our list and the wait */
			continue;
		}
		if (rv != SCARD_S_SUCCESS) {
			rc = pcsc_fail("waiting for changes", rv);
			break;
		}
		for (size_t i = 0; i < nw; i++) {
			DWORD now = st[i].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
			if (!(st[i].dwEventState & SCARD_STATE_CHANGED) && !first)
				continue;
			size_t atr_len = (now & SCARD_STATE_PRESENT) && st[i].cbAtr <= MAX_ATR_SIZE
						 ? st[i].cbAtr
						 : 0;
			if (now & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE))
				relist = true;
			if (first) {
				emit((now & SCARD_STATE_PRESENT) ? "card present" : "no card",
				     w[i].name, now, st[i].rgbAtr, atr_len);
			} else {
				const char *ev[6];
				int n = describe(w[i].state, now, ev, 6);
				for (int k = 0; k < n; k++) {
					bool show_atr = !strcmp(ev[k], "card inserted");
					emit(ev[k], w[i].name, now, st[i].rgbAtr,
					     show_atr ? atr_len : 0);
					events++;
				}
			}
			w[i].state = now;
		}
		/* Hand the reader-events counter back every time: from 4:5 on the
		 * library then reports any reader added or removed since, even
		 * between two of our calls. */
		if ((st[nw].dwEventState & SCARD_STATE_CHANGED) && !first)
			relist = true;
		pnp_state = st[nw].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
		first = false;
		if (count > 0 && events >= count)
			break;
		if (relist)
			continue;
	}
	pthread_cancel(sig_thread);
	pthread_join(sig_thread, NULL);
	free(st);
	free_watched(w, nw);
	SCardReleaseContext(g_ctx);
	return rc;
}
