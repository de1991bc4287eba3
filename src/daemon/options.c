#include "options.h"

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "privileges.h"

/* Keys of the options that have no letter. */
enum {
	OPT_SOCKET = 256,
	OPT_DRIVERS,
	OPT_POLL,
	OPT_DRIVER_TIMEOUT,
	OPT_FORCE_POLLING,
	OPT_DISABLE_POLKIT,
	OPT_USER,
	OPT_POLICY,
	OPT_AUDIT,
};

/*
 * Every option: the parser, --help and the start-up log of ignored options
 * are made from this table. pcscd's letters and long names keep pcscd's
 * meanings (Debian's pcscd.service runs `--foreground --auto-exit` and
 * `--hotplug`), so scardd's own sockets have a long option only.
 */
struct option_def {
	const char *name; /* long name */
	int key;          /* letter, or an OPT_ value */
	int has_arg;
	const char *arg;  /* argument as --help shows it, with its separator */
	const char *help; /* a '\n' continues under the first line */
	/* a number stored in struct options at `field`, min..max (max 0: not a number) */
	size_t field;
	unsigned min, max;
	const char *ignored; /* pcscd's, accepted and not acted on: why */
};

#define NUMBER(f, lo, hi) .field = offsetof(struct options, f), .min = lo, .max = hi
#define ARG(text) .has_arg = required_argument, .arg = text

