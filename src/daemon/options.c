#include "options.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"Usage: %s [options]\n"
		"PC/SC resource manager: serves pcsc-lite clients (libpcsclite.so.1)\n"
		"\n"
		"  -f, --foreground         stay in the foreground, log to stderr\n"
		"  -s, --socket PATH[:OPT,...]  a client socket; repeat to serve several\n"
		"                           (default: $PCSCLITE_CSOCK_NAME, else %s)\n"
		"                           OPT: readers=N|auto  reader array of 4:2-4:5 clients\n"
		"                                names=100|128   reader-name field of 4:2 clients\n"
		"                                prefer=GLOB     readers listed first to them\n"
		"  -c, --config-dir DIR     reader.conf.d directory or file (default %s)\n"
		"      --drivers-dir DIR    driver bundles (default %s)\n"
		"  -d, --debug              log everything\n"
		"  -i, --info               log informational messages and errors\n"
		"  -e, --error              log errors only (default)\n"
		"  -a, --apdu               log APDUs and responses\n"
		"      --poll-ms N          card presence poll period (default 200)\n"
		"      --max-card-handles N card handles per client (default 200)\n"
		"      --driver-timeout S   fail a request its driver has not answered in S\n"
		"                           seconds with SCARD_E_TIMEOUT (default 120)\n"
		"  -h, --help               show this help\n"
		"  -v, --version            show the version\n",
		prog, SCARDD_DEFAULT_SOCKET, SCARDD_DEFAULT_CONFIG_DIR, SCARDD_DEFAULT_DRIVERS_DIR);
}

static bool parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < min || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

static bool add_socket(struct options *opts, const char *text, const char *prog)
{
	char err[256];

	if (!socket_spec_parse(text, &opts->sockets[opts->n_sockets], err, sizeof(err))) {
		fprintf(stderr, "%s: --socket %s\n", prog, err);
		return false;
	}
	opts->n_sockets++;
	return true;
}

enum options_result options_parse(struct options *opts, int argc, char **argv)
{
	enum { OPT_DRIVERS = 256, OPT_POLL, OPT_MAX_HANDLES, OPT_DRIVER_TIMEOUT };
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "socket", required_argument, NULL, 's' },
		{ "config-dir", required_argument, NULL, 'c' },
		{ "config", required_argument, NULL, 'c' },
		{ "drivers-dir", required_argument, NULL, OPT_DRIVERS },
		{ "debug", no_argument, NULL, 'd' },
		{ "info", no_argument, NULL, 'i' },
		{ "error", no_argument, NULL, 'e' },
		{ "apdu", no_argument, NULL, 'a' },
		{ "poll-ms", required_argument, NULL, OPT_POLL },
		{ "max-card-handles", required_argument, NULL, OPT_MAX_HANDLES },
		{ "driver-timeout", required_argument, NULL, OPT_DRIVER_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *env = getenv("PCSCLITE_CSOCK_NAME");

	*opts = (struct options){
		.config_dir = SCARDD_DEFAULT_CONFIG_DIR,
		.drivers_dir = SCARDD_DEFAULT_DRIVERS_DIR,
		.level = LOG_LEVEL_ERROR,
		.poll_ms = 200,
		.max_handles = 200,
		.driver_timeout_s = 120,
	};

	int c;
	while ((c = getopt_long(argc, argv, "fs:c:dieahv", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': opts->foreground = true; break;
		case 's':
			if (opts->n_sockets == OPTIONS_MAX_SOCKETS) {
				fprintf(stderr, "%s: at most %u sockets\n", argv[0],
					OPTIONS_MAX_SOCKETS);
				return OPTIONS_EXIT_ERROR;
			}
			if (!add_socket(opts, optarg, argv[0]))
				return OPTIONS_EXIT_ERROR;
			break;
		case 'c': opts->config_dir = optarg; break;
		case OPT_DRIVERS: opts->drivers_dir = optarg; break;
		case 'd': opts->level = LOG_LEVEL_DEBUG; break;
		case 'i': opts->level = LOG_LEVEL_INFO; break;
		case 'e': opts->level = LOG_LEVEL_ERROR; break;
		case 'a': opts->apdu = true; break;
		case OPT_POLL:
			if (!parse_unsigned(optarg, 10, 60000, &opts->poll_ms)) {
				fprintf(stderr, "%s: --poll-ms wants 10..60000\n", argv[0]);
				return OPTIONS_EXIT_ERROR;
			}
			break;
		case OPT_MAX_HANDLES:
			if (!parse_unsigned(optarg, 1, 1000000, &opts->max_handles)) {
				fprintf(stderr, "%s: --max-card-handles wants 1..1000000\n",
					argv[0]);
				return OPTIONS_EXIT_ERROR;
			}
			break;
		case OPT_DRIVER_TIMEOUT:
			if (!parse_unsigned(optarg, 1, 86400, &opts->driver_timeout_s)) {
				fprintf(stderr, "%s: --driver-timeout wants 1..86400\n", argv[0]);
				return OPTIONS_EXIT_ERROR;
			}
			break;
		case 'h': usage(stdout, argv[0]); return OPTIONS_EXIT_OK;
		case 'v': printf("scardd %s\n", SCARDD_VERSION); return OPTIONS_EXIT_OK;
		default: usage(stderr, argv[0]); return OPTIONS_EXIT_ERROR;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		return OPTIONS_EXIT_ERROR;
	}
	if (opts->n_sockets == 0 &&
	    !add_socket(opts, env && *env ? env : SCARDD_DEFAULT_SOCKET, argv[0]))
		return OPTIONS_EXIT_ERROR;
	for (size_t i = 0; i < opts->n_sockets; i++) {
		for (size_t k = 0; k < i; k++) {
			if (!strcmp(opts->sockets[i].path, opts->sockets[k].path)) {
				fprintf(stderr, "%s: socket %s given twice\n", argv[0],
					opts->sockets[i].path);
				return OPTIONS_EXIT_ERROR;
			}
		}
	}
	return OPTIONS_RUN;
}
