/*
 * ifd_fault: an IFD handler (driver API v3) whose reader misbehaves on demand,
 * for the daemon's integration tests.
 *
 * DEVICENAME is a control directory; tests create and remove files in it
 * while the daemon runs:
 *   slots          decimal slot count, 1..8 (read at open; default 1)
 *   card<N>        a card is in slot N; its content, if any, is the ATR in hex
 *   mute<N>        the card in slot N does not answer power-up
 *   pps_fail<N>    the card in slot N answers power-up but fails every
 *                  protocol switch (IFDHSetProtocolParameters:
 *                  IFD_ERROR_PTS_FAILURE)
 *   hang           IFDHTransmitToICC and IFDHControl block until it is removed
 *   hang_presence  IFDHICCPresence blocks until it is removed
 *   events         (at open) report card events through
 *                  TAG_IFD_POLLING_THREAD_WITH_TIMEOUT instead of being polled
 *   wait_hold      an event wait does not begin while it exists (libccid
 *                  submits its transfer before it waits); its own changes,
 *                  and any made before the held wait begins, wake no wait.
 *                  Holding "until_stop_lost", the wait begins once a stop
 *                  for its slot was lost
 *   stop_in_wait_only  TAG_IFD_STOP_POLLING_THREAD stops only a wait in
 *                  progress, as libccid cancels only the transfer in
 *                  flight: a stop before the wait begins is lost
 *   fail_open      IFDHCreateChannelByName fails
 *   hang_open      IFDHCreateChannelByName blocks until it is removed (a
 *                  reader that appears while the daemon already serves)
 *   vanish         the device is gone: every call on the open reader but
 *                  IFDHCloseChannel returns IFD_NO_SUCH_DEVICE
 *   leak_on_close  IFDHCloseChannel loses a 1000-byte allocation (in
 *                  fault_leak), for the sanitizer run's leak reports
 *   transmit_rc    IFDHTransmitToICC returns this IFD code (decimal)
 *   control_rc     IFDHControl returns this IFD code
 *   attr_rc        IFDHGetCapabilities returns this IFD code for the
 *                  SCARD_ATTR_* tags (>= 0x10000) clients ask through
 *                  SCardGetAttrib; the driver's own TAG_IFD_* are unaffected
 *   transmit_len   garbage lengths: after a successful call, the length the
 *   control_len    driver reports (transmit *RxLength, control
 *   attr_len       *pdwBytesReturned, attribute *Length, TAG_IFD_* *Length)
 *   tag_len        is "N" or, with a leading '+', the room it was given plus
 *                  N; only the real answer is ever written
 * The driver appends "presence N", "transmit N", "control N", "power N",
 * "attrib N" lines to <dir>/calls, one per call, so tests can count what the
 * daemon did; in event mode also "wait_held N" (a wait is held),
 * "wait_stopped N" (a stop ended a wait) and "stop_lost N".
 *
 * A transmit answers the whole command echoed back followed by 90 00; control
 * code SCARD_CTL_CODE(1) echoes its input; SCARD_ATTR_VENDOR_NAME is
 * "scardd tests". Without a card<N> ATR the card answers 3B 80 80 01 01.
 *
 * Thread-safe (TAG_IFD_THREAD_SAFE = 1): the hang and event waits hold no
 * lock. Also loads under pcscd, which opens a multi-slot reader once per slot.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the meson build sets it for the whole project */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ifdhandler.h>
#include <reader.h>

#define MAX_SLOTS 8
#define MAX_ATR 64 /* more than a valid ATR, so tests can send bad ones */
#define CTL_ECHO SCARD_CTL_CODE(1)
#define HANG_STEP_MS 20
#define CALLS_FILE "calls"

static const char vendor_name[] = "scardd tests";
/* TD1 offers T=0 and TD2 T=1 (pcscd negotiates T=1); TCK = 0x80 ^ 0x80 ^ 0x01. */
static const UCHAR default_atr[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };

