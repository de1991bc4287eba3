/*
 * One client connection: its socket and buffers, its negotiated wire
 * parameters, its context and card handles, and what it waits for.
 *
 * A state machine on the event loop that never blocks: a request (requests.h)
 * is answered at once, or parks the session on a job (jobs.h) or on a
 * reader's transaction lock until it can be. Only session code (session.c,
 * session_wait.c) writes the parking, lock-wait and status-wait fields;
 * request handlers say what they need through their outcome and the
 * functions below.
 *
 * Sessions are freed in one place, the daemon's before-sleep pass
 * (sessions_reap), never in the middle of a callback: a session marked
 * closing stays valid until then.
 */
#ifndef SCARDD_SESSION_H
#define SCARDD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "access.h"
#include "handles.h"
#include "peer_identity.h"
#include "readers.h"
#include "request_log.h"
#include "wire.h"

struct daemon;
struct job;
struct peer;
struct socket_spec;

enum session_park {
	PARK_NONE = 0,
	PARK_JOB,  /* a job runs the request */
	PARK_LOCK, /* waiting for a reader's transaction lock */
	PARK_AUTH, /* waiting for polkit's answer (polkit_gate.h) */
};

struct session {
	struct daemon *d;
	int fd;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	const struct socket_spec *sock; /* the socket it came in on */
	struct peer_identity identity;  /* who it is (access_identify) */
	bool identified;                /* identity read beyond pid, uid and gid */
	uint64_t connected_ms;          /* CLOCK_BOOTTIME: when it connected */
	struct access_state access;     /* what the policy lets it do (access.c) */

	/* the client's protocol state (request handlers keep it) */
	struct wire_params params;
	bool versioned;        /* CMD_VERSION seen */
	bool order_known;      /* byte order settled by the first header */
	uint32_t legacy_slots; /* records in 0x12 and 4:4/4:5 WAIT arrays; 0: not
				* guessed yet (legacy_slots() in requests.h) */
	uint32_t told_slots;   /* 4:6: the length 0x16 last answered, 0 = none */
	uint32_t context;      /* the connection's context, if has_context */
	bool has_context;
	struct handle_list handles;

	/* buffered bytes */
	uint8_t *in; /* unparsed request bytes */
	size_t in_len, in_cap;
	uint8_t *out; /* unsent reply bytes: out[out_off, out_len) */
	size_t out_off, out_len, out_cap;
	bool rest_awaited; /* the request being read already had its short wait */
	int mask;          /* what the loop watches now */

	/* what it waits for (session code only) */
	enum session_park park;
	struct job *job;        /* PARK_JOB: the job answering the request */
	uint64_t job_timer;     /* fails the request if the driver never answers */
	struct wire_msg parked; /* PARK_LOCK, PARK_AUTH: the request to retry */
	bool auth_for_request;  /* PARK_AUTH: for parked (else for the connection) */
	bool auth_granted;      /* polkit allowed the parked request: its retry passes */
	unsigned polkit_logged; /* polkit refusals logged for it (polkit_gate.c) */
	struct reader_waiter lock_wait;
	uint64_t lock_timer; /* a waiting BEGIN gives up after a short while */
	bool waiting;        /* registered for status-change signals */
	struct session *wait_prev, *wait_next;
	bool fetch_pending; /* 4:6: registered by 0x13, array not fetched yet */
	bool signal_held;   /* an event signal waits for that fetch */
	uint32_t held_rv;
	struct request_note note; /* the request being answered, for its log line */

	bool closing; /* hung up, write failed, or bad input */
	bool dirty;   /* in the daemon's list of sessions to settle */
	bool process; /* buffered input may hold a request to run */
	struct session *next_dirty;
	struct session *prev, *next; /* the daemon's list */
};

/* Accept callback (data: the struct served_socket). */
void session_accept(void *data, const struct peer *peer);

/* Queues reply bytes and sends what the socket takes now. */
void session_send(struct session *s, const void *buf, size_t len);
void session_send_msg(struct session *s, const struct wire_msg *msg);
/* A reply struct and the bytes that follow it (transmit, control), sent together. */
void session_send_msg_data(struct session *s, const struct wire_msg *msg, const void *data,
			   size_t len);

/* Marks the session dead (why: logged, or NULL); it is freed before the loop sleeps. */
void session_fail(struct session *s, const char *why);

/* polkit's answer for a session in PARK_AUTH: its request runs again, or is refused. */
void session_auth_answered(struct session *s, bool allowed);
/* The session with that id, or NULL (it left). */
struct session *session_by_id(const struct daemon *d, uint64_t id);

/* The session whose context is ctx, or NULL. */
struct session *session_by_context(const struct daemon *d, uint32_t ctx);

/* ---- for the daemon's before-sleep pass ---- */

/* Runs the buffered requests of every session that may have one; false if none could. */
bool sessions_process(struct daemon *d);
bool sessions_want_processing(const struct daemon *d);
/*
 * Ends the pass for every session touched in it: frees the closing ones and
 * updates what the loop watches for the others. True if any was freed.
 */
bool sessions_settle(struct daemon *d);
/* Frees every session (daemon shutdown). */
void sessions_free_all(struct daemon *d);

/* ---- waits (session_wait.c) ---- */

/* Registers for status-change signals (CMD_WAIT_READER_STATE_CHANGE). */
void session_wait_status(struct session *s);
/* Unregisters; returns whether it was registered. */
bool session_stop_waiting(struct session *s);
/* Sends {0, rv} to a registered session and unregisters it. */
void session_signal(struct session *s, uint32_t rv);
/* 4:6: between 0x13 and the array fetch a signal is held (see cmd_states.c). */
void session_hold_signals(struct session *s);
void session_release_signals(struct session *s);
/* Every registered session gets {0, SCARD_S_SUCCESS}; the list empties. */
void sessions_signal_all(struct daemon *d);
/* Retries the lock waiters of every reader whose lock came free or that went away. */
void sessions_retry_lock_waiters(struct daemon *d);

/* ---- parking (session.c) ---- */

/* Frees the session's handles as pcsc-lite does on release/death (cmd_card.c). */
void session_release_handles(struct session *s);

#endif
