/*
 * Internals of libpcsclite.so.1 (scardd's WinSCard client library).
 *
 * One daemon connection per application context, as pcsc-lite does. The
 * handles applications hold are our own values, mapped here to the daemon's
 * context and card numbers, so a context can move to a new daemon connection
 * (after a daemon restart, or in a forked child) without the application
 * noticing; card handles from the old connection are recognised as stale.
 *
 * Locks: registry_lock (registry.c) guards the context and card lists and the
 * fields marked "registry"; it is only ever held for a few instructions and
 * always taken last. Each context's `lock` serialises its daemon exchanges and
 * guards the fields marked "lock".
 */
#ifndef SCARDD_CLIENT_H
#define SCARDD_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include <winscard.h>

#include "wire.h"

/* Internal result: the daemon connection broke during an exchange. It is
 * turned into SCARD_E_NO_SERVICE (or a recovery) before reaching the API. */
#define CLIENT_CONN_LOST ((LONG)-1)

/* pcsc-lite's retry period for SCARD_E_SHARING_VIOLATION. */
#define CLIENT_RETRY_USEC 100000u

#define CLIENT_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* ---- conn.c: one socket to the daemon ---- */

/* Bytes read ahead: a reply struct and the data after it come in one read. */
#define CLIENT_READ_AHEAD 512u

struct client_conn {
	int fd;                    /* -1 when not connected */
	struct wire_params params; /* what was negotiated on this socket */
	/* records in this daemon's fixed arrays (16, or 48 for Fedora's patched pcscd) */
	uint32_t legacy_slots;
	uint8_t ahead[CLIENT_READ_AHEAD]; /* read from the socket, not yet consumed */
	size_t ahead_off, ahead_len;
};

void conn_init(struct client_conn *c);
/* The socket path: $PCSCLITE_CSOCK_NAME or the compiled-in default. */
void conn_default_path(char out[CLIENT_PATH_MAX]);
/* SCARD_E_NO_SERVICE when nothing listens on path. */
LONG conn_open(struct client_conn *c, const char *path);
void conn_close(struct client_conn *c);
/*
 * Sends msg's header and struct, then len bytes of data (transmit/control),
 * in one system call. CLIENT_CONN_LOST (and the socket closed) on failure.
 */
LONG conn_send(struct client_conn *c, const struct wire_msg *msg, const void *data, size_t len);
/* Up to CONN_TOGETHER_MAX requests without data in one system call: the
 * daemon gets them at once and answers them in order (the caller reads
 * every answer). */
#define CONN_TOGETHER_MAX 3
LONG conn_send_together(struct client_conn *c, const struct wire_msg *msgs, size_t n);
/* Reads and decodes the fixed reply of msg->cmd into msg. */
LONG conn_recv_reply(struct client_conn *c, struct wire_msg *msg);
/* Reads exactly len raw bytes (APDU answers, reader arrays). */
LONG conn_recv_raw(struct client_conn *c, void *buf, size_t len);
/* conn_send() then conn_recv_reply(): one plain request/reply exchange. */
LONG conn_call(struct client_conn *c, struct wire_msg *msg);
/* Waits for the socket to become readable: 1 readable, 0 timed out,
 * CLIENT_CONN_LOST. timeout_ms < 0 waits for ever. */
LONG conn_wait_readable(struct client_conn *c, int timeout_ms);
/* Bytes already waiting on the socket (0 if none or on error). */
size_t conn_pending(struct client_conn *c);
/* Reads and discards len bytes (an answer the caller has no room for). */
LONG conn_discard(struct client_conn *c, size_t len);

/* ---- negotiate.c: CMD_VERSION ---- */

/* Runs the handshake on a fresh socket; fills c->params.proto. */
LONG negotiate_version(struct client_conn *c);

/* ---- registry.c: contexts, card handles, locks, fork ---- */

struct client_ctx {
	SCARDCONTEXT handle;        /* what the application holds */
	struct client_ctx *next;    /* registry */
	unsigned refs;              /* registry: the list's own + one per user */
	bool released;              /* registry: SCardReleaseContext has begun */
	bool waiting;               /* registry: inside SCardGetStatusChange */
	bool cancel_pending;        /* registry: SCardCancel arrived during the wait */
	uint32_t daemon_ctx;        /* registry: the daemon's number for it */
	char path[CLIENT_PATH_MAX]; /* immutable: where this context's daemon lives */
	DWORD scope;                /* immutable */

	pthread_mutex_t lock;    /* one exchange at a time */
	struct client_conn conn; /* lock */
	unsigned generation;     /* lock: bumped whenever the connection changes */

	/* lock: the last reader-state array received */
	struct wire_reader_state *states;
	size_t n_states;
	size_t states_cap;
	uint8_t *array_buf;
	size_t array_cap;
};

