/*
 * scardd's own status report (WIRE_SCARDD_STATUS; the daemon's
 * status_report.h describes the lines): asked for on a connection of its
 * own, read and split into lines of key=value fields. pcsc-lite's daemons
 * do not answer it; the report is then absent.
 */
#ifndef SCARD_DAEMON_REPORT_H
#define SCARD_DAEMON_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPORT_MAX_FIELDS 24

struct report_line {
	const char *kind; /* "scardd", "socket", "client", "card", "more", "reader" */
	size_t n;
	const char *key[REPORT_MAX_FIELDS];
	const char *value[REPORT_MAX_FIELDS];
};

struct daemon_report {
	char *text; /* owns the strings the lines point into */
	struct report_line *lines;
	size_t n;
};

/* Reads exactly len bytes from a daemon's socket, waiting at most 3 s for each part. */
bool daemon_read_full(int fd, uint8_t *buf, size_t len);
/* Asks the daemon on path; false (report empty) if it does not answer. */
bool daemon_report_fetch(const char *path, struct daemon_report *r);
/* Splits text (taken over; NUL-terminated) into lines. Pure, for tests too. */
bool daemon_report_parse(char *text, struct daemon_report *r);
void daemon_report_free(struct daemon_report *r);

/* The first line of that kind, or NULL. */
const struct report_line *report_first(const struct daemon_report *r, const char *kind);
/* A field's value, or "" when the line has none. */
const char *report_get(const struct report_line *l, const char *key);

#endif