static const struct option_def defs[] = {
	{ .name = "foreground", .key = 'f', .help = "stay in the foreground, log to stderr" },
	{ .name = "socket",
	  .key = OPT_SOCKET,
	  ARG(" PATH[:OPT,...]"),
	  .help = "a client socket; repeat to serve several\n"
		  "(default: $PCSCLITE_CSOCK_NAME, else " SCARDD_DEFAULT_SOCKET ")\n"
		  "OPT: readers=N|auto  reader array of 4:2-4:5 clients\n"
		  "     names=100|128   reader-name field of 4:2 clients\n"
		  "     prefer=GLOB     readers listed first to them\n"
		  "     mode=OCTAL      the socket file's mode (default 0666)\n"
		  "     group=GROUP     the socket file's group" },
	{ .name = "config",
	  .key = 'c',
	  ARG(" DIR"),
	  .help = "reader.conf.d directory or file (default " SCARDD_DEFAULT_CONFIG_DIR ");\n"
		  "one given that cannot be read stops the start" },
	{ .name = "config-dir", .key = 'c', ARG(" DIR"), .help = "the same as --config" },
	{ .name = "drivers-dir",
	  .key = OPT_DRIVERS,
	  ARG(" DIR"),
	  .help = "driver bundles (default " SCARDD_DEFAULT_DRIVERS_DIR ")" },
	{ .name = "user",
	  .key = OPT_USER,
	  ARG(" USER[:GROUP]"),
	  .help = "run as USER (names or numbers) from after binding the\n"
		  "sockets, before loading any driver; started as root\n"
		  "without it: as " PRIVILEGES_DEFAULT_USER ", and no start if that account\n"
		  "is missing; --user root keeps drivers running as root" },
	{ .name = "policy",
	  .key = OPT_POLICY,
	  ARG(" FILE"),
	  .help = "who may use which reader, and how (docs/POLICY.md);\n"
		  "default " SCARDD_DEFAULT_POLICY ",\n"
		  "without which every client may use every reader;\n"
		  "SIGHUP reads it again" },
	{ .name = "audit",
	  .key = OPT_AUDIT,
	  ARG(" FILE"),
	  .help = "append a line per connect, transaction and control\n"
		  "command to FILE, with the client and the result;\n"
		  "SIGHUP opens it again (log rotation)" },
	{ .name = "debug", .key = 'd', .help = "log everything" },
	{ .name = "info", .key = 'i', .help = "log informational messages and errors" },
	{ .name = "error", .key = 'e', .help = "log errors only (default)" },
	{ .name = "critical", .key = 'C', .help = "log critical errors only" },
	{ .name = "apdu", .key = 'a', .help = "log APDUs and responses" },
	{ .name = "max-card-handle-per-thread",
	  .key = 's',
	  ARG(" N"),
	  .help = "card handles per client connection (default 200);\n"
		  "one more connect fails with SCARD_E_NO_MEMORY",
	  NUMBER(max_handles, 1, 1000000) },
	{ .name = "max-card-handles",
	  .key = 's',
	  ARG(" N"),
	  .help = "the same as -s",
	  NUMBER(max_handles, 1, 1000000) },
	{ .name = "max-thread",
	  .key = 't',
	  ARG(" N"),
	  .help = "at most N client connections (one per context); a client\n"
		  "beyond them is refused (default: no cap; pcscd's is 200)",
	  NUMBER(max_clients, 1, 1000000) },
	{ .name = "max-card-handle-per-reader",
	  .key = 'r',
	  ARG(" N"),
	  .help = "at most N card handles on one reader, all clients together;\n"
		  "one more connect fails with SCARD_F_INTERNAL_ERROR\n"
		  "(default: no cap; pcscd's is 200)",
	  NUMBER(max_reader_handles, 1, 1000000) },
	{ .name = "auto-exit", .key = 'x', .help = "exit after 60 s with no client connected" },
	{ .name = "hotplug",
	  .key = 'H',
	  .help = "ask the daemon on the socket to rescan its readers (USB\n"
		  "devices and reader.conf.d), then exit: SIGUSR1 to the pid\n"
		  "in its pid file (X.comm's is X.pid)" },
	{ .name = "poll-ms",
	  .key = OPT_POLL,
	  ARG(" N"),
	  .help = "card presence poll period (default 200)",
	  NUMBER(poll_ms, 10, 60000) },
	{ .name = "driver-timeout",
	  .key = OPT_DRIVER_TIMEOUT,
	  ARG(" S"),
	  .help = "fail a request its driver has not answered in S\n"
		  "seconds with SCARD_E_TIMEOUT (default 120)",
	  NUMBER(driver_timeout_s, 1, 86400) },
	{ .name = "reader-name-no-serial",
	  .key = 'S',
	  .help = "no USB serial number in reader names" },
	{ .name = "reader-name-no-interface",
	  .key = 'I',
	  .help = "no USB interface name in reader names" },
#ifdef HAVE_POLKIT
	{ .name = "disable-polkit",
	  .key = OPT_DISABLE_POLKIT,
	  .help = "do not ask polkitd whether a client may use the\n"
		  "daemon (access_pcsc) and each reader (access_card);\n"
		  "without it, asked whenever polkitd answers" },
#endif
	{ .name = "help", .key = 'h', .help = "show this help" },
	{ .name = "version", .key = 'v', .help = "show the version" },

	{ .name = "force-reader-polling",
	  .key = OPT_FORCE_POLLING,
	  .has_arg = optional_argument,
	  .arg = "[=N]",
	  .help = "pcscd: poll the USB bus even when a driver\n"
		  "announces hotplug (IFD_GENERATE_HOTPLUG)",
	  .ignored = "USB devices come from udev's events: nothing polls the bus" },
	{ .name = "color",
	  .key = 'T',
	  .help = "pcscd: coloured log lines",
	  .ignored = "scardd's log lines have no colours" },
#ifndef HAVE_POLKIT
	{ .name = "disable-polkit",
	  .key = OPT_DISABLE_POLKIT,
	  .help = "pcscd 2.x: no polkit checks",
	  .ignored = "scardd was built without polkit" },
#endif
};

#define N_DEFS (sizeof(defs) / sizeof(defs[0]))
/* Where --help starts an option's text. */
#define HELP_COLUMN 31

