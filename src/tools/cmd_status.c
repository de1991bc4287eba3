/*
 * scard status: what the daemon says about itself. The pcsc-lite protocol
 * has no "who are you" request, so this combines the CMD_VERSION exchange on
 * a raw connection (the daemon's protocol version), the socket's peer
 * credentials (which process listens), the reader list through PC/SC and,
 * from scardd only, its own report: its pid, uptime, sockets and clients
 * (daemon_report.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon_report.h"
#include "scard.h"
#include "status_holders.h"
#include "wire.h"
struct daemon_info {
	bool reachable;
	char error[160];
	bool have_version;
	int32_t major, minor;
	uint32_t version_rv;
	bool have_cred;
	pid_t pid;
	uid_t uid;
	char comm[64];
};

static void probe_daemon(const char *path, struct daemon_info *di)
{
	memset(di, 0, sizeof(*di));
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(di->error, sizeof(di->error), "socket path too long");
		return;
	}
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		snprintf(di->error, sizeof(di->error), "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	di->reachable = true;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 && cred.pid > 0) {
		di->have_cred = true;
		di->pid = cred.pid;
		di->uid = cred.uid;
		char p[64];
		snprintf(p, sizeof(p), "/proc/%d/comm", (int)cred.pid);
		FILE *f = fopen(p, "r");
		if (f) {
			if (fgets(di->comm, sizeof(di->comm), f))
				di->comm[strcspn(di->comm, "\n")] = 0;
			fclose(f);
		}
	}
	/* CMD_VERSION in the wire table's default version (4:4): every daemon
	 * since 2018 answers it, and the reply carries the daemon's own version
	 * whatever it decides */
	struct wire_params params;
	wire_params_init(&params);
	const struct wire_cmd_spec *spec = wire_cmd_lookup(params.proto, WIRE_VERSION);
	struct wire_msg msg = { .cmd = WIRE_VERSION };
	msg.u.version.major = params.proto->major;
	msg.u.version.minor = params.proto->minor;
	uint8_t buf[64];
	size_t n = wire_encode_request(&params, &msg, buf, sizeof(buf));
	if (n && spec && spec->reply_size <= sizeof(buf) &&
	    send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n &&
	    daemon_read_full(fd, buf, spec->reply_size)) {
		struct wire_msg reply;
		if (wire_decode_reply(&params, WIRE_VERSION, buf, spec->reply_size, &reply) ==
		    WIRE_OK) {
			di->have_version = true;
			di->major = reply.u.version.major;
			di->minor = reply.u.version.minor;
			di->version_rv = reply.u.version.rv;
		}
	}
	if (!di->have_version)
		snprintf(di->error, sizeof(di->error), "no answer to CMD_VERSION");
	close(fd);
}

/* The libpcsclite.so.1 this process really uses. */
static const char *client_library(void)
{
	Dl_info info;
	void *sym = (void *)&SCardEstablishContext;
	if (dladdr(sym, &info) && info.dli_fname)
		return info.dli_fname;
	return "unknown";
}

/* ---- scardd's report ---- */

static void json_str_or_null(const char *v)
{
	if (*v)
		json_str(stdout, v);
	else
		printf("null");
}

static void json_report(const struct daemon_report *r)
{
	const struct report_line *top = report_first(r, "scardd");
	if (!top) {
		printf("null");
		return;
	}
	printf("{\"version\":");
	json_str(stdout, report_get(top, "version"));
	printf(",\"pid\":%s,\"uid\":%s,\"started\":%s,\"uptime_ms\":%s", report_get(top, "pid"),
	       report_get(top, "uid"), report_get(top, "started"), report_get(top, "uptime_ms"));
	printf(",\"sockets\":[");
	bool first = true;
	for (size_t i = 0; i < r->n; i++) {
		const struct report_line *l = &r->lines[i];
		if (strcmp(l->kind, "socket"))
			continue;
		printf("%s{\"path\":", first ? "" : ",");
		json_str(stdout, report_get(l, "path"));
		printf(",\"readers\":");
		json_number_or_word(report_get(l, "readers"));
		printf(",\"names\":");
		json_number_or_word(report_get(l, "names"));
		printf(",\"prefer\":");
		json_str_or_null(report_get(l, "prefer"));
		printf(",\"mode\":");
		json_str(stdout, report_get(l, "mode"));
		printf(",\"group\":");
		json_str_or_null(report_get(l, "group"));
		printf("}");
		first = false;
	}
	printf("],\"clients\":[");
	first = true;
	for (size_t i = 0; i < r->n; i++) {
		const struct report_line *l = &r->lines[i];
		if (strcmp(l->kind, "client"))
			continue;
		printf("%s{\"id\":%s,\"pid\":%s,\"uid\":%s,\"program\":", first ? "" : ",",
		       report_get(l, "id"), report_get(l, "pid"), report_get(l, "uid"));
		json_str_or_null(report_get(l, "program"));
		printf(",\"socket\":");
		json_str(stdout, report_get(l, "socket"));
		printf(",\"protocol\":");
		json_number_or_word(report_get(l, "protocol"));
		printf(",\"byte_order\":");
		json_str(stdout, report_get(l, "order"));
		printf(",\"arrays\":");
		json_number_or_word(report_get(l, "arrays"));
		printf(",\"names\":%s,\"contexts\":%s,\"cards\":%s,\"waiting\":%s",
		       report_get(l, "names"), report_get(l, "contexts"), report_get(l, "cards"),
		       strcmp(report_get(l, "waiting"), "yes") ? "false" : "true");
		holders_json_cards(r, report_get(l, "id"));
		printf("}");
		first = false;
	}
	printf("]");
	holders_json_readers(r);
	const struct report_line *more = report_first(r, "more");
	const char *cards_out = more ? report_get(more, "cards") : "0";
	printf(",\"clients_hidden\":%s,\"clients_left_out\":%s,\"cards_left_out\":%s}",
	       report_get(top, "hidden"), more ? report_get(more, "clients") : "0",
	       *cards_out ? cards_out : "0");
}

