/* One log voice for the daemon: stderr in the foreground, syslog otherwise. */
#ifndef SCARDD_LOG_H
#define SCARDD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Drivers (vpcd, ccid) call log_msg and log_xxd from the daemon with
 * pcsc-lite's priorities 0..3, so these values are part of the driver ABI;
 * the daemon must be linked with its symbols exported (-rdynamic). */
enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO = 1,
	LOG_LEVEL_ERROR = 2,
	LOG_LEVEL_CRITICAL = 3
};

void log_init(const char *ident, enum log_level level, bool foreground);
void log_set_level(enum log_level level);
/* Syslog mode: errors also go to stderr while on (start-up, before detaching). */
void log_startup_to_stderr(bool on);
bool log_enabled(enum log_level level);
void log_set_apdu(bool on);
bool log_apdu_enabled(void);

/* Thread-safe: one line per call, prefixed with time and level. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs "<label>: 00 A4 04 00 ..." at INFO when APDU logging is on (label: 320 bytes at most). */
void log_hex(const char *label, const uint8_t *data, size_t len);
/* For drivers: "<msg> 00 A4 ..." at the given level (pcsc-lite's signature). */
void log_xxd(int level, const char *msg, const unsigned char *buffer, int size);
__attribute__((noreturn, format(printf, 1, 2))) void fatal(const char *fmt, ...);

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_crit(...) log_msg(LOG_LEVEL_CRITICAL, __VA_ARGS__)

#endif
