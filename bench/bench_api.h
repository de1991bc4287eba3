/*
 * What the benchmark programs share: a libpcsclite.so.1 opened with dlopen
 * (so one program measures Debian's library and ours against the same
 * daemon), a clock, medians, and a daemon's CPU time from /proc.
 */
#ifndef BENCH_API_H
#define BENCH_API_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <winscard.h>

struct pcsc {
	LONG (*establish)(DWORD, LPCVOID, LPCVOID, LPSCARDCONTEXT);
	LONG (*release)(SCARDCONTEXT);
	LONG (*list)(SCARDCONTEXT, LPCSTR, LPSTR, LPDWORD);
	LONG (*connect)(SCARDCONTEXT, LPCSTR, DWORD, DWORD, LPSCARDHANDLE, LPDWORD);
	LONG (*disconnect)(SCARDHANDLE, DWORD);
	LONG (*begin)(SCARDHANDLE);
	LONG (*end)(SCARDHANDLE, DWORD);
	LONG(*transmit)
	(SCARDHANDLE, const SCARD_IO_REQUEST *, LPCBYTE, DWORD, SCARD_IO_REQUEST *, LPBYTE,
	 LPDWORD);
	LONG (*status)(SCARDHANDLE, LPSTR, LPDWORD, LPDWORD, LPDWORD, LPBYTE, LPDWORD);
	LONG (*get_status_change)(SCARDCONTEXT, DWORD, SCARD_READERSTATE *, DWORD);
};

/* Loads the library at path or exits 2 naming what is missing. */
void pcsc_load(struct pcsc *api, const char *path);

/* Exits 1 naming the call when rv is not want. */
void check(LONG rv, LONG want, const char *what);

/* One SCardTransmit of a short APDU on card (the instant driver answers
 * 90 00); exits on failure. */
void transmit_once(const struct pcsc *api, SCARDHANDLE card, DWORD protocol);

/* CLOCK_MONOTONIC in microseconds (comparable between processes). */
double now_us(void);

/* Sorts v in place and returns its median. */
double median(double *v, size_t n);

/* User + system CPU time of process pid, in microseconds; -1 if unknown. */
double process_cpu_us(pid_t pid);

/*
 * Times the threads of process pid went to sleep so far (voluntary context
 * switches, summed over the threads in /proc/PID/task): each one is a wake-up.
 * -1 if unknown.
 */
double process_sleeps(pid_t pid);

/* Reads or writes exactly n bytes (retrying after signals); -1 on an error or EOF. */
int io_all(int fd, void *buf, size_t n, bool writing);

/* Parses a positive number argument or exits 2. */
double arg_number(const char *text, const char *what);

#endif
