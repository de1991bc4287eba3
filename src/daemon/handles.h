/*
 * Card handles (SCARDHANDLE) and what hangs off them: share modes, the
 * transaction lock, and the reset/removed warnings other handles receive.
 */
#ifndef SCARDD_HANDLES_H
#define SCARDD_HANDLES_H

#include <stdbool.h>
#include <stdint.h>

struct daemon;
struct reader;
struct session;

enum handle_event { HANDLE_EVENT_NONE = 0, HANDLE_EVENT_RESET, HANDLE_EVENT_REMOVED };

struct handle {
	int32_t id;
	struct session *session;
	struct reader *reader;
	uint32_t share_mode;
	uint32_t protocol;       /* active protocol given to the client */
	enum handle_event event; /* pending warning for this handle */
	bool pending;            /* connect still running in the worker */
	struct handle *next_in_session;
	struct handle *next_in_reader;
};

/* Creates a handle with a fresh random id, linked to the session and the reader. */
struct handle *handle_new(struct daemon *d, struct session *s, struct reader *r, uint32_t share_mode);
/* Unlinks and frees; releases the lock if it held it and recomputes sharing. */
void handle_free(struct daemon *d, struct handle *h);

struct handle *handle_find(const struct session *s, int32_t id);
bool handle_id_in_use(const struct daemon *d, int32_t id);

/* Sharing check for a new connect; SCARD_S_SUCCESS or SCARD_E_SHARING_VIOLATION. */
long handles_may_share(const struct reader *r, uint32_t share_mode);
void handles_recount(struct daemon *d, struct reader *r);

/* True when another handle holds the reader's transaction lock. */
bool handle_locked_out(const struct handle *h);
/* Takes or nests the lock; false if another handle holds it. */
bool handle_lock(struct handle *h);
/* Drops one nesting level; releases at zero. Returns false if h does not hold it. */
bool handle_unlock(struct daemon *d, struct handle *h);
/* Releases the lock outright (removal, disconnect, client death). */
void reader_lock_release(struct daemon *d, struct reader *r);

/* Sets the warning on every handle of the reader except `except` (may be NULL). */
void handles_flag_all(struct reader *r, enum handle_event ev, const struct handle *except);

/* Sessions waiting for a reader's transaction lock. */
void lock_wait_enqueue(struct reader *r, struct session *s);
void lock_wait_remove(struct session *s);

#endif