/* One per opened reader (Lun >> 16); several readers may share the library. */
struct fault_reader {
	struct fault_reader *next;
	DWORD index;
	char *dir;
	unsigned n_slots;
	bool events;
	/* Event mode: each slot's waiter owns an inotify fd, so events that
	 * arrive between two waits stay queued for it, and an eventfd to stop it. */
	int watch_fd[MAX_SLOTS];
	int stop_fd[MAX_SLOTS];
	bool waiting[MAX_SLOTS];   /* under readers_lock */
	bool stop_lost[MAX_SLOTS]; /* under readers_lock */
	unsigned opens;            /* pcscd opens a multi-slot reader once per slot */
	unsigned refs;             /* calls in progress; the record outlives CloseChannel */
	bool closed;
};

/* Guards the list and opens/refs/closed; never held while blocking. */
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault_reader *readers;

typedef RESPONSECODE (*wait_event_fn)(DWORD Lun, int timeout_ms);
typedef RESPONSECODE (*stop_wait_fn)(DWORD Lun);

/* ---- reader records ---- */

static void reader_free(struct fault_reader *r)
{
	for (unsigned i = 0; i < MAX_SLOTS; i++) {
		if (r->watch_fd[i] >= 0)
			close(r->watch_fd[i]);
		if (r->stop_fd[i] >= 0)
			close(r->stop_fd[i]);
	}
	free(r->dir);
	free(r);
}

static struct fault_reader *find_locked(DWORD index)
{
	for (struct fault_reader *r = readers; r; r = r->next)
		if (r->index == index)
			return r;
	return NULL;
}

/* The open reader behind Lun with a reference held, or NULL. */
static struct fault_reader *reader_get(DWORD Lun, unsigned *slot)
{
	pthread_mutex_lock(&readers_lock);
	struct fault_reader *r = find_locked(Lun >> 16);
	unsigned s = (unsigned)(Lun & 0xFFFF);
	if (r && s < r->n_slots)
		r->refs++;
	else
		r = NULL;
	pthread_mutex_unlock(&readers_lock);
	if (slot)
		*slot = s;
	return r;
}

static void reader_put(struct fault_reader *r)
{
	pthread_mutex_lock(&readers_lock);
	bool last = --r->refs == 0 && r->closed;
	pthread_mutex_unlock(&readers_lock);
	if (last)
		reader_free(r);
}

/* ---- the control directory ---- */

__attribute__((format(printf, 4, 5))) static bool ctl_path(const struct fault_reader *r, char *buf,
							   size_t cap, const char *fmt, ...)
{
	int n = snprintf(buf, cap, "%s/", r->dir);
	if (n < 0 || (size_t)n >= cap)
		return false;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, cap - (size_t)n, fmt, ap);
	va_end(ap);
	return m >= 0 && (size_t)m < cap - (size_t)n;
}

static bool ctl_exists(const struct fault_reader *r, const char *name)
{
	char path[PATH_MAX];
	return ctl_path(r, path, sizeof path, "%s", name) && access(path, F_OK) == 0;
}

static bool slot_file_exists(const struct fault_reader *r, const char *what, unsigned slot)
{
	char path[PATH_MAX];
	return ctl_path(r, path, sizeof path, "%s%u", what, slot) && access(path, F_OK) == 0;
}

/* Reads a small control file; -1 when it does not exist. */
static ssize_t ctl_read(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len + 1 < cap) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (ssize_t)len;
}

