#include "daemon.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <pcsclite.h>

#include "access.h"
#include "driver.h"
#include "event_loop.h"
#include "handles.h"
#include "listener.h"
#include "log.h"
#include "loop_runner.h"
#include "polkit_gate.h"
#include "reader_conf.h"
#include "session.h"
#include "systemd.h"
#include "usb_hotplug.h"

/* Rounds of collected work one pass does before it lets the loop look at events again. */
#define MAX_ROUNDS 16

uint32_t daemon_new_context_id(const struct daemon *d)
{
	for (;;) {
		uint32_t ctx = (uint32_t)handles_random_id();
		if (ctx != 0 && !session_by_context(d, ctx))
			return ctx;
	}
}

static void on_signal(struct event_loop *loop, int fd, void *data, int mask)
{
	struct daemon *d = data;
	struct signalfd_siginfo si;
	(void)mask;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP || si.ssi_signo == SIGUSR1) {
			/* SIGUSR1: pcscd's --hotplug: USB devices and reader.conf.d again */
			if (si.ssi_signo == SIGUSR1) {
				log_info("hotplug rescan requested (SIGUSR1): USB devices and %s",
					 d->opts->config_dir);
				usb_hotplug_rescan(d->usb);
			} else {
				log_info("SIGHUP: reading %s again", d->opts->config_dir);
			}
			daemon_reload_readers(d);
			if (si.ssi_signo == SIGHUP)
				access_reload(d);
			continue;
		}
		log_info("signal %u received, shutting down", si.ssi_signo);
		d->stopping = true;
		el_stop(loop);
	}
}

/* ---- --auto-exit ---- */

static void auto_exit_due(struct event_loop *loop, uint64_t id, void *data)
{
	struct daemon *d = data;
	(void)id;
	d->auto_exit_timer = 0;
	if (d->n_sessions > 0) /* a client came in the same pass */
		return;
	log_info("no client for %u ms (--auto-exit): exiting", d->opts->auto_exit_ms);
	d->stopping = true;
	el_stop(loop);
}

/* As pcscd's -x: the wait starts when the last client leaves (or at start). */
static void auto_exit_update(struct daemon *d)
{
	if (!d->opts->auto_exit_ms)
		return;
	if (d->n_sessions == 0 && !d->auto_exit_timer) {
		d->auto_exit_timer = el_add_timer(d->loop, d->opts->auto_exit_ms, auto_exit_due, d);
	} else if (d->n_sessions > 0 && d->auto_exit_timer) {
		el_del_timer(d->loop, d->auto_exit_timer);
		d->auto_exit_timer = 0;
	}
}

/* pcscd's -t: a client beyond the cap is refused by closing its connection, as pcscd does. */
static void accept_client(void *data, const struct peer *peer)
{
	const struct served_socket *sock = data;
	const struct daemon *d = sock->d;
	if (d->opts->max_clients && d->n_sessions >= d->opts->max_clients) {
		log_error("refusing a client (pid %d): %zu connected, the most --max-thread allows",
			  (int)peer->pid, d->n_sessions);
		close(peer->fd);
		return;
	}
	session_accept(data, peer);
}

static bool work_left(struct daemon *d)
{
	return sessions_want_processing(d) || d->readers.woken || d->readers.changed ||
	       jobs_have_pending(&d->jobs);
}

/*
 * The end of every loop pass: requests that arrived are run, lock waiters
 * whose reader's lock came free retry, jobs run (quick ones right here) or go
 * to their workers, and status waiters learn of any change, once. Then the
 * sessions touched settle: closing ones are freed, the others' watch masks
 * set, one epoll change at most per session and pass.
 */
static int before_sleep(struct event_loop *loop, void *data)
{
	struct daemon *d = data;
	(void)loop;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		sessions_process(d);
		sessions_retry_lock_waiters(d);
		if (!jobs_run_pending(&d->jobs))
			return EL_LEAVE;
		if (readers_take_changed(&d->readers))
			sessions_signal_all(d);
		if (!work_left(d))
			break;
	}
	sessions_settle(d);
	auto_exit_update(d);
	return work_left(d) ? EL_AGAIN : EL_SLEEP;
}

