/*
 * scard status: what the daemon says about itself. The pcsc-lite protocol
 * has no "who are you" request, so this combines the CMD_VERSION exchange on
 * a raw connection (the daemon's protocol version), the socket's peer
 * credentials (which process listens) and the reader list through PC/SC.
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "scard.h"
#include "wire.h"

#define RAW_TIMEOUT_MS 3000

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

static bool read_full(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int n = poll(&pfd, 1, RAW_TIMEOUT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		ssize_t k = read(fd, buf + got, len - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

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
	    send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n && read_full(fd, buf, spec->reply_size)) {
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

int cmd_status(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		err_msg("usage: scard status");
		return EXIT_USAGE;
	}
	const char *source;
	const char *path = socket_path(&source);
	struct daemon_info di;
	probe_daemon(path, &di);

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
	if (ctx)
		SCardReleaseContext(ctx);
	return rc;
}
