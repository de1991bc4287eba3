/*
 * The process's contexts and card handles, their locks, and fork handling.
 *
 * Application handles are random non-zero 31-bit numbers of our own (like the
 * daemon's, so they look the same to applications that print them), unique
 * among all contexts and cards of the process.
 *
 * Fork: the child must neither inherit a locked mutex nor share the parent's
 * daemon sockets (a request from both processes on one socket corrupts the
 * stream, and a child keeping the socket open would hide the parent's death
 * from the daemon). The child therefore closes its copies of every socket,
 * forgets every card handle (they belong to the parent) and keeps its
 * contexts unconnected: the next context call reconnects, as after a daemon
 * restart.
 */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct card_entry {
	SCARDHANDLE handle;
	struct client_ctx *ctx;
	int32_t daemon_card;
	unsigned generation;
	char reader[WIRE_MAX_READERNAME];
	struct card_entry *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct client_ctx *contexts; /* registry */
static struct card_entry *cards;    /* registry */
static uint64_t rng_state;          /* registry */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool no_blocking;

static void lock_registry(void)
{
	pthread_mutex_lock(&registry_lock);
}

static void unlock_registry(void)
{
	pthread_mutex_unlock(&registry_lock);
}

static void seed_rng(void)
{
	uint64_t seed = 0;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
	}
	rng_state = seed ^ ((uint64_t)getpid() << 17) ^ 0x9E3779B97F4A7C15ull;
	if (rng_state == 0)
		rng_state = 1;
}

/* xorshift64*: handles only need to be unpredictable enough not to collide
 * with stale values an application still holds. */