/* ---- readers ---- */

static int add_configured_device(struct daemon *d, const struct reader_conf_entry *e)
{
	char err[256];
	struct driver *drv = driver_load(e->lib_path, err, sizeof(err));
	if (!drv) {
		log_error("%s (%s:%d): %s", e->friendly_name, e->source, e->line, err);
		return -1;
	}
	return devices_add(&d->devices, drv, e->friendly_name, e->device_name, e->channel_id);
}

static void conf_warning(const char *source, int line, const char *msg)
{
	log_error("%s:%d: %s", source, line, msg);
}

/* Whether dev is the device stanza e (real_lib: e's library, resolved) describes. */
static bool device_is_stanza(const struct device *dev, const struct reader_conf_entry *e,
			     const char *real_lib)
{
	const char *dn = dev->device_name ? dev->device_name : "";
	const char *en = e->device_name ? e->device_name : "";
	return strcmp(dev->friendly_name, e->friendly_name) == 0 && strcmp(dn, en) == 0 &&
	       dev->channel_id == e->channel_id && real_lib &&
	       strcmp(dev->drv->path, real_lib) == 0;
}

int daemon_reload_readers(struct daemon *d)
{
	struct reader_conf conf = { 0 };
	if (reader_conf_load(d->opts->config_dir, &conf, conf_warning) < 0) {
		log_error("cannot read %s; the readers stay as they are", d->opts->config_dir);
		reader_conf_free(&conf);
		return -1;
	}
	bool *kept = calloc(conf.n ? conf.n : 1, sizeof(*kept));
	char **libs = calloc(conf.n ? conf.n : 1, sizeof(*libs));
	if (!kept || !libs) {
		log_error("out of memory; the readers stay as they are");
		free(kept);
		free(libs);
		reader_conf_free(&conf);
		return -1;
	}
	for (size_t i = 0; i < conf.n; i++)
		libs[i] = realpath(conf.entries[i].lib_path, NULL);
	/* Untouched stanzas keep their readers, handles and all. */
	for (struct device *dev = d->devices.head, *next; dev; dev = next) {
		next = dev->next; /* devices_remove may free dev */
		if (dev->removing || dev->hotplug)
			continue;
		bool found = false;
		for (size_t i = 0; i < conf.n && !found; i++) {
			if (!kept[i] && device_is_stanza(dev, &conf.entries[i], libs[i]))
				kept[i] = found = true;
		}
		if (!found)
			devices_remove(&d->devices, dev);
	}
	for (size_t i = 0; i < conf.n; i++)
		if (!kept[i])
			add_configured_device(d, &conf.entries[i]);
	for (size_t i = 0; i < conf.n; i++)
		free(libs[i]);
	free(libs);
	free(kept);
	reader_conf_free(&conf);
	return 0;
}

int daemon_load_readers(struct daemon *d)
{
	struct reader_conf conf = { 0 };
	int n = reader_conf_load(d->opts->config_dir, &conf, conf_warning);
	if (n < 0) {
		log_info("no reader configuration at %s", d->opts->config_dir);
		reader_conf_free(&conf);
		return 0;
	}
	for (size_t i = 0; i < conf.n; i++)
		add_configured_device(d, &conf.entries[i]);
	reader_conf_free(&conf);
	return 0;
}

static void bundle_warning(const char *path, const char *msg)
{
	log_error("driver bundle %s: %s", path, msg);
}

void daemon_load_bundles(struct daemon *d)
{
	if (bundle_scan(d->opts->drivers_dir, &d->bundles, bundle_warning) < 0) {
		log_info("no driver bundles read from %s", d->opts->drivers_dir);
		return;
	}
	size_t devices = 0;
	for (size_t i = 0; i < d->bundles.n; i++)
		devices += d->bundles.items[i].n_devices;
	log_info("%zu driver bundle(s) in %s know %zu device(s)", d->bundles.n,
		 d->opts->drivers_dir, devices);
}

