/* One log voice: formatted lines to stderr in the foreground, syslog otherwise. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* A line longer than this is cut; the daemon never needs more. */
#define LOG_LINE_MAX 2048
/* log_hex shows at most this many bytes, then a "... (N bytes)" tail. */
#define LOG_HEX_MAX 128

static atomic_int log_level = LOG_LEVEL_ERROR;
static atomic_bool log_foreground = true;
static atomic_bool log_apdu = false;
static atomic_bool log_startup_stderr = false;

static const char *const level_names[] = { "DEBUG", "INFO", "ERROR", "CRITICAL" };
static const int level_syslog[] = { LOG_DEBUG, LOG_INFO, LOG_ERR, LOG_CRIT };

static int clamp_level(int level)
{
	if (level < LOG_LEVEL_DEBUG)
		return LOG_LEVEL_DEBUG;
	if (level > LOG_LEVEL_CRITICAL)
		return LOG_LEVEL_CRITICAL;
	return level;
}

void log_init(const char *ident, enum log_level level, bool foreground)
{
	atomic_store(&log_level, clamp_level((int)level));
	atomic_store(&log_foreground, foreground);
	if (!foreground)
		openlog(ident ? ident : "scardd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_startup_to_stderr(bool on)
{
	atomic_store(&log_startup_stderr, on);
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, clamp_level((int)level));
}

bool log_enabled(enum log_level level)
{
	return (int)level >= atomic_load(&log_level);
}

void log_set_apdu(bool on)
{
	atomic_store(&log_apdu, on);
}

bool log_apdu_enabled(void)
{
	return atomic_load(&log_apdu);
}

/* Reader names and paths come from outside: keep them from forging lines. */
static void sanitize(char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			*s = '?';
	}
}

static size_t format_prefix(char *buf, size_t size, int level)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
	int m = snprintf(buf + n, size - n, ".%03ld %s ", ts.tv_nsec / 1000000L,
			 level_names[level]);
	if (m < 0)
		return n;
	return n + (size_t)m < size ? n + (size_t)m : size - 1;
}

/* One write() per line so concurrent threads never interleave within a line. */
static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		len -= (size_t)w;
	}
}

static void emit(int level, const char *msg)
{
	if (!atomic_load(&log_foreground)) {
		syslog(level_syslog[level], "%s", msg);
		/* until the daemon detaches, whoever started it reads errors too */
		if (level >= LOG_LEVEL_ERROR && atomic_load(&log_startup_stderr)) {
			char line[LOG_LINE_MAX + 16];
			int n = snprintf(line, sizeof(line), "scardd: %s\n", msg);
			if (n > 0)
				write_all(STDERR_FILENO, line,
					  (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
		}
		return;
	}
	char line[LOG_LINE_MAX + 64];
	size_t n = format_prefix(line, sizeof line - LOG_LINE_MAX, level);
	size_t mlen = strnlen(msg, LOG_LINE_MAX - 1);
	memcpy(line + n, msg, mlen);
	n += mlen;
	line[n++] = '\n';
	write_all(STDERR_FILENO, line, n);
}

static void vlog(int level, const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX];
	int saved = errno;

	vsnprintf(msg, sizeof msg, fmt, ap);
	sanitize(msg);
	emit(level, msg);
	errno = saved;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	int lv = clamp_level((int)level);
	if (!log_enabled((enum log_level)lv))
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(lv, fmt, ap);
	va_end(ap);
}

/* "label: 00 A4 ..." with at most LOG_HEX_MAX bytes, then a length tail. */
static void emit_hex(int level, const char *label, const uint8_t *data, size_t len)
{
	static const char digits[] = "0123456789ABCDEF";
	char msg[LOG_LINE_MAX];

	/* labels name the client and the reader (request_log.c): up to 320 bytes */
	int n = snprintf(msg, sizeof msg, "%.320s:", label ? label : "data");
	size_t pos = n > 0 ? (size_t)n : 0;
	size_t shown = len < LOG_HEX_MAX ? len : LOG_HEX_MAX;
	for (size_t i = 0; i < shown && data; i++) {
		msg[pos++] = ' ';
		msg[pos++] = digits[data[i] >> 4];
		msg[pos++] = digits[data[i] & 0x0f];
	}
	msg[pos] = '\0';
	if (shown < len)
		snprintf(msg + pos, sizeof msg - pos, " ... (%zu bytes)", len);
	sanitize(msg);
	emit(level, msg);
}

/* APDU logging is its own switch (-a): it is shown whatever the level. */
void log_hex(const char *label, const uint8_t *data, size_t len)
{
	if (log_apdu_enabled())
		emit_hex(LOG_LEVEL_INFO, label, data, len);
}

void log_xxd(int level, const char *msg, const unsigned char *buffer, int size)
{
	int lv = clamp_level(level);
	if (log_enabled((enum log_level)lv) && size >= 0)
		emit_hex(lv, msg, buffer, (size_t)size);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_LEVEL_CRITICAL, fmt, ap);
	va_end(ap);
	exit(1);
}