/* "3 h 02 min 05 s" */
static void print_duration(unsigned long long ms)
{
	unsigned long long s = ms / 1000, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
	if (d)
		printf("%llu d %llu h %02llu min", d, h, m);
	else if (h)
		printf("%llu h %02llu min %02llu s", h, m, s % 60);
	else if (m)
		printf("%llu min %02llu s", m, s % 60);
	else
		printf("%llu.%01llu s", s, ms % 1000 / 100);
}

static void print_client(const struct report_line *l, size_t n_sockets)
{
	const char *program = report_get(l, "program");
	printf("  %s: %s (pid %s, uid %s)", report_get(l, "id"), *program ? program : "?",
	       report_get(l, "pid"), report_get(l, "uid"));
	if (n_sockets > 1)
		printf(" on %s", report_get(l, "socket"));
	const char *proto = report_get(l, "protocol"), *arrays = report_get(l, "arrays");
	if (!strcmp(proto, "none")) {
		printf(": no protocol version yet");
	} else {
		printf(": protocol %s, %s", proto, report_get(l, "order"));
		if (!strcmp(arrays, "sized"))
			printf(", reader arrays sized on request");
		else
			printf(", %s-record reader arrays", arrays);
		if (strcmp(report_get(l, "names"), "128"))
			printf(", %s-byte reader names", report_get(l, "names"));
	}
	const char *cards = report_get(l, "cards");
	printf("; %s, %s card handle%s%s\n",
	       strcmp(report_get(l, "contexts"), "0") ? "context" : "no context", cards,
	       strcmp(cards, "1") ? "s" : "",
	       strcmp(report_get(l, "waiting"), "yes") ? "" : ", waiting for a change");
}

static void print_report(const struct daemon_report *r)
{
	const struct report_line *top = report_first(r, "scardd");
	printf("version:   scardd %s\n", report_get(top, "version"));
	printf("uptime:    ");
	print_duration(strtoull(report_get(top, "uptime_ms"), NULL, 10));
	time_t started = (time_t)strtoll(report_get(top, "started"), NULL, 10);
	struct tm tm;
	char when[64];
	if (localtime_r(&started, &tm) && strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm))
		printf(" (since %s)", when);
	printf("\n");
	size_t n_sockets = 0;
	for (size_t i = 0; i < r->n; i++)
		n_sockets += !strcmp(r->lines[i].kind, "socket");
	printf("sockets:   %zu\n", n_sockets);
	for (size_t i = 0; i < r->n; i++) {
		const struct report_line *l = &r->lines[i];
		if (strcmp(l->kind, "socket"))
			continue;
		printf("  %s  (readers=%s, names=%s", report_get(l, "path"),
		       report_get(l, "readers"), report_get(l, "names"));
		if (*report_get(l, "prefer"))
			printf(", prefer=%s", report_get(l, "prefer"));
		printf(", mode=%s", report_get(l, "mode"));
		if (*report_get(l, "group"))
			printf(", group=%s", report_get(l, "group"));
		printf(")\n");
	}
	printf("clients:   %s\n", report_get(top, "clients"));
	for (size_t i = 0; i < r->n; i++) {
		if (!strcmp(r->lines[i].kind, "client")) {
			print_client(&r->lines[i], n_sockets);
			holders_print_cards(r, report_get(&r->lines[i], "id"));
		}
	}
	const char *hidden = report_get(top, "hidden");
	if (strcmp(hidden, "0"))
		printf("  (%s of other users: only root and the daemon's user see them)\n", hidden);
	const struct report_line *more = report_first(r, "more");
	if (more)
		printf("  (%s more clients, %s more card handles: the report has a size limit)\n",
		       report_get(more, "clients"), report_get(more, "cards"));
	holders_print_readers(r);
}

