/*
 * libFuzzer: our libpcsclite against a hostile or broken daemon. The input
 * is every byte the "daemon" sends back, whatever the library asks: version
 * answers, reader arrays, replies and event signals, in any order and of
 * any length. Each input runs one application's worth of calls. None may
 * crash, leak memory or a connection, hang, or report a length larger than
 * the buffer it was given.
 *
 * The daemon end is a thread behind a real socket ($PCSCLITE_CSOCK_NAME):
 * the first connection of an input gets the input and then end-of-file;
 * any later one (the library reconnecting) gets end-of-file at once.
 *
 * Seeds are recorded conversations: with FUZZ_CLIENT_RECORD=SOCKET:FILE the
 * same calls go to the daemon at SOCKET and FILE gets what it answered
 * (tests/fuzz/make_client_reply_seeds).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <reader.h>
#include <winscard.h>

#define FAKE_READER "Fake Reader 00 00"
#define PNP_READER "\\\\?PnP?\\Notification"

static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle;
	uint8_t *data; /* this input, for the first connection */
	size_t size;
	bool served;
	int active;            /* connections not yet closed by the library */
	const char *record_to; /* record mode: the real daemon's socket */
	uint8_t *recorded;
	size_t recorded_len;
} srv = { .lock = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
			__builtin_trap(); \
		} \
	} while (0)

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the library hung up early: fine */
		p += w;
		n -= (size_t)w;
	}
}

/* Record mode: relays both ways and keeps what the daemon said. */
static void relay(int fd)
{
	int up = unix_connect(srv.record_to);
	uint8_t buf[65536];

	if (up < 0) {
		fprintf(stderr, "cannot connect to %s\n", srv.record_to);
		exit(1);
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = up, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0)
			break;
		if (p[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			write_all(up, buf, (size_t)n);
		}
		if (p[1].revents) {
			n = read(up, buf, sizeof(buf));
			if (n <= 0)
				break;
			pthread_mutex_lock(&srv.lock);
			srv.recorded = realloc(srv.recorded, srv.recorded_len + (size_t)n);
			CHECK(srv.recorded);
			memcpy(srv.recorded + srv.recorded_len, buf, (size_t)n);
			srv.recorded_len += (size_t)n;
			pthread_mutex_unlock(&srv.lock);
			write_all(fd, buf, (size_t)n);
		}
	}
	close(up);
}

/* Record mode: one thread per connection, relaying the first to the daemon. */
static void *record_connection(void *arg)
{
	int fd = (int)(intptr_t)arg;
	bool first;

	pthread_mutex_lock(&srv.lock);
	first = !srv.served;
	srv.served = true;
	pthread_mutex_unlock(&srv.lock);
	if (first)
		relay(fd);
	close(fd);
	pthread_mutex_lock(&srv.lock);
	srv.active--;
	pthread_cond_broadcast(&srv.idle);
	pthread_mutex_unlock(&srv.lock);
	return NULL;
}

#define MAX_CONNS 64

/* A connection the fuzzing server feeds: the input (the first of a run) or nothing. */
struct conn {
	int fd;
	const uint8_t *data;
	size_t size, off;
	bool fed; /* all written and shut down for writing */
};

static bool accept_one(int lfd, struct conn *conns, int *n)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return false;
	CHECK(*n < MAX_CONNS);
	struct conn *c = &conns[(*n)++];
	*c = (struct conn){ .fd = fd };
	pthread_mutex_lock(&srv.lock);
	srv.active++;
	if (!srv.served) {
		c->data = srv.data;
		c->size = srv.size;
		srv.served = true;
	}
	pthread_mutex_unlock(&srv.lock);
	return true;
}

