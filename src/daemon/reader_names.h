/*
 * Reader names as pcscd 1.9.9 makes them, so that applications that pick a
 * reader by name find it under scardd too:
 *
 *   USB:          "<ifdFriendlyName> [<interface>] (<serial>) XX YY"
 *   reader.conf:  "<FRIENDLYNAME> XX YY"
 *
 * XX numbers the readers of one driver library, YY the slot. The interface
 * string (from the device, non-ASCII bytes shown as '.') is left out with
 * -I or when the device has none; the serial number with -S, when the
 * device has none, or when the interface string already contains it.
 * $PCSCLITE_FILTER_EXTEND_READER_NAMES is appended before " XX YY", and a
 * reader whose name contains one of the ':'-separated patterns of
 * $PCSCLITE_FILTER_IGNORE_READER_NAMES is not added at all.
 *
 * Pure string functions: no state, no allocation unless said.
 */
#ifndef SCARDD_READER_NAMES_H
#define SCARDD_READER_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Longest name part before the extension and " XX YY" (longer ones are cut). */
#define READER_NAME_BASE_MAX 121

/*
 * The name of slot `slot` of the index-th reader of a driver, into out
 * (WIRE_MAX_READERNAME bytes): base cut to READER_NAME_BASE_MAX, extend
 * (may be NULL), " XX YY", the whole cut to fit.
 */
void reader_name_build(char *out, size_t cap, const char *base, const char *extend, unsigned index,
		       unsigned slot);

/*
 * Whether name contains one of the non-empty ':'-separated patterns of
 * filters (NULL or "": none). The first such pattern is copied to pattern.
 */
bool reader_name_ignored(const char *name, const char *filters, char *pattern, size_t cap);

/*
 * "<friendly> [<interface>] (<serial>)" for a USB reader (malloc'd, NULL
 * when out of memory). interface and serial may be NULL (absent, or left
 * out by -I / -S).
 */
char *reader_name_usb(const char *friendly, const char *interface, const char *serial);

#endif
