/*
 * scard virtual: drive ifd-virtual readers at run time (insert, remove, swap,
 * mute) through the driver's control socket. The socket is found through
 * PC/SC itself: a DIRECT connection to the reader and a vendor attribute the
 * driver answers, so it works the same under scardd and pcscd.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <reader.h>

#include "scard.h"
#include "vcard.h"

#define SCARD_ATTR_VIRTUAL_CONTROL SCARD_ATTR_VALUE(SCARD_CLASS_VENDOR_DEFINED, 0xA1F0)
#define CONTROL_TIMEOUT_MS 10000
#define EVENT_TIMEOUT_MS 5000

struct target {
	char *reader; /* NULL when only a slot number is known */
	unsigned slot;
	char control[PATH_MAX];
};

/* Asks the driver behind reader for "slot=N control=PATH". */
static int discover(SCARDCONTEXT ctx, const char *reader, struct target *t, bool quiet)
{
	SCARDHANDLE h;
	DWORD proto;
	LONG rv = SCardConnect(ctx, reader, SCARD_SHARE_DIRECT, 0, &h, &proto);
	if (rv != SCARD_S_SUCCESS) {
		if (quiet)
			return EXIT_CONTROL;
		char what[200];
		snprintf(what, sizeof(what),
			 "cannot open %s to find its control socket (use --control)", reader);
		return pcsc_fail(what, rv);
	}
	/* No more than MAX_BUFFER_SIZE: pcsc-lite's client (Debian's libpcsclite1)
	 * answers a longer buffer with SCARD_E_INSUFFICIENT_BUFFER. */
	unsigned char buf[MAX_BUFFER_SIZE + 1];
	DWORD len = MAX_BUFFER_SIZE;
	rv = SCardGetAttrib(h, SCARD_ATTR_VIRTUAL_CONTROL, buf, &len);
	SCardDisconnect(h, SCARD_LEAVE_CARD);
	if (rv != SCARD_S_SUCCESS) {
		if (!quiet)
			err_msg("%s is not an ifd-virtual reader (its driver does not answer the "
				"control attribute)",
				reader);
		return EXIT_CONTROL;
	}
	buf[len < sizeof(buf) ? len : sizeof(buf) - 1] = 0;
	unsigned slot;
	int off = 0;
	if (sscanf((char *)buf, "slot=%u control=%n", &slot, &off) != 1 || off == 0) {
		if (!quiet)
			err_msg("%s: unexpected control attribute '%.60s'", reader, buf);
		return EXIT_CONTROL;
	}
	const char *path = (char *)buf + off;
	if (!path[0]) {
		if (!quiet)
			err_msg("the driver of %s has no control channel (set control = PATH in its "
				"configuration file)",
				reader);
		return EXIT_CONTROL;
	}
	t->slot = slot;
	snprintf(t->control, sizeof(t->control), "%s", path);
	t->reader = strdup(reader);
	return EXIT_OK;
}

/* Sends one command line; reply gets the information lines and the final line. */
static int control_call(const char *path, const char *line, char *reply, size_t cap)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		err_msg("control socket path too long: %s", path);
		return EXIT_CONTROL;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err_msg("cannot reach the ifd-virtual control socket %s: %s", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return EXIT_CONTROL;
	}
	size_t n = strlen(line);
	int rc = EXIT_CONTROL;
	if (send(fd, line, n, MSG_NOSIGNAL) != (ssize_t)n || send(fd, "\n", 1, MSG_NOSIGNAL) != 1) {
		err_msg("control socket %s: %s", path, strerror(errno));
		close(fd);
		return EXIT_CONTROL;
	}
	size_t len = 0;
	reply[0] = 0;
	for (;;) {
		/* done when the last complete line starts with ok or error */
		char *last = NULL;
		for (char *p = reply; p < reply + len;) {
			char *nl = memchr(p, '\n', (size_t)(reply + len - p));
			if (!nl)
				break;
			last = p;
			p = nl + 1;
			if (p == reply + len &&
			    (!strncmp(last, "ok", 2) || !strncmp(last, "error", 5))) {
				rc = !strncmp(last, "ok", 2) ? EXIT_OK : EXIT_CONTROL;
				goto done;
			}
		}
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int k = poll(&pfd, 1, CONTROL_TIMEOUT_MS);
		if (k < 0 && errno == EINTR)
			continue;
		ssize_t got = k > 0 ? read(fd, reply + len, cap - 1 - len) : -1;
		if (got <= 0 || len + (size_t)got >= cap - 1) {
			err_msg("control socket %s: no complete answer", path);
			goto done;
		}
		len += (size_t)got;
		reply[len] = 0;
	}