static void append_call(const struct fault_reader *r, const char *what, unsigned slot)
{
	char path[PATH_MAX];
	char line[64];
	if (!ctl_path(r, path, sizeof path, CALLS_FILE))
		return;
	int n = snprintf(line, sizeof line, "%s %u\n", what, slot);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	/* One write per line: O_APPEND keeps concurrent callers' lines whole. */
	while (write(fd, line, (size_t)n) < 0 && errno == EINTR)
		;
	close(fd);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The stuck reader: returns only once the test removes the file. */
static void hang_while(const struct fault_reader *r, const char *name)
{
	while (ctl_exists(r, name))
		sleep_ms(HANG_STEP_MS);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The ATR of the card in slot, from card<N>; 0 when there is no card. */
static size_t card_atr(const struct fault_reader *r, unsigned slot, UCHAR *atr)
{
	char path[PATH_MAX];
	char text[4 * MAX_ATR + 2];
	if (!ctl_path(r, path, sizeof path, "card%u", slot))
		return 0;
	ssize_t len = ctl_read(path, text, sizeof text);
	if (len < 0)
		return 0;
	size_t n = 0;
	int high = -1;
	/* Hex digits; anything else separates ("3B 80", "3B:80", "3b80"). */
	for (const char *p = text; *p && n < MAX_ATR; p++) {
		int v = hex_value(*p);
		if (v < 0) {
			high = -1;
			continue;
		}
		if (high < 0) {
			high = v;
		} else {
			atr[n++] = (UCHAR)(high << 4 | v);
			high = -1;
		}
	}
	if (n == 0) {
		memcpy(atr, default_atr, sizeof default_atr);
		n = sizeof default_atr;
	}
	return n;
}

static bool card_present(const struct fault_reader *r, unsigned slot)
{
	return slot_file_exists(r, "card", slot);
}

static bool vanished(const struct fault_reader *r)
{
	return ctl_exists(r, "vanish");
}

/* The decimal number in control file name ("+N" sets *relative); false if
 * the file does not exist or holds no number. */
static bool ctl_number(const struct fault_reader *r, const char *name, unsigned long long *value,
		       bool *relative)
{
	char path[PATH_MAX];
	char text[32];
	if (!ctl_path(r, path, sizeof path, "%s", name) || ctl_read(path, text, sizeof text) <= 0)
		return false;
	const char *p = text;
	*relative = *p == '+';
	if (*relative)
		p++;
	char *end;
	errno = 0;
	*value = strtoull(p, &end, 10);
	return end != p && errno == 0;
}

/* The IFD code control file name forces, or IFD_SUCCESS. */
static RESPONSECODE forced_rc(const struct fault_reader *r, const char *name)
{
	unsigned long long v;
	bool relative;
	return ctl_number(r, name, &v, &relative) ? (RESPONSECODE)v : IFD_SUCCESS;
}

/* The failure a test injected into a call: the device gone, else the code
 * in control file name, else IFD_SUCCESS. */
static RESPONSECODE injected(const struct fault_reader *r, const char *name)
{
	return vanished(r) ? IFD_NO_SUCH_DEVICE : forced_rc(r, name);
}

/* The length to report: real, unless control file name sets a garbage one
 * (absolute, or relative to the room the caller gave). */
static DWORD reported_len(const struct fault_reader *r, const char *name, DWORD given, DWORD real)
{
	unsigned long long v;
	bool relative;
	if (!ctl_number(r, name, &v, &relative))
		return real;
	return relative ? (DWORD)(given + v) : (DWORD)v;
}

/* Copies a capability value, or says how much room it needs. */
static RESPONSECODE put_value(PUCHAR Value, PDWORD Length, const void *src, size_t n)
{
	if (!Length)
		return IFD_COMMUNICATION_ERROR;
	if (*Length < n || (!Value && n)) {
		*Length = n;
		return IFD_ERROR_INSUFFICIENT_BUFFER;
	}
	if (n)
		memcpy(Value, src, n);
	*Length = n;
	return IFD_SUCCESS;
}

/* ---- card events (event mode) ---- */

/* Drains queued inotify events; true if one is about something but our log
 * or the wait's hold. */
static bool drain_watch(int fd)
{
	bool relevant = false;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return relevant;
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
			const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
			/* Our own calls log would otherwise wake the daemon forever. */
			if (ev->len == 0 || (strcmp(ev->name, CALLS_FILE) != 0 &&
					     strcmp(ev->name, "wait_hold") != 0))
				relevant = true;
			off += (ssize_t)(sizeof(struct inotify_event) + ev->len);
		}
	}
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the slot's next event wait is still held back (wait_hold). */
static bool wait_held(struct fault_reader *r, unsigned slot)
{
	char path[PATH_MAX];
	char text[32];
	if (!ctl_path(r, path, sizeof path, "wait_hold") || ctl_read(path, text, sizeof text) < 0)
		return false;
	if (strncmp(text, "until_stop_lost", strlen("until_stop_lost")) != 0)
		return true;
	pthread_mutex_lock(&readers_lock);
	bool lost = r->stop_lost[slot];
	pthread_mutex_unlock(&readers_lock);
	return !lost;
}

static void set_waiting(struct fault_reader *r, unsigned slot, bool on)
{
	pthread_mutex_lock(&readers_lock);
	r->waiting[slot] = on;
	pthread_mutex_unlock(&readers_lock);
}

/* Blocks until the control directory changes, the timeout, or stop_wait. */
static RESPONSECODE wait_event(DWORD Lun, int timeout_ms)
{
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_NO_SUCH_DEVICE;
	if (wait_held(r, slot)) {
		append_call(r, "wait_held", slot);
		while (wait_held(r, slot))
			sleep_ms(HANG_STEP_MS);
		/* the wait starts afresh: what changed before wakes it no more */
		(void)drain_watch(r->watch_fd[slot]);
	}
	set_waiting(r, slot, true);
	long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	struct pollfd pfd[2] = {
		{ .fd = r->watch_fd[slot], .events = POLLIN },
		{ .fd = r->stop_fd[slot], .events = POLLIN },
	};
	for (;;) {
		int left = -1;
		if (deadline >= 0) {
			long long rest = deadline - now_ms();
			if (rest <= 0)
				break;
			left = rest > INT_MAX ? INT_MAX : (int)rest;
		}
		int n = poll(pfd, 2, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (pfd[1].revents) {
			uint64_t count;
			while (read(pfd[1].fd, &count, sizeof count) < 0 && errno == EINTR)
				;
			append_call(r, "wait_stopped", slot);
			break;
		}
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			break;
		if ((pfd[0].revents & POLLIN) && drain_watch(pfd[0].fd))
			break;
	}
	set_waiting(r, slot, false);
	reader_put(r);
	return IFD_SUCCESS;
}

static RESPONSECODE stop_wait(DWORD Lun)
{
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_NO_SUCH_DEVICE;
	bool only_in_wait = ctl_exists(r, "stop_in_wait_only");
	pthread_mutex_lock(&readers_lock);
	bool lost = only_in_wait && !r->waiting[slot];
	if (lost)
		r->stop_lost[slot] = true;
	pthread_mutex_unlock(&readers_lock);
	if (lost) {
		append_call(r, "stop_lost", slot);
		reader_put(r);
		return IFD_SUCCESS;
	}
	uint64_t one = 1;
	while (write(r->stop_fd[slot], &one, sizeof one) < 0 && errno == EINTR)
		;
	reader_put(r);
	return IFD_SUCCESS;
}

static bool setup_events(struct fault_reader *r)
{
	const uint32_t mask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |
			      IN_MOVED_TO | IN_ATTRIB;
	for (unsigned i = 0; i < r->n_slots; i++) {
		r->watch_fd[i] = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		r->stop_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (r->watch_fd[i] < 0 || r->stop_fd[i] < 0 ||
		    inotify_add_watch(r->watch_fd[i], r->dir, mask) < 0)
			return false;
	}
	return true;
}

/* ---- entry points ---- */

/* Another open of an already open reader: same directory, one more user. */
static bool reopen(DWORD index, const char *dir)
{
	pthread_mutex_lock(&readers_lock);
	struct fault_reader *r = find_locked(index);
	bool same = r && strcmp(r->dir, dir) == 0;
	if (same)
		r->opens++;
	pthread_mutex_unlock(&readers_lock);
	return same;
}

RESPONSECODE IFDHCreateChannelByName(DWORD Lun, LPSTR DeviceName)
{
	struct stat st;
	if (!DeviceName || stat(DeviceName, &st) < 0 || !S_ISDIR(st.st_mode))
		return IFD_COMMUNICATION_ERROR;
	if (reopen(Lun >> 16, DeviceName))
		return IFD_SUCCESS;
	struct fault_reader *r = calloc(1, sizeof *r);
	if (!r)
		return IFD_COMMUNICATION_ERROR;
	for (unsigned i = 0; i < MAX_SLOTS; i++)
		r->watch_fd[i] = r->stop_fd[i] = -1;
	r->index = Lun >> 16;
	r->n_slots = 1;
	r->opens = 1;
	if (!(r->dir = strdup(DeviceName)) || ctl_exists(r, "fail_open"))
		goto fail;
	hang_while(r, "hang_open");

	char path[PATH_MAX];
	char text[32];
	if (ctl_path(r, path, sizeof path, "slots") && ctl_read(path, text, sizeof text) > 0) {
		long n = strtol(text, NULL, 10);
		r->n_slots = n < 1 ? 1 : n > MAX_SLOTS ? MAX_SLOTS : (unsigned)n;
	}
	r->events = ctl_exists(r, "events");
	if (r->events && !setup_events(r))
		goto fail;

	pthread_mutex_lock(&readers_lock);
	/* A different directory on a Lun still in use: refuse, keep the first. */
	bool taken = find_locked(r->index);
	if (!taken) {
		r->next = readers;
		readers = r;
	}
	pthread_mutex_unlock(&readers_lock);
	if (taken)
		goto fail;
	return IFD_SUCCESS;
fail:
	reader_free(r);
	return IFD_COMMUNICATION_ERROR;
}

RESPONSECODE IFDHCreateChannel(DWORD Lun, DWORD Channel)
{
	/* Without a control directory there is nothing to drive. */
	(void)Lun;
	(void)Channel;
	return IFD_COMMUNICATION_ERROR;
}

/* Only a pointer overwritten in a global is surely lost: no register or
 * stack slot the leak check scans can still hold it. */
static void *volatile leak_sink;

__attribute__((noinline)) static void fault_leak(void)
{
	leak_sink = malloc(1000);
	leak_sink = NULL;
}

RESPONSECODE IFDHCloseChannel(DWORD Lun)
{
	pthread_mutex_lock(&readers_lock);
	struct fault_reader *r = NULL;
	for (struct fault_reader **p = &readers; *p; p = &(*p)->next) {
		if ((*p)->index == Lun >> 16) {
			r = *p;
			if (--r->opens == 0)
				*p = r->next;
			break;
		}
	}
	bool gone = r && r->opens == 0;
	bool unused = gone && r->refs == 0;
	bool leak = gone && ctl_exists(r, "leak_on_close");
	if (gone) {
		r->closed = true;
		/* Wake any waiter still blocked in wait_event; it frees the record. */
		uint64_t one = 1;
		for (unsigned i = 0; i < r->n_slots; i++)
			if (r->stop_fd[i] >= 0)
				(void)!write(r->stop_fd[i], &one, sizeof one);
	}
	pthread_mutex_unlock(&readers_lock);
	if (unused)
		reader_free(r);
	if (leak)
		fault_leak();
	return r ? IFD_SUCCESS : IFD_COMMUNICATION_ERROR;
}

RESPONSECODE IFDHGetCapabilities(DWORD Lun, DWORD Tag, PDWORD Length, PUCHAR Value)
{
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_COMMUNICATION_ERROR;
	/* SCARD_ATTR_* tags carry a class in their high word; TAG_IFD_* do not. */
	bool attribute = Tag >= 0x10000;
	if (attribute)
		append_call(r, "attrib", slot);
	RESPONSECODE rc = attribute     ? injected(r, "attr_rc")
			  : vanished(r) ? IFD_NO_SUCH_DEVICE
					: IFD_SUCCESS;
	if (rc != IFD_SUCCESS) {
		reader_put(r);
		return rc;
	}
	DWORD given = Length ? *Length : 0;
	UCHAR byte;
	UCHAR atr[MAX_ATR];
	wait_event_fn wait = wait_event;
	stop_wait_fn stop = stop_wait;
	switch (Tag) {
	case TAG_IFD_ATR: rc = put_value(Value, Length, atr, card_atr(r, slot, atr)); break;
	case TAG_IFD_SLOTS_NUMBER:
		byte = (UCHAR)r->n_slots;
		rc = put_value(Value, Length, &byte, 1);
		break;
	case TAG_IFD_SIMULTANEOUS_ACCESS:
		byte = 16;
		rc = put_value(Value, Length, &byte, 1);
		break;
	case TAG_IFD_THREAD_SAFE:
	case TAG_IFD_SLOT_THREAD_SAFE:
		byte = 1;
		rc = put_value(Value, Length, &byte, 1);
		break;
	case SCARD_ATTR_VENDOR_NAME:
		rc = put_value(Value, Length, vendor_name, sizeof vendor_name);
		break;
	case TAG_IFD_POLLING_THREAD_WITH_TIMEOUT:
		rc = r->events ? put_value(Value, Length, &wait, sizeof wait) : IFD_ERROR_TAG;
		break;
	case TAG_IFD_STOP_POLLING_THREAD:
		rc = r->events ? put_value(Value, Length, &stop, sizeof stop) : IFD_ERROR_TAG;
		break;
	default: rc = IFD_ERROR_TAG; break;
	}
	if (rc == IFD_SUCCESS)
		*Length = reported_len(r, attribute ? "attr_len" : "tag_len", given, *Length);
	reader_put(r);
	return rc;
}

RESPONSECODE IFDHSetCapabilities(DWORD Lun, DWORD Tag, DWORD Length, PUCHAR Value)
{
	(void)Length;
	(void)Value;
	struct fault_reader *r = reader_get(Lun, NULL);
	bool gone = r && vanished(r);
	if (r)
		reader_put(r);
	if (gone)
		return IFD_NO_SUCH_DEVICE;
	return Tag == TAG_IFD_DEVICE_REMOVED ? IFD_SUCCESS : IFD_ERROR_TAG;
}

RESPONSECODE IFDHSetProtocolParameters(DWORD Lun, DWORD Protocol, UCHAR Flags, UCHAR PTS1,
				       UCHAR PTS2, UCHAR PTS3)
{
	(void)Protocol;
	(void)Flags;
	(void)PTS1;
	(void)PTS2;
	(void)PTS3;
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_COMMUNICATION_ERROR;
	RESPONSECODE rc = IFD_SUCCESS;
	if (vanished(r))
		rc = IFD_NO_SUCH_DEVICE;
	else if (slot_file_exists(r, "pps_fail", slot))
		rc = IFD_ERROR_PTS_FAILURE;
	reader_put(r);
	return rc;
}

RESPONSECODE IFDHPowerICC(DWORD Lun, DWORD Action, PUCHAR Atr, PDWORD AtrLength)
{
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_COMMUNICATION_ERROR;
	append_call(r, "power", slot);
	RESPONSECODE rc = IFD_SUCCESS;
	UCHAR atr[MAX_ATR];
	size_t len = 0;
	switch (vanished(r) ? 0 : Action) {
	case 0: /* the device is gone, whatever was asked */ rc = IFD_NO_SUCH_DEVICE; break;
	case IFD_POWER_DOWN: break;
	case IFD_POWER_UP:
	case IFD_RESET:
		len = card_atr(r, slot, atr);
		if (len == 0)
			rc = IFD_ICC_NOT_PRESENT;
		else if (slot_file_exists(r, "mute", slot))
			rc = IFD_ERROR_POWER_ACTION;
		else if (!Atr || !AtrLength || *AtrLength < len)
			rc = IFD_COMMUNICATION_ERROR;
		if (rc != IFD_SUCCESS)
			len = 0;
		break;
	default: rc = IFD_NOT_SUPPORTED; break;
	}
	if (len)
		memcpy(Atr, atr, len);
	if (AtrLength)
		*AtrLength = len;
	reader_put(r);
	return rc;
}

RESPONSECODE IFDHTransmitToICC(DWORD Lun, SCARD_IO_HEADER SendPci, PUCHAR TxBuffer, DWORD TxLength,
			       PUCHAR RxBuffer, PDWORD RxLength, PSCARD_IO_HEADER RecvPci)
{
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_COMMUNICATION_ERROR;
	append_call(r, "transmit", slot);
	hang_while(r, "hang");
	RESPONSECODE rc = injected(r, "transmit_rc");
	if (rc != IFD_SUCCESS)
		; /* an injected failure comes first */
	else if (!card_present(r, slot))
		rc = IFD_ICC_NOT_PRESENT;
	else if (slot_file_exists(r, "mute", slot))
		rc = IFD_RESPONSE_TIMEOUT;
	else if (!RxLength || !RxBuffer || (TxLength && !TxBuffer) || *RxLength < TxLength + 2)
		rc = IFD_ERROR_INSUFFICIENT_BUFFER;
	if (rc == IFD_SUCCESS) {
		DWORD given = *RxLength;
		if (TxLength)
			memmove(RxBuffer, TxBuffer, TxLength);
		RxBuffer[TxLength] = 0x90;
		RxBuffer[TxLength + 1] = 0x00;
		*RxLength = reported_len(r, "transmit_len", given, TxLength + 2);
		if (RecvPci)
			RecvPci->Protocol = SendPci.Protocol;
	} else if (RxLength) {
		*RxLength = 0;
	}
	reader_put(r);
	return rc;
}

RESPONSECODE IFDHControl(DWORD Lun, DWORD dwControlCode, PUCHAR TxBuffer, DWORD TxLength,
			 PUCHAR RxBuffer, DWORD RxLength, LPDWORD pdwBytesReturned)
{
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_COMMUNICATION_ERROR;
	append_call(r, "control", slot);
	hang_while(r, "hang");
	RESPONSECODE rc = injected(r, "control_rc");
	DWORD returned = 0;
	if (rc != IFD_SUCCESS)
		; /* an injected failure comes first */
	else if (dwControlCode != CTL_ECHO)
		rc = IFD_ERROR_NOT_SUPPORTED;
	else if (RxLength < TxLength || (TxLength && (!TxBuffer || !RxBuffer)))
		rc = IFD_ERROR_INSUFFICIENT_BUFFER;
	else
		returned = TxLength;
	if (returned)
		memmove(RxBuffer, TxBuffer, returned);
	if (rc == IFD_SUCCESS)
		returned = reported_len(r, "control_len", RxLength, returned);
	if (pdwBytesReturned)
		*pdwBytesReturned = returned;
	reader_put(r);
	return rc;
}

RESPONSECODE IFDHICCPresence(DWORD Lun)
{
	unsigned slot;
	struct fault_reader *r = reader_get(Lun, &slot);
	if (!r)
		return IFD_NO_SUCH_DEVICE;
	append_call(r, "presence", slot);
	hang_while(r, "hang_presence");
	RESPONSECODE rc = IFD_ICC_NOT_PRESENT;
	if (vanished(r))
		rc = IFD_NO_SUCH_DEVICE;
	else if (card_present(r, slot))
		rc = IFD_ICC_PRESENT;
	reader_put(r);
	return rc;
}