void daemon_start_usb(struct daemon *d)
{
	struct usb_hotplug_config cfg = {
		.loop = d->loop,
		.devices = &d->devices,
		.bundles = &d->bundles,
		.drivers_dir = d->opts->drivers_dir,
		.name_interface = !d->opts->name_no_interface,
		.name_serial = !d->opts->name_no_serial,
	};
	d->usb = usb_hotplug_start(&cfg);
}

void daemon_wait_devices(struct daemon *d, unsigned timeout_ms)
{
	uint64_t end = el_now_ms() + timeout_ms;
	while (d->devices.opening > 0) {
		uint64_t now = el_now_ms();
		if (now >= end) {
			log_error("%u reader(s) still opening; serving clients anyway",
				  d->devices.opening);
			break;
		}
		struct pollfd pfd = { .fd = d->jobs.done.efd, .events = POLLIN };
		if (poll(&pfd, 1, (int)(end - now)) > 0)
			jobs_drain(&d->jobs);
	}
	devices_startup_done(&d->devices);
}

/* ---- lifecycle ---- */

struct daemon *daemon_new(const struct options *opts, bool threaded)
{
	struct daemon *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->opts = opts;
	d->started_ms = el_now_ms();
	d->started_at = (int64_t)time(NULL);
	d->signal_fd = -1;
	d->jobs.done.efd = -1;
	readers_init(&d->readers);
	d->loop = el_new();
	if (d->loop && threaded)
		d->runner = runner_new(d->loop);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	d->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	if (!d->loop || (threaded && !d->runner) || d->signal_fd < 0 ||
	    jobs_init(&d->jobs, d, d->loop, d->runner) < 0 ||
	    el_add_fd(d->loop, d->signal_fd, EL_READ, on_signal, d) < 0) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		daemon_free(d);
		return NULL;
	}
	devices_init(&d->devices, &d->readers, &d->jobs.done, d->loop, opts->poll_ms);
	el_set_before_sleep(d->loop, before_sleep, d);
	return d;
}

int daemon_run(struct daemon *d)
{
	for (size_t i = 0; i < d->n_sockets; i++) {
		struct served_socket *sock = &d->sockets[i];
		if (listener_start(sock->listener, d->loop, accept_client, sock) < 0) {
			log_error("cannot watch the listening socket %s", sock->spec->path);
			return -1;
		}
	}
	log_info("serving clients with %zu reader(s)", d->readers.count);
	systemd_notify_ready(d->readers.count, d->n_sockets, !d->opts->foreground);
	if (d->opts->auto_exit_ms)
		log_info("--auto-exit: exiting after %u ms with no client", d->opts->auto_exit_ms);
	return d->runner ? runner_run(d->runner) : el_run(d->loop);
}

/* A daemon left running by a stuck driver stays reachable, not leaked. */
static struct daemon *abandoned;

void daemon_free(struct daemon *d)
{
	if (!d)
		return;
	if (d->loop)
		sessions_free_all(d);
	for (size_t i = 0; i < d->n_sockets; i++)
		listener_close(d->sockets[i].listener, d->loop);
	usb_hotplug_free(d->usb);
	d->usb = NULL;
	/* Threads that lost the loop inside a driver call still post their job. */
	bool runners_done = runner_free(d->runner, 2000);
	bool workers_done = devices_stop_all(&d->devices, 2000);
	if (!runners_done || !workers_done) {
		abandoned = d;
		return;
	}
	if (d->jobs.done.efd >= 0)
		jobs_destroy(&d->jobs, d->loop);
	readers_destroy(&d->readers);
	bundle_list_free(&d->bundles);
	polkit_gate_stop(d);
	access_release(d);
	if (d->loop)
		el_free(d->loop);
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	free(d);
}