/* What a card handle resolves to; copied out so no lock is needed to use it. */
struct card_ref {
	SCARDHANDLE handle;
	struct client_ctx *ctx; /* referenced and locked by card_enter() */
	int32_t daemon_card;
	unsigned generation; /* ctx->generation when the card was connected */
	char reader[WIRE_MAX_READERNAME];
};

/* Creates a context bound to path/scope (not yet connected); NULL on ENOMEM. */
struct client_ctx *ctx_new(const char *path, DWORD scope);
/* Frees a context that was never published. */
void ctx_free(struct client_ctx *c);
/* Gives c an application handle and makes it findable. */
void registry_publish(struct client_ctx *c);

/* Looks up and locks a live context; NULL if h is not one. */
struct client_ctx *ctx_enter(SCARDCONTEXT h);
void ctx_leave(struct client_ctx *c);
/* Unpublishes a context for SCardReleaseContext; returns it referenced and
 * unlocked (caller ends with ctx_leave after locking), or NULL. */
struct client_ctx *ctx_take_for_release(SCARDCONTEXT h);
/* True if h names a live context (no daemon round trip). */
bool ctx_exists(SCARDCONTEXT h);

/* Registers a card handle on a locked context; returns the application's
 * handle, 0 on ENOMEM. */
SCARDHANDLE card_add(struct client_ctx *c, int32_t daemon_card, const char *reader);
/* Forgets a card handle (after a successful disconnect). */
void card_remove(SCARDHANDLE h);
/* Drops every card handle of c (context release). */
void card_remove_all(struct client_ctx *c);
/* Resolves and locks the context of a card handle: SCARD_E_INVALID_HANDLE if
 * unknown. Leave with ctx_leave(ref->ctx). */
LONG card_enter(SCARDHANDLE h, struct card_ref *ref);
/* True while the card's connection is the one it was created on. */
bool card_link_ok(const struct card_ref *ref);

/* SCardCancel bookkeeping (registry lock inside). */
void ctx_set_waiting(struct client_ctx *c, bool waiting);
bool ctx_cancel_pending(struct client_ctx *c);
void ctx_set_daemon_ctx(struct client_ctx *c, uint32_t daemon_ctx);
/* Marks a waiting context cancelled; returns false if it was not waiting.
 * *daemon_ctx and path (CLIENT_PATH_MAX) receive what SCARD_CANCEL needs. */
bool ctx_request_cancel(SCARDCONTEXT h, uint32_t *daemon_ctx, char *path, bool *found);
/* The same for a context SCardReleaseContext has already unpublished. */
bool ctx_cancel_own(struct client_ctx *c, uint32_t *daemon_ctx, char *path);

/* True if PCSCLITE_NO_BLOCKING was set when the library first ran. */
bool client_no_blocking(void);

/* ---- context.c: shared by the API files ---- */

/* Connects a context's socket, negotiates and establishes (again). */
LONG ctx_reconnect(struct client_ctx *c);
/* Fetches the reader-state array into c->states (0x16+0x17, or 0x12). */
LONG ctx_fetch_states(struct client_ctx *c);
/* The same on 4:6, with one more request without data (after, answered
 * into *after) in the same write: one round trip. after only where
 * ctx_has_sized_arrays (elsewhere NULL: SCARD_F_INTERNAL_ERROR). */
LONG ctx_fetch_states_and(struct client_ctx *c, struct wire_msg *after);
/* Takes a 4:6 daemon's announced array length, checked against our bound
 * (out of bounds: the stream cannot be trusted, CLIENT_CONN_LOST). */
LONG ctx_set_state_count(struct client_ctx *c, int64_t count);
/* Asks for the array and reads it: 0x17 after a 4:6 length, else 0x12. */
LONG ctx_fetch_array(struct client_ctx *c);
/* ctx_fetch_array on 4:6 while registered: takes out an event signal that
 * landed inside the array (see context.c). */
LONG ctx_fetch_array_registered(struct client_ctx *c, bool *signalled, LONG *signal_rv);
/* Reads one array into c->states: a fixed-size one (legacy: 0x12, 4:4/4:5
 * WAIT) or the length the last 0x16 announced. */
LONG ctx_read_states(struct client_ctx *c, bool legacy);
/* True if the connection speaks 4:6's variable-length arrays. */
bool ctx_has_sized_arrays(const struct client_ctx *c);
/* The connection failed: close it so the next context call reconnects. */
void ctx_lost(struct client_ctx *c);
const struct wire_reader_state *ctx_find_reader(const struct client_ctx *c, const char *name);
/* Runs op on a locked context, reconnecting once if the connection is (or
 * turns out to be) gone; op must be safe to repeat on a new connection. */
LONG client_call_with_recovery(struct client_ctx *c, LONG (*op)(struct client_ctx *, void *),
			       void *arg);
/* Sends SCARD_CANCEL for daemon_ctx on a separate short connection. */
LONG client_send_cancel(const char *path, uint32_t daemon_ctx);

#endif
