/*
 * The daemon's state: the event loop, the listening sockets, the sessions,
 * the reader registry and the queue through which worker threads hand their
 * finished jobs back to the loop.
 */
#ifndef SCARDD_DAEMON_H
#define SCARDD_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bundle.h"
#include "options.h"
#include "readers.h"

struct event_loop;
struct listener;
struct session;
struct job;

struct completion_queue {
	pthread_mutex_t lock;
	struct job *head, *tail;
	int efd;
};

/* A listening socket and the settings its clients get. */
struct served_socket {
	struct daemon *d;
	const struct socket_spec *spec;
	struct listener *listener;
};

struct daemon {
	const struct options *opts;
	struct event_loop *loop;
	struct served_socket sockets[OPTIONS_MAX_SOCKETS];
	size_t n_sockets;
	struct readers readers;
	struct bundle_list bundles;    /* USB driver bundles, for hotplug */
	struct completion_queue done;
	int signal_fd;

	struct session *sessions;      /* every connected client */
	size_t n_sessions;
	uint64_t next_session_id;
	struct session *waiters;       /* registered for status-change signals */
	size_t n_waiters;

	unsigned devices_pending;      /* devices whose channel is still opening */
	bool stopping;
};

struct daemon *daemon_new(const struct options *opts);
void daemon_free(struct daemon *d);

/* Loads reader.conf.d and starts one worker per stanza. */
int daemon_load_readers(struct daemon *d);
/*
 * Adds a reader driven by drv (the device takes over the reference) and
 * starts its worker; its slots appear once the channel is open.
 */
struct driver;
int daemon_add_device(struct daemon *d, struct driver *drv, const char *friendly,
		      const char *device_name, uint32_t channel_id);
/* Reads the driver bundles (Info.plist) of --drivers-dir. */
void daemon_load_bundles(struct daemon *d);
/* Waits (running the loop) until every device has opened or timeout passes. */
void daemon_wait_devices(struct daemon *d, unsigned timeout_ms);
int daemon_run(struct daemon *d);

/* Worker side: hands a finished job to the loop. Thread-safe. */
void daemon_post(struct daemon *d, struct job *job);

/* A random non-negative 31-bit value (context and card handles). */
int32_t daemon_random_id(void);

#endif
