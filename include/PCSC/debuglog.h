/*
 * Logging for reader drivers (scardd). A driver loaded by the daemon writes
 * to the daemon's log through log_msg and log_xxd, which scardd exports (as
 * pcscd does): these names, their signatures and the PCSC_LOG_* priorities
 * are part of the driver interface. The Log* macros prefix each message with
 * file, line and function.
 *
 * Only what scardd provides to drivers is declared here: pcscd's own log
 * controls (log types, categories, levels, log_msg_rv) are not, so a driver
 * using them fails to build rather than to load.
 */
#ifndef __debuglog_h__
#define __debuglog_h__

#ifndef PCSC_API
#if defined(__GNUC__) || defined(__clang__)
#define PCSC_API __attribute__((visibility("default")))
#else
#define PCSC_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Priorities, lowest first; the daemon's -d/-i/-e/-C choose which are logged. */
enum { PCSC_LOG_DEBUG = 0, PCSC_LOG_INFO = 1, PCSC_LOG_ERROR = 2, PCSC_LOG_CRITICAL = 3 };

/* Categories of pcscd's APDU log (values only: scardd logs APDUs with -a). */
#define DEBUG_CATEGORY_NOTHING 0
#define DEBUG_CATEGORY_APDU 1
#define DEBUG_CATEGORY_SW 2

#if defined(__GNUC__) || defined(__clang__)
#define PCSC_LOG_PRINTF_(fmt_arg, first) __attribute__((format(printf, fmt_arg, first)))
#else
#define PCSC_LOG_PRINTF_(fmt_arg, first)
#endif

/* One log line at priority, printf-style. */
PCSC_API void log_msg(const int priority, const char *fmt, ...) PCSC_LOG_PRINTF_(2, 3);
/* One log line at priority: msg, then size bytes of buffer in hex. */
PCSC_API void log_xxd(const int priority, const char *msg, const unsigned char *buffer,
		      const int size);

#ifdef NO_LOG
/* Drivers built without logging (embedded): every macro is a no-op. */
#define Log0(priority) ((void)0)
#define Log1(priority, fmt) ((void)0)
#define Log2(priority, fmt, a) ((void)0)
#define Log3(priority, fmt, a, b) ((void)0)
#define Log4(priority, fmt, a, b, c) ((void)0)
#define Log5(priority, fmt, a, b, c, d) ((void)0)
#define Log9(priority, fmt, a, b, c, d, e, f, g, h) ((void)0)
#define LogXxd(priority, msg, buffer, size) ((void)0)
#else
/* "file:line:function() message": where in the driver the line comes from. */
#define PCSC_LOG_AT_(priority, fmt, ...) \
	log_msg(priority, "%s:%d:%s() " fmt, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define Log0(priority) log_msg(priority, "%s:%d:%s()", __FILE__, __LINE__, __func__)
#define Log1(priority, fmt) log_msg(priority, "%s:%d:%s() " fmt, __FILE__, __LINE__, __func__)
#define Log2(priority, fmt, a) PCSC_LOG_AT_(priority, fmt, a)
#define Log3(priority, fmt, a, b) PCSC_LOG_AT_(priority, fmt, a, b)
#define Log4(priority, fmt, a, b, c) PCSC_LOG_AT_(priority, fmt, a, b, c)
#define Log5(priority, fmt, a, b, c, d) PCSC_LOG_AT_(priority, fmt, a, b, c, d)
#define Log9(priority, fmt, a, b, c, d, e, f, g, h) \
	PCSC_LOG_AT_(priority, fmt, a, b, c, d, e, f, g, h)
#define LogXxd(priority, msg, buffer, size) log_xxd(priority, msg, buffer, size)
#endif

/* Older drivers' spelling: informational lines. */
#define DebugLogA(fmt) Log1(PCSC_LOG_INFO, fmt)
#define DebugLogB(fmt, a) Log2(PCSC_LOG_INFO, fmt, a)
#define DebugLogC(fmt, a, b) Log3(PCSC_LOG_INFO, fmt, a, b)

#ifdef __cplusplus
}
#endif

#endif
