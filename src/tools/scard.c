/*
 * scard: look at and talk to smart cards through any PC/SC daemon (scardd or
 * pcsc-lite's pcscd). A plain PC/SC application: it uses whichever
 * libpcsclite.so.1 it is linked with or pointed at.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "scard.h"

static const char usage_text[] =
	"usage: scard [--json] [--socket PATH] COMMAND [ARGS]\n"
	"\n"
	"Commands:\n"
	"  list                      readers, card state, ATR, who holds the reader\n"
	"  watch [--timeout S] [--count N]\n"
	"                            print card and reader changes as they happen\n"
	"  send [-f FILE] [--t0|--t1] [--exclusive] [--raw] READER [APDU...]\n"
	"                            send APDUs (hex) and explain the answers; T=0\n"
	"                            GET RESPONSE (61xx) and wrong Le (6Cxx) are handled\n"
	"                            unless --raw; -f reads one APDU per line ('-' = stdin)\n"
	"  status                    what the daemon says about itself\n"
	"  virtual [--control SOCKET] [--no-wait] ACTION READER [ARGS]\n"
	"                            drive an ifd-virtual reader: insert READER [CARDFILE|builtin],\n"
	"                            remove READER, mute READER, unmute READER,\n"
	"                            fast READER on|off, status [READER]\n"
	"\n"
	"READER is a reader's full name, its number in `scard list`, or a unique part\n"
	"of its name.\n"
	"\n"
	"Options:\n"
	"  --json          machine-readable output (one JSON document; watch: one per line)\n"
	"  --socket PATH   the daemon's socket (sets PCSCLITE_CSOCK_NAME); default\n"
	"                  $PCSCLITE_CSOCK_NAME, else " SCARDD_DEFAULT_SOCKET "\n"
	"  -h, --help      this text\n"
	"  --version       scard's version\n"
	"\n"
	"Exit codes:\n"
	"  0  success\n"
	"  1  other error (PC/SC or system)\n"
	"  2  usage: bad arguments, bad APDU hex, unreadable script or card file\n"
	"  3  no PC/SC daemon answers on the socket\n"
	"  4  reader not found, or no readers at all\n"
	"  5  no card in the reader, card removed, or card mute\n"
	"  6  sharing violation: another application holds the reader exclusively\n"
	"  7  send: the card answered a status word other than 90 00\n"
	"  8  virtual: control channel unreachable, or it refused the command\n";

static void usage(FILE *f)
{
	fputs(usage_text, f);
}

int main(int argc, char **argv)
{
	/* global options may appear anywhere before "--"; the rest goes to the command */
	char **rest = calloc((size_t)argc + 1, sizeof(char *));
	if (!rest)
		return EXIT_ERROR;
	int n = 0;
	bool dashdash = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (dashdash) {
			rest[n++] = argv[i];
		} else if (!strcmp(a, "--")) {
			dashdash = true;
			rest[n++] = argv[i];
		} else if (!strcmp(a, "--json")) {
			g_opts.json = true;
		} else if (!strcmp(a, "--socket") || !strncmp(a, "--socket=", 9)) {
			const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || !v[0]) {
				err_msg("--socket needs a path");
				free(rest);
				return EXIT_USAGE;
			}
			g_opts.socket = v;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			free(rest);
			return EXIT_OK;
		} else if (!strcmp(a, "--version")) {
			printf("scard %s\n", SCARDD_VERSION);
			free(rest);
			return EXIT_OK;
		} else {
			rest[n++] = argv[i];
		}
	}
	/* libpcsclite reads the variable at its first call, which comes later */
	if (g_opts.socket)
		setenv("PCSCLITE_CSOCK_NAME", g_opts.socket, 1);
	if (n == 0) {
		usage(stderr);
		free(rest);
		return EXIT_USAGE;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "list", cmd_list },     { "watch", cmd_watch },     { "send", cmd_send },
		{ "status", cmd_status }, { "virtual", cmd_virtual },
	};
	int rc = -1;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(rest[0], cmds[i].name))
			rc = cmds[i].fn(n, rest);
	if (rc < 0) {
		err_msg("unknown command '%s' (scard --help lists them)", rest[0]);
		rc = EXIT_USAGE;
	}
	free(rest);
	return rc;
}