/* An alias (a second long name for a letter) is shown without the letter. */
static void print_def(FILE *out, const struct option_def *o)
{
	bool alias = false;
	for (const struct option_def *p = defs; p < o; p++)
		alias = alias || p->key == o->key;
	char head[80];
	const char *arg = o->arg ? o->arg : "";
	int n = o->key < OPT_SOCKET && !alias
			? snprintf(head, sizeof(head), "  -%c, --%s%s", o->key, o->name, arg)
			: snprintf(head, sizeof(head), "      --%s%s", o->name, arg);
	fputs(head, out);
	if (n < HELP_COLUMN - 1)
		fprintf(out, "%*s", HELP_COLUMN - n, "");
	else
		fprintf(out, "\n%*s", HELP_COLUMN, "");
	for (const char *p = o->help; *p; p++) {
		fputc(*p, out);
		if (*p == '\n')
			fprintf(out, "%*s", HELP_COLUMN, "");
	}
	if (o->ignored)
		fprintf(out, "\n%*s(ignored: %s)", HELP_COLUMN, "", o->ignored);
	fputc('\n', out);
}

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"Usage: %s [options]\n"
		"PC/SC resource manager: serves pcsc-lite clients (libpcsclite.so.1).\n"
		"pcscd's options have pcscd's meanings.\n\n",
		prog);
	for (size_t i = 0; i < N_DEFS; i++)
		if (!defs[i].ignored)
			print_def(out, &defs[i]);
	fputs("\npcscd's options that do not apply to scardd (accepted, logged as ignored):\n",
	      out);
	for (size_t i = 0; i < N_DEFS; i++)
		if (defs[i].ignored)
			print_def(out, &defs[i]);
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

static bool set_number(struct options *opts, const struct option_def *o, const char *text,
		       const char *prog)
{
	unsigned *field = (unsigned *)((char *)opts + o->field);
	if (parse_unsigned(text, o->min, o->max, field))
		return true;
	fprintf(stderr, "%s: --%s wants a number %u..%u, not '%s'\n", prog, o->name, o->min, o->max,
		text);
	/* scardd's -s was the socket before it took pcscd's meaning */
	if (o->key == 's')
		fprintf(stderr, "%s: -s is pcscd's handle limit; a socket is --socket PATH\n",
			prog);
	return false;
}

static bool add_socket(struct options *opts, const char *text, const char *prog)
{
	char err[256];

	if (opts->n_sockets == OPTIONS_MAX_SOCKETS) {
		fprintf(stderr, "%s: at most %u sockets\n", prog, OPTIONS_MAX_SOCKETS);
		return false;
	}
	if (!socket_spec_parse(text, &opts->sockets[opts->n_sockets], err, sizeof(err))) {
		fprintf(stderr, "%s: --socket %s\n", prog, err);
		return false;
	}
	opts->n_sockets++;
	return true;
}

static void add_ignored(struct options *opts, const struct option_def *o)
{
	for (size_t i = 0; i < opts->n_ignored; i++)
		if (opts->ignored[i].name == o->name)
			return;
	if (opts->n_ignored < OPTIONS_MAX_IGNORED)
		opts->ignored[opts->n_ignored++] = (struct ignored_option){ o->name, o->ignored };
}

/* SCARDD_TEST_AUTO_EXIT_MS: for tests only, --auto-exit's wait in ms instead of 60 s. */
static bool set_auto_exit(struct options *opts, const char *prog)
{
	const char *env = getenv("SCARDD_TEST_AUTO_EXIT_MS");
	opts->auto_exit_ms = OPTIONS_AUTO_EXIT_MS;
	if (!env || !*env)
		return true;
	if (parse_unsigned(env, 1, OPTIONS_AUTO_EXIT_MS, &opts->auto_exit_ms))
		return true;
	fprintf(stderr, "%s: SCARDD_TEST_AUTO_EXIT_MS wants 1..%u\n", prog, OPTIONS_AUTO_EXIT_MS);
	return false;
}

