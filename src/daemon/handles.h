/*
 * The reader model, part two: card handles (SCARDHANDLE), share modes, the
 * transaction lock, and the reset/removed warnings other handles receive.
 *
 * A handle belongs to a reader (holding a reference, so a removed reader
 * stays readable) and to a handle_list, the set of one client's handles.
 * Like readers.c this is bookkeeping on the loop's thread that calls
 * nothing outside the model; a freed lock queues the reader for
 * readers_next_woken().
 */
#ifndef SCARDD_HANDLES_H
#define SCARDD_HANDLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reader;

enum handle_event { HANDLE_EVENT_NONE = 0, HANDLE_EVENT_RESET, HANDLE_EVENT_REMOVED };

struct handle_list {
	struct handle *head;
	size_t n;
};

struct handle {
	int32_t id;
	struct handle_list *owner;
	struct reader *reader;
	uint32_t share_mode;
	uint32_t protocol;       /* active protocol given to the client */
	enum handle_event event; /* pending warning for this handle */
	struct handle *next_in_owner;
	struct handle *next_in_reader;
};

/*
 * Creates a handle with a fresh random id, unique among the handles of
 * every registered reader and of owner, in owner's list and on the reader.
 */
struct handle *handle_new(struct handle_list *owner, struct reader *r, uint32_t share_mode);
/* Unlinks and frees; releases the lock if it held it and recomputes sharing. */
void handle_free(struct handle *h);

struct handle *handle_find(const struct handle_list *owner, int32_t id);

/* Sharing check for a new connect; SCARD_S_SUCCESS or SCARD_E_SHARING_VIOLATION. */
long handles_may_share(const struct reader *r, uint32_t share_mode);
/* Changes a handle's share mode (reconnect) and recomputes the reader's sharing. */
void handle_set_share_mode(struct handle *h, uint32_t share_mode);

/* True when another handle holds the reader's transaction lock. */
bool handle_locked_out(const struct handle *h);
/* Takes or nests the lock; false if another handle holds it. */
bool handle_lock(struct handle *h);
/* Drops one nesting level; releases at zero. Returns false if h does not hold it. */
bool handle_unlock(struct handle *h);
/* Releases the lock outright (removal, disconnect, client death). */
void reader_lock_release(struct reader *r);

/* Sets the warning on every handle of the reader except `except` (may be NULL). */
void handles_flag_all(struct reader *r, enum handle_event ev, const struct handle *except);

/* A random non-negative 31-bit value: handle and context ids. */
int32_t handles_random_id(void);

#endif
