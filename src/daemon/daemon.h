/*
 * The daemon: what the loop owns and how one pass of it ends.
 *
 *   event loop ── sessions (session.h) ── requests (requests.h)
 *        │               │                     │
 *        │               └── reader model (readers.h, handles.h)
 *        │                                     │
 *        └── jobs (jobs.h) ── devices (device.h) ── workers (worker.h)
 *
 * Work collected during a pass (sessions to settle, lock waiters to retry,
 * jobs to run, status waiters to wake) is done in one place, the loop's
 * before-sleep hook (daemon.c), so no module calls another to notify it.
 */
#ifndef SCARDD_DAEMON_H
#define SCARDD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include "bundle.h"
#include "device.h"
#include "jobs.h"
#include "options.h"
#include "readers.h"

struct event_loop;
struct listener;
struct audit;
struct loop_runner;
struct policy;
struct polkit_check;
struct session;
struct usb_hotplug;

/* A listening socket and the settings its clients get. */
struct served_socket {
	struct daemon *d;
	const struct socket_spec *spec;
	struct listener *listener;
};

struct daemon {
	const struct options *opts;
	struct event_loop *loop;
	struct loop_runner *runner;
	struct served_socket sockets[OPTIONS_MAX_SOCKETS];
	size_t n_sockets;
	struct readers readers;
	struct devices devices;
	struct bundle_list bundles; /* USB driver bundles, for hotplug */
	struct usb_hotplug *usb;    /* NULL: no USB readers */
	struct jobs jobs;
	int signal_fd;

	struct session *sessions; /* every connected client */
	size_t n_sessions;
	uint64_t next_session_id;
	struct session *waiters; /* registered for status-change signals */
	size_t n_waiters;
	struct session *dirty, *dirty_tail; /* sessions to settle before the loop sleeps */
	uint64_t auto_exit_timer;           /* --auto-exit: armed while no client is connected */
	uint64_t started_ms;                /* el_now_ms() when it started (scard status) */
	int64_t started_at;                 /* the wall-clock second it started */
	struct policy *policy;       /* NULL: no policy file, everything allowed (access.h) */
	struct audit *audit;         /* --audit, or NULL */
	uint32_t policy_gen;         /* bumped by each policy read */
	struct polkit_check *polkit; /* NULL: polkit is not asked (polkit_gate.h) */
	bool polkit_silent;          /* its last question got no answer */
	bool polkit_answered;        /* it has answered once */
	uint64_t polkit_retry_at;    /* silent: el_now_ms() when to ask again */

	bool stopping;
};

/*
 * A daemon with its loop, reader model and job queues. `threaded`: run the
 * loop through the loop runner (hand-off on slow drivers); the fuzz target
 * runs the loop itself and passes false.
 */
struct daemon *daemon_new(const struct options *opts, bool threaded);
void daemon_free(struct daemon *d);

/* Loads reader.conf.d and starts one worker per stanza. */
int daemon_load_readers(struct daemon *d);
/*
 * SIGHUP: reads reader.conf.d again. Stanzas that left take their readers
 * away, new ones add readers, untouched ones keep theirs (handles and all).
 * An unreadable configuration leaves everything as it is.
 */
int daemon_reload_readers(struct daemon *d);
/* Reads the driver bundles (Info.plist) of --drivers-dir. */
void daemon_load_bundles(struct daemon *d);
/* Adds the USB readers present and watches for more (usb_hotplug.h). */
void daemon_start_usb(struct daemon *d);
/* Waits until every device has opened or timeout passes, then registers them. */
void daemon_wait_devices(struct daemon *d, unsigned timeout_ms);
int daemon_run(struct daemon *d);

/* A context id no session uses. */
uint32_t daemon_new_context_id(const struct daemon *d);

#endif