/* The table entry getopt_long matched: by its index, or by letter. */
static const struct option_def *find_def(int key, int index)
{
	if (index >= 0)
		return &defs[index];
	for (size_t i = 0; i < N_DEFS; i++)
		if (defs[i].key == key)
			return &defs[i];
	return NULL;
}

/* One option; false when the command line is wrong (the reason printed). */
static bool apply(struct options *opts, const struct option_def *o, const char *arg,
		  const char *prog)
{
	if (o->ignored) {
		add_ignored(opts, o);
		return true;
	}
	if (o->max)
		return set_number(opts, o, arg, prog);
	switch (o->key) {
	case 'f': opts->foreground = true; break;
	case OPT_SOCKET: opts->sockets_given = true; return add_socket(opts, arg, prog);
	case 'c':
		opts->config_dir = arg;
		opts->config_given = true;
		break;
	case OPT_DRIVERS: opts->drivers_dir = arg; break;
	case OPT_USER: opts->user = arg; break;
	case OPT_POLICY:
		opts->policy_path = arg;
		opts->policy_given = true;
		break;
	case OPT_AUDIT: opts->audit_path = arg; break;
	case 'd': opts->level = LOG_LEVEL_DEBUG; break;
	case 'i': opts->level = LOG_LEVEL_INFO; break;
	case 'e': opts->level = LOG_LEVEL_ERROR; break;
	case 'C': opts->level = LOG_LEVEL_CRITICAL; break;
	case 'a': opts->apdu = true; break;
	case 'x': return set_auto_exit(opts, prog);
	case 'H': opts->hotplug = true; break;
	case 'S': opts->name_no_serial = true; break;
	case 'I': opts->name_no_interface = true; break;
	case OPT_DISABLE_POLKIT: opts->no_polkit = true; break;
	}
	return true;
}

enum options_result options_parse(struct options *opts, int argc, char **argv)
{
	struct option longopts[N_DEFS + 1];
	char shortopts[2 * N_DEFS + 1];
	size_t n_short = 0;
	for (size_t i = 0; i < N_DEFS; i++) {
		longopts[i] = (struct option){ defs[i].name, defs[i].has_arg, NULL, defs[i].key };
		if (defs[i].key >= OPT_SOCKET || memchr(shortopts, defs[i].key, n_short))
			continue;
		shortopts[n_short++] = (char)defs[i].key;
		if (defs[i].has_arg == required_argument)
			shortopts[n_short++] = ':';
	}
	longopts[N_DEFS] = (struct option){ 0 };
	shortopts[n_short] = '\0';

	*opts = (struct options){
		.config_dir = SCARDD_DEFAULT_CONFIG_DIR,
		.drivers_dir = SCARDD_DEFAULT_DRIVERS_DIR,
		.policy_path = SCARDD_DEFAULT_POLICY,
		.level = LOG_LEVEL_ERROR,
		.poll_ms = 200,
		.max_handles = 200,
		.driver_timeout_s = 120,
	};

	for (;;) {
		int index = -1;
		int c = getopt_long(argc, argv, shortopts, longopts, &index);
		if (c == -1)
			break;
		if (c == 'h') {
			usage(stdout, argv[0]);
			return OPTIONS_EXIT_OK;
		}
		if (c == 'v') {
			printf("scardd %s\n", SCARDD_VERSION);
			return OPTIONS_EXIT_OK;
		}
		const struct option_def *o = c == '?' ? NULL : find_def(c, index);
		if (!o) {
			fprintf(stderr, "Try '%s --help'.\n", argv[0]);
			return OPTIONS_EXIT_ERROR;
		}
		if (!apply(opts, o, optarg, argv[0]))
			return OPTIONS_EXIT_ERROR;
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		return OPTIONS_EXIT_ERROR;
	}
	const char *env = getenv("PCSCLITE_CSOCK_NAME");
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

void options_log_ignored(const struct options *opts)
{
	for (size_t i = 0; i < opts->n_ignored; i++)
		log_info("option --%s ignored: %s", opts->ignored[i].name, opts->ignored[i].why);
}
