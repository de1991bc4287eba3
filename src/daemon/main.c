/* scardd: the PC/SC resource manager. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "access.h"
#include "config.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "options.h"
#include "pid_file.h"
#include "polkit_gate.h"
#include "privileges.h"
#include "systemd.h"

/* Each client is a descriptor: allow as many as the hard limit does. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Signals are read from a signalfd; block them before any thread starts. */
static void block_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1); /* --hotplug */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* pcscd does not start when -c names nothing it can read; neither does scardd. */
static bool config_readable(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		log_crit("cannot read the reader configuration %s: %s (-c/--config wants a "
			 "reader.conf.d directory or a file)",
			 path, strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

static void close_listeners(struct listener **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		listener_close(l[i], NULL);
}

/*
 * The sockets systemd passed (socket activation) are served as they are,
 * the others bound here; opts->sockets ends up naming every one (systemd.h).
 */
static bool open_sockets(struct options *opts, struct listener **listeners)
{
	struct inherited_socket inherited[OPTIONS_MAX_SOCKETS];
	int n = systemd_take_sockets(inherited, OPTIONS_MAX_SOCKETS);
	int fd_of[OPTIONS_MAX_SOCKETS];
	if (n < 0 || !systemd_match_sockets(opts, inherited, (size_t)n, fd_of)) {
		if (opts->foreground)
			fprintf(stderr, "scardd: cannot serve the sockets systemd passed (see the "
					"log above)\n");
		return false;
	}
	for (size_t i = 0; i < opts->n_sockets; i++) {
		const char *path = opts->sockets[i].path;
		listeners[i] = fd_of[i] >= 0 ? listener_adopt(fd_of[i], path)
					     : listener_open(&opts->sockets[i]);
		if (!listeners[i]) {
			if (opts->foreground)
				fprintf(stderr, "scardd: cannot serve %s (see the log above)\n",
					path);
			close_listeners(listeners, i);
			return false;
		}
	}
	return true;
}

int main(int argc, char **argv)
{
	struct options opts;
	switch (options_parse(&opts, argc, argv)) {
	case OPTIONS_EXIT_OK: return 0;
	case OPTIONS_EXIT_ERROR: return 2;
	case OPTIONS_RUN: break;
	}

	if (opts.hotplug) {
		log_init("scardd", opts.level, true);
		return pid_file_hotplug(opts.sockets[0].path) == 0 ? 0 : 1;
	}
	log_init("scardd", opts.level, opts.foreground);
	/* From the first line scardd logs: a SIGTERM waits for the signalfd (the
	 * mask survives daemon()) and stops scardd cleanly, instead of killing it
	 * half-started, with a socket file or an opened audit log left behind. */
	block_signals();
	log_startup_to_stderr(!opts.foreground);
	log_set_apdu(opts.apdu);
	options_log_ignored(&opts);
	if (opts.config_given && !config_readable(opts.config_dir))
		return 1;
	/* Who to become is known before anything is bound: errors reach stderr. */
	struct privileges priv;
	if (!privileges_resolve(opts.user, &priv))
		return 1;
	/* Read as root, before anything is bound: a broken policy stops the start. */
	struct access_setup access;
	if (!access_setup_open(&opts, &access))
		return 1;
	raise_fd_limit();
	systemd_notify_init(); /* before any driver (or its children) could see it */

	struct listener *listeners[OPTIONS_MAX_SOCKETS] = { 0 };
	if (!open_sockets(&opts, listeners)) {
		access_setup_drop(&access);
		return 1;
	}
	if (!opts.foreground && daemon(0, 0) < 0) {
		log_crit("cannot detach: %s", strerror(errno));
		close_listeners(listeners, opts.n_sockets);
		access_setup_drop(&access);
		return 1;
	}
	log_startup_to_stderr(false);
	/* after daemon(), which changes the pid, and with SIGUSR1 already blocked */
	char pid_path[SOCKET_SPEC_PATH_MAX + 8];
	bool pid_written = pid_file_path(opts.sockets[0].path, pid_path, sizeof(pid_path)) &&
			   pid_file_write(pid_path) == 0;

	/* Root is given up here: sockets bound, no thread started, no driver loaded. */
	struct daemon *d = privileges_apply(&priv) ? daemon_new(&opts, true) : NULL;
	if (!d) {
		close_listeners(listeners, opts.n_sockets);
		access_setup_drop(&access);
		if (pid_written)
			pid_file_remove(pid_path);
		return 1;
	}
	for (size_t i = 0; i < opts.n_sockets; i++) {
		char what[512];
		d->sockets[i] = (struct served_socket){ d, &opts.sockets[i], listeners[i] };
		socket_spec_describe(&opts.sockets[i], what, sizeof(what));
		log_info("scardd %s listening on %s", SCARDD_VERSION, what);
	}
	d->n_sockets = opts.n_sockets;
	access_setup_install(d, &access);
	polkit_gate_start(d);
	daemon_load_bundles(d);
	daemon_load_readers(d);
	daemon_start_usb(d); /* after reader.conf.d, as pcscd: those readers come first */
	daemon_wait_devices(d, 5000);
	int rc = daemon_run(d);
	systemd_notify_stopping();
	daemon_free(d);
	if (pid_written)
		pid_file_remove(pid_path);
	log_info("scardd stopped");
	return rc == 0 ? 0 : 1;
}