done:
	close(fd);
	return rc;
}

/* The reader's state now, or 0 if unknown. */
static DWORD reader_state(SCARDCONTEXT ctx, const char *reader)
{
	SCARD_READERSTATE st = { .szReader = reader, .dwCurrentState = SCARD_STATE_UNAWARE };
	if (SCardGetStatusChange(ctx, 0, &st, 1) != SCARD_S_SUCCESS)
		return 0;
	return st.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
}

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * Waits until the daemon reports what the driver just did, so that the next
 * command (scard list, an application) already sees it.
 */
enum change { CH_INSERT, CH_REMOVE, CH_MUTE, CH_UNMUTE };

static bool wait_for_daemon(SCARDCONTEXT ctx, const char *reader, DWORD before, enum change what)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned long c0 = before >> 16;
	bool was_in = before & SCARD_STATE_PRESENT;
	SCARD_READERSTATE st = { .szReader = reader, .dwCurrentState = before };
	for (;;) {
		DWORD s = st.dwCurrentState;
		unsigned long c = s >> 16;
		unsigned long moved = (c - c0) & 0xFFFF;
		bool in = s & SCARD_STATE_PRESENT, mute = s & SCARD_STATE_MUTE;
		/* a swap or a re-seat shows as two events: the card left, a card came */
		if (what == CH_INSERT && in && (!was_in || moved >= 2))
			return true;
		if (what == CH_REMOVE && (s & SCARD_STATE_EMPTY))
			return true;
		if (what == CH_MUTE && in && mute && moved >= 2)
			return true;
		if (what == CH_UNMUTE && in && !mute && moved >= 2)
			return true;
		long left = EVENT_TIMEOUT_MS - elapsed_ms(&t0);
		if (left <= 0)
			return false;
		/*
		 * A client library compares event counters only when the one it is
		 * given is not 0, so a swap on a reader whose counter is still 0
		 * (pcscd's first card) wakes no wait: look again now and then.
		 */
		LONG rv = SCardGetStatusChange(ctx, (DWORD)(left < 200 ? left : 200), &st, 1);
		if (rv == (LONG)SCARD_E_TIMEOUT) {
			st.dwEventState = reader_state(ctx, reader);
			if (!st.dwEventState)
				return false;
		} else if (rv != SCARD_S_SUCCESS) {
			return false;
		}
		st.dwCurrentState = st.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	}
}

static void print_status_line(const char *reader, unsigned slot, const char *line)
{
	/* "slot N card=present mute=no fast=no powered=no atr=.. commands=N event_wakes=N file=..." */
	char card[16] = "?", mute[8] = "?", fast[8] = "?", powered[8] = "?", atr[80] = "-";
	unsigned long commands = 0, wakes = 0;
	const char *file = strstr(line, " file=");
	sscanf(line,
	       "slot %*u card=%15s mute=%7s fast=%7s powered=%7s atr=%79s commands=%lu "
	       "event_wakes=%lu",
	       card, mute, fast, powered, atr, &commands, &wakes);
	if (g_opts.json) {
		printf("{\"reader\":");
		if (reader)
			json_str(stdout, reader);
		else
			printf("null");
		printf(",\"slot\":%u,\"card\":\"%s\",\"mute\":%s,\"fast\":%s,\"powered\":%s,\"atr\":",
		       slot, card, !strcmp(mute, "yes") ? "true" : "false",
		       !strcmp(fast, "yes") ? "true" : "false",
		       !strcmp(powered, "yes") ? "true" : "false");
		if (strcmp(atr, "-"))
			json_str(stdout, atr);
		else
			printf("null");
		printf(",\"commands\":%lu,\"event_wakes\":%lu,\"file\":", commands, wakes);
		if (file && strcmp(file + 6, "-"))
			json_str(stdout, file + 6);
		else
			printf("null");
		printf("}");
	} else {
		char label[160];
		if (reader)
			snprintf(label, sizeof(label), "%s", reader);
		else
			snprintf(label, sizeof(label), "slot %u", slot);
		printf("%-28s card %-7s mute %-3s fast %-3s%s%s\n", label, card, mute, fast,
		       file && strcmp(file + 6, "-") ? "  file " : "",
		       file && strcmp(file + 6, "-") ? file + 6 : "");
	}
}

