/* scardd's command line: scardd's own options and pcscd's, with pcscd's meanings. */
#ifndef SCARDD_OPTIONS_H
#define SCARDD_OPTIONS_H

#include <stdbool.h>

#include "log.h"
#include "socket_spec.h"

#define OPTIONS_MAX_SOCKETS 16u
#define OPTIONS_MAX_IGNORED 8u
/* pcscd's TIME_BEFORE_SUICIDE: --auto-exit's wait with no client */
#define OPTIONS_AUTO_EXIT_MS 60000u

/* A pcscd option accepted and not acted on, and why. */
struct ignored_option {
	const char *name;
	const char *why;
};

struct options {
	/* --socket (repeatable), else $PCSCLITE_CSOCK_NAME, else the default */
	struct socket_spec sockets[OPTIONS_MAX_SOCKETS];
	size_t n_sockets;
	bool sockets_given;      /* --socket: then systemd's sockets are matched to these */
	const char *config_dir;  /* reader.conf.d directory or file */
	bool config_given;       /* -c: then a path that cannot be read is an error */
	const char *drivers_dir; /* driver bundles (Info.plist) */
	const char *user;        /* --user USER[:GROUP]; NULL: see privileges.h */
	const char *policy_path; /* --policy: who may use which reader (access.h) */
	bool policy_given;       /* --policy: then a file that cannot be read is an error */
	const char *audit_path;  /* --audit: one line per connect, transaction, control */
	enum log_level level;
	bool foreground;
	bool apdu;
	bool hotplug;                /* -H: signal the running daemon and exit */
	bool no_polkit;              /* --disable-polkit (built with polkit) */
	bool name_no_serial;         /* -S: no USB serial number in reader names */
	bool name_no_interface;      /* -I: no USB interface name in reader names */
	unsigned poll_ms;            /* card presence poll period for drivers without events */
	unsigned max_handles;        /* card handles per client connection (-s) */
	unsigned max_clients;        /* client connections (-t); 0: no cap */
	unsigned max_reader_handles; /* card handles on one reader (-r); 0: no cap */
	unsigned auto_exit_ms;       /* -x: exit after this long with no client; 0: never */
	unsigned driver_timeout_s;   /* a request the driver has not answered by then fails */
	struct ignored_option ignored[OPTIONS_MAX_IGNORED];
	size_t n_ignored;
};

enum options_result { OPTIONS_RUN, OPTIONS_EXIT_OK, OPTIONS_EXIT_ERROR };

/* Parses argv into opts; prints help/version/errors itself. */
enum options_result options_parse(struct options *opts, int argc, char **argv);

/* Logs the pcscd options given that scardd does not act on (after log_init). */
void options_log_ignored(const struct options *opts);

#endif
