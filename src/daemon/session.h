/*
 * One client connection: its negotiated wire parameters, its context and
 * card handles, its buffered input and output. A state machine on the event
 * loop that never blocks: a request either is answered at once, or parks the
 * session (worker job, transaction lock) until it can be.
 */
#ifndef SCARDD_SESSION_H
#define SCARDD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

struct daemon;
struct peer;
struct socket_spec;
struct handle;
struct reader;

enum session_park {
	PARK_NONE = 0,
	PARK_JOB,       /* a worker runs the request */
	PARK_LOCK,      /* waiting for a reader's transaction lock */
};

struct session {
	struct daemon *d;
	int fd;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	const struct socket_spec *sock; /* the socket it came in on */
	struct wire_params params;
	bool versioned;         /* CMD_VERSION seen */
	bool order_known;       /* byte order settled by the first header */
	uint32_t legacy_slots;  /* records in 0x12 and 4:4/4:5 WAIT arrays */
	uint32_t told_slots;    /* 4:6: the length 0x16 last answered, 0 = none */
	bool fetch_pending;     /* 4:6: registered by 0x13, array not fetched yet */
	bool signal_held;       /* an event signal waits for that fetch */
	uint32_t held_rv;

	uint32_t context;       /* the connection's context, if has_context */
	bool has_context;
	struct handle *handles;
	size_t n_handles;

	uint8_t *in;            /* unparsed request bytes */
	size_t in_len, in_cap;
	uint8_t *out;           /* unsent reply bytes: out[out_off, out_len) */
	size_t out_off, out_len, out_cap;
	int mask;               /* what the loop watches now */

	enum session_park park;
	struct job *job;        /* PARK_JOB: the job answering the request */
	uint64_t job_timer;     /* fails the request if the driver never answers */
	struct wire_msg parked; /* PARK_LOCK: the request to retry */
	struct reader *lock_reader;
	struct session *lock_next;
	uint64_t lock_timer;    /* a waiting BEGIN gives up after a short while */

	bool waiting;           /* registered for status-change signals */
	struct session *wait_prev, *wait_next;
	bool closing;           /* hung up, write failed, or bad input */

	struct session *prev, *next; /* daemon's list */
};

/* Accept callback (data: the struct served_socket): creates the session and
 * starts watching its socket. */
void session_accept(void *data, const struct peer *peer);

/* Queues reply bytes and tries to send them now. Never frees the session. */
void session_send(struct session *s, const void *buf, size_t len);
void session_send_msg(struct session *s, const struct wire_msg *msg);

/* Marks the session dead; it is freed by whoever is driving it. */
void session_fail(struct session *s, const char *why);

/*
 * Continues after a parked request was answered: processes buffered input,
 * updates what the loop watches, and frees the session if it is closing.
 * Returns false if the session was freed.
 */
bool session_resume(struct session *s);

/* Frees every session (daemon shutdown). */
void sessions_free_all(struct daemon *d);

/* The session whose context is ctx, or NULL. */
struct session *session_by_context(const struct daemon *d, uint32_t ctx);
bool context_in_use(const struct daemon *d, uint32_t ctx);

#endif
