/* scardd's command line. */
#ifndef SCARDD_OPTIONS_H
#define SCARDD_OPTIONS_H

#include <stdbool.h>

#include "log.h"
#include "socket_spec.h"

#define OPTIONS_MAX_SOCKETS 16u

struct options {
	/* --socket (repeatable), else $PCSCLITE_CSOCK_NAME, else the default */
	struct socket_spec sockets[OPTIONS_MAX_SOCKETS];
	size_t n_sockets;
	const char *config_dir;  /* reader.conf.d directory or file */
	const char *drivers_dir; /* driver bundles (Info.plist) */
	enum log_level level;
	bool foreground;
	bool apdu;
	unsigned poll_ms;          /* card presence poll period for drivers without events */
	unsigned max_handles;      /* card handles per client connection */
	unsigned driver_timeout_s; /* a request the driver has not answered by then fails */
};

enum options_result { OPTIONS_RUN, OPTIONS_EXIT_OK, OPTIONS_EXIT_ERROR };

/* Parses argv into opts; prints help/version/errors itself. */
enum options_result options_parse(struct options *opts, int argc, char **argv);

#endif
