/*
 * The debug line of each request, written once, when it is answered:
 *
 *   client 3 (pid 4242, uid 1000): SCARD_CONNECT reader "Virtual PCD 00 00":
 *       SCARD_E_NO_SMARTCARD (0x8010000C)
 *
 * (one line in the log): who asked, what, on which reader for the commands
 * that name one (by the reader in the request or the card handle's), and
 * the result by pcsc-lite's name and in hex. APDU lines (-a) name the
 * client and the reader too. Nothing is formatted unless the line will be
 * written: each entry point asks log_enabled first.
 *
 * Session code calls these where a request starts and where it is answered
 * (session.c); handlers know nothing of them.
 */
#ifndef SCARDD_REQUEST_LOG_H
#define SCARDD_REQUEST_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

struct session;

/* What a session's request was, kept until it is answered (only when logging). */
struct request_note {
	uint32_t cmd; /* 0: nothing noted */
	bool was_waiting;
	int32_t major, minor;             /* CMD_VERSION: what the client asked for */
	char reader[WIRE_MAX_READERNAME]; /* "" when the request names none */
};

/* ---- for session.c ---- */

/* A request starts: notes what the line will need while the request is still whole. */
void request_log_begin(struct session *s, const struct wire_msg *msg);
/* It was answered (or deliberately not) with msg: rv and all from the reply. */
void request_log_answered(struct session *s, const struct wire_msg *msg);
/* It was answered with rv alone (the driver never answered). */
void request_log_rv(struct session *s, uint32_t rv);
/* It made the daemon close the connection. */
void request_log_closed(struct session *s);
/* -a: "client 3 (pid 42, uid 0) reader "X" APDU: 00 A4 ...", the reader the request named. */
void request_log_apdu(struct session *s, const char *what, const uint8_t *data, size_t len);
/* A command APDU's line: as request_log_apdu, PIN-bearing commands masked (apdu_log.h). */
void request_log_command_apdu(struct session *s, const uint8_t *data, size_t len);

/* ---- pure, for the above and for tests ---- */

/* pcsc-lite's name of a SCARD_* code ("SCARD_E_NO_SMARTCARD"), or NULL. */
const char *request_log_rv_name(uint32_t rv);

/* "client 3 (pid 42, uid 1000)"; pid and uid are left out when not known. */
size_t request_log_client(char *buf, size_t cap, uint64_t id, pid_t pid, uid_t uid);

struct request_line {
	uint64_t client;
	pid_t pid;           /* <= 0: unknown */
	uid_t uid;           /* (uid_t)-1: unknown */
	const char *cmd;     /* "SCARD_CONNECT" */
	const char *detail;  /* after the command (CMD_VERSION: the version asked), or NULL */
	const char *reader;  /* NULL or "": the request names none */
	const char *outcome; /* what happened, before the result, or NULL */
	bool has_rv;         /* the answer carried a result code */
	uint32_t rv;
};

/* The whole line; returns its length (cut to cap - 1). */
size_t request_log_line(char *buf, size_t cap, const struct request_line *l);

#endif
