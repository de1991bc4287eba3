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
		"  -s, --socket PATH        client socket (default: $PCSCLITE_CSOCK_NAME, else %s)\n"
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

enum options_result options_parse(struct options *opts, int argc, char **argv)
{
	enum { OPT_DRIVERS = 256, OPT_POLL, OPT_MAX_HANDLES, OPT_DRIVER_TIMEOUT };
	static const struct option longopts[] = {
		{"foreground", no_argument, NULL, 'f'},
		{"socket", required_argument, NULL, 's'},
		{"config-dir", required_argument, NULL, 'c'},
		{"config", required_argument, NULL, 'c'},
		{"drivers-dir", required_argument, NULL, OPT_DRIVERS},
		{"debug", no_argument, NULL, 'd'},
		{"info", no_argument, NULL, 'i'},
		{"error", no_argument, NULL, 'e'},
		{"apdu", no_argument, NULL, 'a'},
		{"poll-ms", required_argument, NULL, OPT_POLL},
		{"max-card-handles", required_argument, NULL, OPT_MAX_HANDLES},
		{"driver-timeout", required_argument, NULL, OPT_DRIVER_TIMEOUT},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	const char *env = getenv("PCSCLITE_CSOCK_NAME");

	*opts = (struct options){
		.socket_path = env && *env ? env : SCARDD_DEFAULT_SOCKET,
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
		case 's': opts->socket_path = optarg; break;
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
				fprintf(stderr, "%s: --max-card-handles wants 1..1000000\n", argv[0]);
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
	if (strlen(opts->socket_path) >= 108) {
		fprintf(stderr, "%s: socket path too long (107 bytes at most): %s\n", argv[0],
			opts->socket_path);
		return OPTIONS_EXIT_ERROR;
	}
	return OPTIONS_RUN;
}