int cmd_status(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		err_msg("usage: scard status");
		return EXIT_USAGE;
	}
	const char *source;
	const char *path = socket_path(&source);
	/* first: scard's own connections would be listed otherwise */
	struct daemon_report report = { 0 };
	bool have_report = daemon_report_fetch(path, &report);
	struct daemon_info di;
	probe_daemon(path, &di);
	const struct report_line *top = have_report ? report_first(&report, "scardd") : NULL;
	if (top) {
		/* the daemon's own word for its pid and uid */
		di.have_cred = true;
		di.pid = (pid_t)atoi(report_get(top, "pid"));
		di.uid = (uid_t)strtoul(report_get(top, "uid"), NULL, 10);
		if (!di.comm[0])
			snprintf(di.comm, sizeof(di.comm), "scardd");
	}

	struct reader_list rl = { 0 };
	SCARD_READERSTATE *st = NULL;
	LONG rv = SCARD_E_NO_SERVICE;
	SCARDCONTEXT ctx = 0;
	if (di.reachable) {
		rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
		if (rv == SCARD_S_SUCCESS)
			rv = list_readers(ctx, &rl);
		if (rv == SCARD_S_SUCCESS && rl.n) {
			st = calloc(rl.n, sizeof(*st));
			for (size_t i = 0; st && i < rl.n; i++)
				st[i].szReader = rl.names[i];
			LONG r2 = st ? SCardGetStatusChange(ctx, 0, st, (DWORD)rl.n)
				     : SCARD_E_NO_MEMORY;
			if (r2 != SCARD_S_SUCCESS && r2 != (LONG)SCARD_E_TIMEOUT) {
				free(st);
				st = NULL;
			}
		}
	}
	if (g_opts.json) {
		printf("{\"socket\":");
		json_str(stdout, path);
		printf(",\"socket_source\":\"%s\",\"running\":%s", source,
		       di.reachable ? "true" : "false");
		printf(",\"daemon\":");
		if (di.have_cred) {
			printf("{\"pid\":%d,\"uid\":%u,\"name\":", (int)di.pid, (unsigned)di.uid);
			json_str(stdout, di.comm);
			printf("}");
		} else {
			printf("null");
		}
		printf(",\"protocol\":");
		if (di.have_version)
			printf("\"%d:%d\",\"accepts_4_4\":%s", di.major, di.minor,
			       di.version_rv == 0 ? "true" : "false");
		else
			printf("null");
		printf(",\"scardd\":");
		json_report(&report);
		printf(",\"client_library\":");
		json_str(stdout, client_library());
		printf(",\"readers\":[");
		for (size_t i = 0; i < rl.n; i++) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(stdout, rl.names[i]);
			printf(",\"card\":\"%s\"}", st ? card_word(st[i].dwEventState) : "unknown");
		}
		printf("]");
		if (!di.reachable || rv != SCARD_S_SUCCESS) {
			printf(",\"error\":");
			json_str(stdout, !di.reachable ? di.error : pcsc_stringify_error(rv));
		}
		printf("}\n");
	} else {
		printf("socket:    %s (%s)\n", path, source);
		if (!di.reachable) {
			printf("daemon:    not running (%s)\n", di.error);
		} else {
			if (di.have_cred)
				printf("daemon:    %s, pid %d, uid %u\n",
				       di.comm[0] ? di.comm : "?", (int)di.pid, (unsigned)di.uid);
			if (di.have_version && di.version_rv)
				printf("protocol:  %d:%d (refuses %s clients)\n", di.major,
				       di.minor, wire_proto_default()->name);
			else if (di.have_version)
				printf("protocol:  %d:%d\n", di.major, di.minor);
			else
				printf("protocol:  unknown (%s)\n", di.error);
			if (top)
				print_report(&report);
			if (rv == SCARD_S_SUCCESS) {
				printf("readers:   %zu\n", rl.n);
				for (size_t i = 0; i < rl.n; i++)
					printf("  %zu: %s  (card %s)\n", i, rl.names[i],
					       st ? card_word(st[i].dwEventState) : "unknown");
			} else {
				printf("readers:   unknown (%s)\n", pcsc_stringify_error(rv));
			}
		}
		printf("library:   %s\n", client_library());
	}
	int rc = EXIT_OK;
	if (!di.reachable) {
		if (!g_opts.json)
			err_msg("no PC/SC daemon answers on %s", path);
		rc = EXIT_NO_DAEMON;
	} else if (rv != SCARD_S_SUCCESS) {
		rc = exit_code_for(rv);
	}
	free(st);
	reader_list_free(&rl);
	daemon_report_free(&report);
	if (ctx)
		SCardReleaseContext(ctx);
	return rc;
}