static uint32_t next_random(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static bool handle_in_use(LONG h)
{
	for (struct client_ctx *c = contexts; c; c = c->next) {
		if (c->handle == h)
			return true;
	}
	for (struct card_entry *e = cards; e; e = e->next) {
		if (e->handle == h)
			return true;
	}
	return false;
}

/* Caller holds registry_lock. */
static LONG new_handle(void)
{
	for (;;) {
		LONG h = (LONG)(next_random() & 0x7FFFFFFFu);

		if (h != 0 && !handle_in_use(h))
			return h;
	}
}

static void atfork_prepare(void)
{
	lock_registry();
}

static void atfork_parent(void)
{
	unlock_registry();
}

static void atfork_child(void)
{
	/* Only this thread exists now: nobody else can hold any of these locks. */
	pthread_mutex_init(&registry_lock, NULL);
	seed_rng();
	struct card_entry *e = cards;
	while (e) {
		struct card_entry *next = e->next;

		free(e);
		e = next;
	}
	cards = NULL;
	for (struct client_ctx *c = contexts; c; c = c->next) {
		pthread_mutex_init(&c->lock, NULL);
		conn_close(&c->conn); /* our copy only; the parent's stays open */
		c->generation++;
		c->refs = 1; /* references held by the parent's other threads are gone */
		c->waiting = false;
		c->cancel_pending = false;
	}
}

static void init_library(void)
{
	const char *nb = getenv("PCSCLITE_NO_BLOCKING");

	no_blocking = nb;
	seed_rng();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void ensure_init(void)
{
	pthread_once(&init_once, init_library);
}

bool client_no_blocking(void)
{
	ensure_init();
	return no_blocking;
}

struct client_ctx *ctx_new(const char *path, DWORD scope)
{
	ensure_init();
	struct client_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c);
		return NULL;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->scope = scope;
	c->refs = 1;
	conn_init(&c->conn);
	return c;
}

void ctx_free(struct client_ctx *c)
{
	if (!c)
		return;
	conn_close(&c->conn);
	pthread_mutex_destroy(&c->lock);
	free(c->states);
	free(c->array_buf);
	free(c);
}

void registry_publish(struct client_ctx *c)
{
	lock_registry();
	c->handle = new_handle();
	c->next = contexts;
	contexts = c;
	unlock_registry();
}

/* Caller holds registry_lock. */
static struct client_ctx *find_ctx(SCARDCONTEXT h)
{
	if (h == 0)
		return NULL;
	for (struct client_ctx *c = contexts; c; c = c->next) {
		if (c->handle == h)
			return c->released ? NULL : c;
	}
	return NULL;
}

static void unref(struct client_ctx *c)
{
	lock_registry();
	bool last = --c->refs == 0;
	unlock_registry();
	if (last)
		ctx_free(c);
}

struct client_ctx *ctx_enter(SCARDCONTEXT h)
{
	lock_registry();
	struct client_ctx *c = find_ctx(h);
	if (c)
		c->refs++;
	unlock_registry();
	if (!c)
		return NULL;
	pthread_mutex_lock(&c->lock);
	/* Released while we waited for the lock? */
	lock_registry();
	if (c->released) {
		unlock_registry();
		pthread_mutex_unlock(&c->lock);
		unref(c);
		return NULL;
	}
	unlock_registry();
	return c;
}

void ctx_leave(struct client_ctx *c)
{
	pthread_mutex_unlock(&c->lock);
	unref(c);
}

struct client_ctx *ctx_take_for_release(SCARDCONTEXT h)
{
	lock_registry();
	struct client_ctx *c = find_ctx(h);
	if (c) {
		c->released = true;
		for (struct client_ctx **pp = &contexts; *pp; pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		}
		/* The list's reference now belongs to the caller. */
	}
	unlock_registry();
	return c;
}

bool ctx_exists(SCARDCONTEXT h)
{
	lock_registry();
	bool found = find_ctx(h);
	unlock_registry();
	return found;
}

SCARDHANDLE card_add(struct client_ctx *c, int32_t daemon_card, const char *reader)
{
	struct card_entry *e = calloc(1, sizeof(*e));

	if (!e)
		return 0;
	e->ctx = c;
	e->daemon_card = daemon_card;
	e->generation = c->generation;
	snprintf(e->reader, sizeof(e->reader), "%s", reader);
	lock_registry();
	e->handle = new_handle();
	e->next = cards;
	cards = e;
	unlock_registry();
	return e->handle;
}

void card_remove(SCARDHANDLE h)
{
	lock_registry();
	struct card_entry *found = NULL;
	for (struct card_entry **pp = &cards; *pp; pp = &(*pp)->next) {
		if ((*pp)->handle == h) {
			found = *pp;
			*pp = found->next;
			break;
		}
	}
	unlock_registry();
	free(found);
}

void card_remove_all(struct client_ctx *c)
{
	lock_registry();
	struct card_entry *gone = NULL;
	struct card_entry **pp = &cards;
	while (*pp) {
		struct card_entry *e = *pp;

		if (e->ctx == c) {
			*pp = e->next;
			e->next = gone;
			gone = e;
		} else {
			pp = &e->next;
		}
	}
	unlock_registry();
	while (gone) {
		struct card_entry *next = gone->next;

		free(gone);
		gone = next;
	}
}

/* Caller holds registry_lock. */
static struct card_entry *find_card(SCARDHANDLE h)
{
	if (h == 0)
		return NULL;
	for (struct card_entry *e = cards; e; e = e->next) {
		if (e->handle == h)
			return e;
	}
	return NULL;
}

LONG card_enter(SCARDHANDLE h, struct card_ref *ref)
{
	lock_registry();
	struct card_entry *e = find_card(h);
	if (!e || e->ctx->released) {
		unlock_registry();
		return SCARD_E_INVALID_HANDLE;
	}
	struct client_ctx *c = e->ctx;
	c->refs++;
	unlock_registry();

	pthread_mutex_lock(&c->lock);
	/* Re-check: another thread may have disconnected or released meanwhile. */
	lock_registry();
	e = find_card(h);
	if (!e || e->ctx != c || c->released) {
		unlock_registry();
		pthread_mutex_unlock(&c->lock);
		unref(c);
		return SCARD_E_INVALID_HANDLE;
	}
	ref->handle = h;
	ref->ctx = c;
	ref->daemon_card = e->daemon_card;
	ref->generation = e->generation;
	memcpy(ref->reader, e->reader, sizeof(ref->reader));
	unlock_registry();
	return SCARD_S_SUCCESS;
}

bool card_link_ok(const struct card_ref *ref)
{
	return ref->ctx->conn.fd >= 0 && ref->generation == ref->ctx->generation;
}

void ctx_set_waiting(struct client_ctx *c, bool waiting)
{
	lock_registry();
	c->waiting = waiting;
	c->cancel_pending = false;
	unlock_registry();
}

bool ctx_cancel_pending(struct client_ctx *c)
{
	lock_registry();
	bool pending = c->cancel_pending;
	unlock_registry();
	return pending;
}

void ctx_set_daemon_ctx(struct client_ctx *c, uint32_t daemon_ctx)
{
	lock_registry();
	c->daemon_ctx = daemon_ctx;
	unlock_registry();
}

static bool mark_cancel(struct client_ctx *c, uint32_t *daemon_ctx, char *path)
{
	if (!c->waiting)
		return false;
	c->cancel_pending = true;
	*daemon_ctx = c->daemon_ctx;
	memcpy(path, c->path, CLIENT_PATH_MAX);
	return true;
}

bool ctx_request_cancel(SCARDCONTEXT h, uint32_t *daemon_ctx, char *path, bool *found)
{
	lock_registry();
	struct client_ctx *c = find_ctx(h);
	*found = c;
	bool waiting = false;
	if (c)
		waiting = mark_cancel(c, daemon_ctx, path);
	unlock_registry();
	return waiting;
}

/* Used by SCardReleaseContext on a context it has already unpublished. */
bool ctx_cancel_own(struct client_ctx *c, uint32_t *daemon_ctx, char *path)
{
	lock_registry();
	bool waiting = mark_cancel(c, daemon_ctx, path);
	unlock_registry();
	return waiting;
}