/* Runs "status N" for each target and prints the lines. */
static int do_status(struct target *t, size_t n)
{
	int rc = EXIT_OK;
	if (g_opts.json)
		printf("{\"readers\":[");
	for (size_t i = 0; i < n; i++) {
		char line[64], reply[8192];
		snprintf(line, sizeof(line), "status %u", t[i].slot);
		int r = control_call(t[i].control, line, reply, sizeof(reply));
		if (r) {
			rc = r;
			continue;
		}
		if (g_opts.json && i)
			printf(",");
		char *nl = strchr(reply, '\n');
		if (nl)
			*nl = 0;
		print_status_line(t[i].reader, t[i].slot, reply);
	}
	if (g_opts.json)
		printf("]}\n");
	return rc;
}

static void usage(void)
{
	err_msg("usage: scard virtual [--control SOCKET] [--no-wait] insert READER [CARDFILE|builtin]\n"
		"       scard virtual ... remove|mute|unmute READER\n"
		"       scard virtual ... fast READER on|off\n"
		"       scard virtual ... status [READER]");
}

int cmd_virtual(int argc, char **argv)
{
	const char *control = getenv("SCARD_VIRTUAL_CONTROL");
	bool wait = true;
	char *args[8];
	int n = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--control") && i + 1 < argc)
			control = argv[++i];
		else if (!strcmp(argv[i], "--no-wait"))
			wait = false;
		else if (argv[i][0] == '-' && argv[i][1] && strcmp(argv[i], "--")) {
			err_msg("virtual: unknown option %s", argv[i]);
			return EXIT_USAGE;
		} else if (strcmp(argv[i], "--") && n < 8)
			args[n++] = argv[i];
		else if (n >= 8) {
			usage();
			return EXIT_USAGE;
		}
	}
	if (control && !control[0])
		control = NULL;
	if (n == 0) {
		usage();
		return EXIT_USAGE;
	}
	const char *action = args[0];
	bool is_status = !strcmp(action, "status");
	int want = !strcmp(action, "insert") ? -1
		   : !strcmp(action, "fast") ? 3
		   : (!strcmp(action, "remove") || !strcmp(action, "mute") ||
		      !strcmp(action, "unmute"))
			   ? 2
		   : is_status ? -2
			       : 0;
	if (want == 0 || (want > 0 && n != want) || (want == -1 && (n < 2 || n > 3)) ||
	    (want == -2 && n > 2) ||
	    (want == 3 && strcmp(args[2], "on") && strcmp(args[2], "off"))) {
		usage();
		return EXIT_USAGE;
	}

	/* the card file: checked here, so a typo gives exit 2 and a clear message */
	char card_path[PATH_MAX] = "";
	if (!strcmp(action, "insert") && n == 3) {
		if (!strcmp(args[2], "builtin")) {
			snprintf(card_path, sizeof(card_path), "builtin");
		} else {
			if (!realpath(args[2], card_path)) {
				err_msg("cannot read card file %s: %s", args[2], strerror(errno));
				return EXIT_USAGE;
			}
			char why[512];
			struct vcard *c = vcard_load(card_path, why, sizeof(why));
			if (!c) {
				err_msg("bad card file %s", why);
				return EXIT_USAGE;
			}
			vcard_free(c);
		}
	}

	SCARDCONTEXT ctx = 0;
	bool have_ctx = false;
	struct target *targets = NULL;
	size_t n_targets = 0;
	int rc = EXIT_OK;
	const char *reader_arg = n >= 2 ? args[1] : NULL;
	char *endp = NULL;
	unsigned long slot_num = reader_arg ? strtoul(reader_arg, &endp, 10) : 0;
	bool numeric = reader_arg && reader_arg[0] && endp && !*endp;

	if (control && (numeric || !reader_arg)) {
		/* no daemon needed: a slot number (or all slots) on a given socket */
		if (!reader_arg) {
			char reply[8192];
			rc = control_call(control, "status", reply, sizeof(reply));
			if (rc == EXIT_OK) {
				if (g_opts.json)
					printf("{\"readers\":[");
				size_t k = 0;
				for (char *line = strtok(reply, "\n"); line;
				     line = strtok(NULL, "\n")) {
					unsigned s;
					if (sscanf(line, "slot %u", &s) != 1)
						continue;
					if (g_opts.json && k++)
						printf(",");
					print_status_line(NULL, s, line);
				}
				if (g_opts.json)
					printf("]}\n");
			}
			return rc;
		}
		targets = calloc(1, sizeof(*targets));
		if (!targets)
			return EXIT_ERROR;
		targets[0].slot = (unsigned)slot_num;
		snprintf(targets[0].control, sizeof(targets[0].control), "%s", control);
		n_targets = 1;
		/* a daemon, if there is one, lets us wait for it to see the change */
		if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) == SCARD_S_SUCCESS)
			have_ctx = true;
		wait = false; /* which reader that slot is, we do not know */
	} else {
		rc = open_context(&ctx);
		if (rc)
			return rc;
		have_ctx = true;
		struct reader_list rl;
		LONG rv = list_readers(ctx, &rl);
		if (rv != SCARD_S_SUCCESS) {
			rc = pcsc_fail("cannot list readers", rv);
			goto out;
		}
		targets = calloc(rl.n + 1, sizeof(*targets));
		if (!targets) {
			reader_list_free(&rl);
			rc = EXIT_ERROR;
			goto out;
		}
		if (reader_arg) {
			const char *reader = resolve_reader(&rl, reader_arg, &rc);
			if (reader)
				rc = discover(ctx, reader, &targets[0], false);
			if (rc == EXIT_OK) {
				n_targets = 1;
				if (control) /* --control wins over what the driver says */
					snprintf(targets[0].control, sizeof(targets[0].control),
						 "%s", control);
			}
		} else {
			/* status of every ifd-virtual reader the daemon has */
			for (size_t i = 0; i < rl.n; i++)
				if (discover(ctx, rl.names[i], &targets[n_targets], true) ==
				    EXIT_OK)
					n_targets++;
			if (n_targets == 0) {
				err_msg("no ifd-virtual reader with a control channel on %s",
					socket_path(NULL));
				rc = EXIT_NO_READER;
			}
		}
		reader_list_free(&rl);
		if (rc)
			goto out;
	}

	if (is_status) {
		rc = do_status(targets, n_targets);
		goto out;
	}

	struct target *t = &targets[0];
	bool is_insert = !strcmp(action, "insert"), is_remove = !strcmp(action, "remove");
	bool is_mute = !strcmp(action, "mute"), is_unmute = !strcmp(action, "unmute");
	DWORD before = (wait && have_ctx && t->reader && strcmp(action, "fast") != 0)
			       ? reader_state(ctx, t->reader)
			       : 0;
	/* what the daemon will show once it has seen the change, if anything */
	bool expect = is_insert ||
		      ((is_remove || is_mute || is_unmute) && (before & SCARD_STATE_PRESENT) &&
		       (!is_mute || !(before & SCARD_STATE_MUTE)) &&
		       (!is_unmute || (before & SCARD_STATE_MUTE)));
	enum change what = is_insert   ? CH_INSERT
			   : is_remove ? CH_REMOVE
			   : is_mute   ? CH_MUTE
				       : CH_UNMUTE;
	char line[PATH_MAX + 64], reply[8192];
	if (is_insert)
		snprintf(line, sizeof(line), "insert %u%s%s", t->slot, card_path[0] ? " " : "",
			 card_path);
	else if (!strcmp(action, "fast"))
		snprintf(line, sizeof(line), "fast %u %s", t->slot, args[2]);
	else
		snprintf(line, sizeof(line), "%s %u", action, t->slot);
	rc = control_call(t->control, line, reply, sizeof(reply));
	char *last = reply;
	for (char *p = strchr(reply, '\n'); p && p[1]; p = strchr(p + 1, '\n'))
		last = p + 1;
	last[strcspn(last, "\n")] = 0;
	const char *text = !strncmp(last, "ok", 2)      ? last + (last[2] == ' ' ? 3 : 2)
			   : !strncmp(last, "error", 5) ? last + (last[5] == ' ' ? 6 : 5)
							: last;
	bool seen = true;
	if (rc == EXIT_OK && before && expect)
		seen = wait_for_daemon(ctx, t->reader, before, what);
	if (g_opts.json) {
		printf("{\"action\":\"%s\",\"reader\":", action);
		if (t->reader)
			json_str(stdout, t->reader);
		else
			printf("null");
		printf(",\"slot\":%u,\"control\":", t->slot);
		json_str(stdout, t->control);
		printf(",\"ok\":%s,\"message\":", rc == EXIT_OK ? "true" : "false");
		json_str(stdout, text);
		printf(",\"daemon_saw_it\":%s}\n",
		       before && expect ? (seen ? "true" : "false") : "null");
	} else if (rc == EXIT_OK) {
		printf("%s: %s\n", t->reader ? t->reader : "ifd-virtual", text);
	}
	if (rc != EXIT_OK && !g_opts.json && reply[0])
		err_msg("%s: %s", t->reader ? t->reader : t->control, text);
	if (rc == EXIT_OK && !seen) {
		err_msg("%s: the daemon did not report the change within %d s", t->reader,
			EVENT_TIMEOUT_MS / 1000);
		rc = EXIT_ERROR;
	}
out:
	for (size_t i = 0; i < n_targets; i++)
		free(targets[i].reader);
	free(targets);
	if (have_ctx)
		SCardReleaseContext(ctx);
	return rc;
}