/* Writes what the socket takes; once all is written, end-of-file follows. */
static void feed_some(struct conn *c)
{
	while (c->off < c->size) {
		ssize_t w = send(c->fd, c->data + c->off, c->size - c->off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (w <= 0)
			break; /* the library hung up early: fine */
		c->off += (size_t)w;
	}
	shutdown(c->fd, SHUT_WR);
	c->fed = true;
}

/* Reads what the library sends; false once it closed its end. */
static bool sink(struct conn *c)
{
	uint8_t buf[4096];
	ssize_t n;

	while ((n = read(c->fd, buf, sizeof(buf))) > 0)
		;
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

/*
 * The fuzzing server: one thread and poll for every connection, since a
 * thread per connection (as a sanitized build starts and ends them) cost
 * more than the library's whole run.
 */
static void *serve_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	struct conn conns[MAX_CONNS];
	struct pollfd p[MAX_CONNS + 1];
	int n = 0;

	for (;;) {
		p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < n; i++)
			p[i + 1] = (struct pollfd){
				.fd = conns[i].fd, .events = POLLIN | (conns[i].fed ? 0 : POLLOUT)
			};
		if (poll(p, (nfds_t)n + 1, -1) < 0)
			continue;
		for (int i = n - 1; i >= 0; i--) {
			struct conn *c = &conns[i];

			if (!c->fed && (p[i + 1].revents & (POLLOUT | POLLERR | POLLHUP)))
				feed_some(c);
			if (!(p[i + 1].revents & (POLLIN | POLLERR | POLLHUP)) || sink(c))
				continue;
			close(c->fd);
			conns[i] = conns[--n];
			pthread_mutex_lock(&srv.lock);
			srv.active--;
			pthread_cond_broadcast(&srv.idle);
			pthread_mutex_unlock(&srv.lock);
		}
		if ((p[0].revents & POLLIN) && accept_one(lfd, conns, &n))
			feed_some(&conns[n - 1]);
	}
	return NULL;
}

static void *record_loop(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (fd < 0)
			continue;
		pthread_mutex_lock(&srv.lock);
		srv.active++;
		pthread_mutex_unlock(&srv.lock);
		CHECK(pthread_create(&t, NULL, record_connection, (void *)(intptr_t)fd) == 0);
		pthread_detach(t);
	}
	return NULL;
}

/* --- the application ------------------------------------------------------ */

/* A multi-string of at most len bytes: NUL-terminated strings, then a NUL. */
static void check_multistring(const char *s, DWORD len)
{
	CHECK(len >= 1 && s[len - 1] == '\0');
	CHECK(len == 1 || s[len - 2] == '\0');
}

static void card_calls(SCARDCONTEXT ctx, const char *reader)
{
	static const BYTE select_mf[] = { 0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00 };
	static const BYTE get_challenge[] = { 0x00, 0x84, 0x00, 0x00, 0x08 };
	SCARDHANDLE card;
	DWORD proto = 0, len, state;
	BYTE resp[64], atr[MAX_ATR_SIZE], attr[40], ctl_out[16];
	char name[48];
	LONG rv;

	rv = SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
			  &card, &proto);
	if (rv != SCARD_S_SUCCESS)
		return;
	(void)SCardBeginTransaction(card);
	len = sizeof(resp);
	if (SCardTransmit(card, proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1, select_mf,
			  sizeof(select_mf), NULL, resp, &len) == SCARD_S_SUCCESS)
		CHECK(len <= sizeof(resp));
	len = sizeof(resp);
	if (SCardTransmit(card, SCARD_PCI_T1, get_challenge, sizeof(get_challenge), NULL, resp,
			  &len) == SCARD_S_SUCCESS)
		CHECK(len <= sizeof(resp));
	{
		DWORD name_len = sizeof(name), atr_len = sizeof(atr);

		if (SCardStatus(card, name, &name_len, &state, &proto, atr, &atr_len) ==
		    SCARD_S_SUCCESS) {
			CHECK(name_len >= 1 && name_len <= sizeof(name) && atr_len <= sizeof(atr));
			CHECK(name[name_len - 1] == '\0');
		}
	}
	len = 0;
	if (SCardControl(card, SCARD_CTL_CODE(3400), resp, 2, ctl_out, sizeof(ctl_out), &len) ==
	    SCARD_S_SUCCESS)
		CHECK(len <= sizeof(ctl_out));
	len = sizeof(attr);
	if (SCardGetAttrib(card, SCARD_ATTR_ATR_STRING, attr, &len) == SCARD_S_SUCCESS)
		CHECK(len <= sizeof(attr));
	(void)SCardSetAttrib(card, SCARD_ATTR_DEVICE_FRIENDLY_NAME, (const BYTE *)"x", 1);
	(void)SCardReconnect(card, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T1, SCARD_LEAVE_CARD, &proto);
	(void)SCardEndTransaction(card, SCARD_LEAVE_CARD);
	(void)SCardDisconnect(card, SCARD_RESET_CARD);
}

