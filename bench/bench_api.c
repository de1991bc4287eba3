#include "bench_api.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *sym(void *lib, const char *name)
{
	void *p = dlsym(lib, name);
	if (!p) {
		fprintf(stderr, "%s: %s\n", name, dlerror());
		exit(2);
	}
	return p;
}

void pcsc_load(struct pcsc *api, const char *path)
{
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
		exit(2);
	}
	*(void **)&api->establish = sym(lib, "SCardEstablishContext");
	*(void **)&api->release = sym(lib, "SCardReleaseContext");
	*(void **)&api->list = sym(lib, "SCardListReaders");
	*(void **)&api->connect = sym(lib, "SCardConnect");
	*(void **)&api->disconnect = sym(lib, "SCardDisconnect");
	*(void **)&api->begin = sym(lib, "SCardBeginTransaction");
	*(void **)&api->end = sym(lib, "SCardEndTransaction");
	*(void **)&api->transmit = sym(lib, "SCardTransmit");
	*(void **)&api->status = sym(lib, "SCardStatus");
	*(void **)&api->get_status_change = sym(lib, "SCardGetStatusChange");
}

void check(LONG rv, LONG want, const char *what)
{
	if (rv != want) {
		fprintf(stderr, "%s: 0x%08lX (wanted 0x%08lX)\n", what, (unsigned long)rv,
			(unsigned long)want);
		exit(1);
	}
}

void transmit_once(const struct pcsc *api, SCARDHANDLE card, DWORD protocol)
{
	/* SELECT by AID; what it says does not matter to the instant card. */
	static const BYTE apdu[] = { 0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00,
				     0x00, 0x00, 0x03, 0x10, 0x10, 0x00 };
	SCARD_IO_REQUEST pci = { protocol, sizeof(SCARD_IO_REQUEST) };
	BYTE resp[258];
	DWORD len = sizeof resp;
	check(api->transmit(card, &pci, apdu, sizeof apdu, NULL, resp, &len), SCARD_S_SUCCESS,
	      "SCardTransmit");
	if (len != 2 || resp[0] != 0x90 || resp[1] != 0x00) {
		fprintf(stderr, "SCardTransmit: unexpected %lu-byte answer\n", (unsigned long)len);
		exit(1);
	}
}

double now_us(void)
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

double median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double process_cpu_us(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the command name, which may hold spaces: state is
	 * field 3, utime 14 and stime 15. */
	const char *p = strrchr(buf, ')');
	unsigned long long utime, stime;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
			 &stime) != 2)
		return -1;
	return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

double process_sleeps(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return -1;
	double total = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		char status[384], line[256];
		snprintf(status, sizeof status, "/proc/%ld/task/%s/status", (long)pid, e->d_name);
		FILE *f = fopen(status, "r");
		if (!f)
			continue; /* the thread ended meanwhile */
		unsigned long long n;
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "voluntary_ctxt_switches: %llu", &n) == 1)
				total += (double)n;
		fclose(f);
	}
	closedir(dir);
	return total;
}

double arg_number(const char *text, const char *what)
{
	char *end;
	double v = strtod(text, &end);
	if (*text == '\0' || *end != '\0' || !(v > 0)) {
		fprintf(stderr, "%s must be a positive number, not \"%s\"\n", what, text);
		exit(2);
	}
	return v;
}

int io_all(int fd, void *buf, size_t n, bool writing)
{
	char *p = buf;
	while (n > 0) {
		ssize_t k = writing ? write(fd, p, n) : read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}