static void application(void)
{
	SCARDCONTEXT ctx;
	SCARD_READERSTATE rs[2];
	char *readers = NULL, fixed[40];
	DWORD len = SCARD_AUTOALLOCATE;
	const char *reader = FAKE_READER;
	LONG rv;

	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) != SCARD_S_SUCCESS)
		return;
	CHECK(SCardIsValidContext(ctx) == SCARD_S_SUCCESS);
	rv = SCardListReaders(ctx, NULL, (LPSTR)&readers, &len);
	if (rv == SCARD_S_SUCCESS) {
		check_multistring(readers, len);
		if (readers[0] != '\0')
			reader = readers;
	}
	len = sizeof(fixed);
	if (SCardListReaders(ctx, NULL, fixed, &len) == SCARD_S_SUCCESS) {
		CHECK(len <= sizeof(fixed));
		check_multistring(fixed, len);
	}
	memset(rs, 0, sizeof(rs));
	rs[0].szReader = reader;
	rs[1].szReader = PNP_READER;
	for (int round = 0; round < 2; round++) {
		/* a snapshot, then a short wait from what it said */
		rv = SCardGetStatusChange(ctx, round == 0 ? 0 : 2, rs, 2);
		if (rv != SCARD_S_SUCCESS)
			break;
		CHECK(rs[0].cbAtr <= MAX_ATR_SIZE);
		for (int j = 0; j < 2; j++)
			rs[j].dwCurrentState = rs[j].dwEventState & ~SCARD_STATE_CHANGED;
	}
	card_calls(ctx, reader);
	len = sizeof(fixed);
	if (SCardListReaderGroups(ctx, fixed, &len) == SCARD_S_SUCCESS)
		check_multistring(fixed, len);
	if (readers)
		CHECK(SCardFreeMemory(ctx, readers) == SCARD_S_SUCCESS);
	(void)SCardReleaseContext(ctx);
}

/* Runs the application against data; returns once every connection closed. */
static void run(const uint8_t *data, size_t size)
{
	pthread_mutex_lock(&srv.lock);
	srv.data = malloc(size ? size : 1);
	CHECK(srv.data);
	if (size > 0)
		memcpy(srv.data, data, size);
	srv.size = size;
	srv.served = false;
	pthread_mutex_unlock(&srv.lock);

	application();

	pthread_mutex_lock(&srv.lock);
	while (srv.active > 0)
		pthread_cond_wait(&srv.idle, &srv.lock); /* a leaked connection hangs here */
	free(srv.data);
	srv.data = NULL;
	pthread_mutex_unlock(&srv.lock);
}

static void record(const char *spec)
{
	char *target = strdup(spec), *out = strrchr(target, ':');
	FILE *f;

	CHECK(target);
	if (!out) {
		fprintf(stderr, "FUZZ_CLIENT_RECORD=SOCKET:FILE\n");
		exit(2);
	}
	*out++ = '\0';
	srv.record_to = target;
	run(NULL, 0);
	f = fopen(out, "wb");
	CHECK(f && fwrite(srv.recorded, 1, srv.recorded_len, f) == srv.recorded_len);
	fclose(f);
	fprintf(stderr, "recorded %zu bytes from %s into %s\n", srv.recorded_len, target, out);
	exit(0);
}

static char dir[] = "/tmp/fuzz-client-XXXXXX";
static char path[sizeof(dir) + 16];

static void remove_socket(void)
{
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *rec = getenv("FUZZ_CLIENT_RECORD");
	pthread_t t;
	int lfd;

	(void)argc;
	(void)argv;
	CHECK(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fuzz.comm", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      listen(lfd, 16) == 0);
	atexit(remove_socket);
	setenv("PCSCLITE_CSOCK_NAME", path, 1);
	CHECK(pthread_create(&t, NULL, rec ? record_loop : serve_loop, (void *)(intptr_t)lfd) == 0);
	pthread_detach(t);
	if (rec)
		record(rec);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size);
	return 0;
}
