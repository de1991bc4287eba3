/*
 * The ceiling for any PC/SC daemon on this machine: a server that speaks
 * just enough of the wire protocol for a client to establish a context,
 * connect, transmit, disconnect and release, and does nothing else. It
 * reads everything that has arrived at once and answers all of it with one
 * write, from canned state: no readers, no driver, no bookkeeping. What a
 * client library reaches against it is about the most a daemon can give
 * that library here; bench/run prints it beside the real daemons.
 *
 *   ideal_daemon [--epoll | --uring | --uring-loop] SOCKET READER...
 *
 * By default a thread per client blocks in read, woken by the request
 * itself (pcscd's model): two system calls per request. --epoll serves
 * every client from one epoll loop (scardd's model): a third, the wait
 * before the read. --uring gives each client thread an io_uring whose one
 * system call per request sends the answer and waits for the next request.
 * --uring-loop serves every client from one thread and one io_uring (what
 * scardd's loop would become): one system call per pass sends every answer
 * of the pass and waits for the next request of any client.
 * SCardConnect accepts any of the READERs (the array a client reads names
 * them, each with a card); every transmit is answered 90 00, as bench's
 * ifd_instant answers. Serves until SIGTERM.
 */
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <pcsclite.h>

#include "bench_api.h"
#include "uring.h"
#include "wire.h"

#define MAX_READERS 16
/* A request's struct and trailer, and room to read ahead into the next. */
#define INPUT_CAP (WIRE_HEADER_SIZE + WIRE_MAX_STRUCT_SIZE + WIRE_MAX_BUFFER_SIZE_EXTENDED + 4096)
/* The largest answer: a 48-slot reader array (Fedora's), or a struct and 2 bytes. */
#define ANSWER_MAX (48 * WIRE_READER_RECORD_SIZE)
/* Answers to what one read brought; a client pipelining more is dropped. */
#define OUTPUT_CAP (8 * ANSWER_MAX)

static struct wire_reader_state readers[MAX_READERS];
static size_t n_readers;

struct client {
	int fd;
	struct wire_params params;
	uint8_t in[INPUT_CAP];
	size_t have;
	uint8_t out[OUTPUT_CAP];
	size_t out_len;
	uint64_t user_tag; /* what its ring entries carry: 2 in a thread's own ring */
};

/* Fills msg as a daemon with a card in every reader would; the answer's
 * trailer (transmit data) goes to *data. -1 for a command it does not serve. */
static int answer(struct client *c, struct wire_msg *msg, const uint8_t **data, uint32_t *len)
{
	static const uint8_t ok[2] = { 0x90, 0x00 };
	static uint32_t next_context = 1;

	uint32_t rv = SCARD_S_SUCCESS;
	switch (msg->cmd) {
	case WIRE_VERSION: {
		const struct wire_proto *p = wire_proto_serve(msg->u.version.major,
							      msg->u.version.minor);
		if (!p)
			rv = SCARD_E_NO_SERVICE;
		else
			c->params.proto = p;
		break;
	}
	case WIRE_ESTABLISH_CONTEXT:
		msg->u.establish.context = __atomic_fetch_add(&next_context, 1, __ATOMIC_RELAXED);
		break;
	case WIRE_CONNECT:
		rv = SCARD_E_UNKNOWN_READER;
		for (size_t i = 0; i < n_readers; i++)
			if (strcmp(msg->u.connect.reader, readers[i].name) == 0)
				rv = SCARD_S_SUCCESS;
		msg->u.connect.card = 1;
		msg->u.connect.active_protocol = SCARD_PROTOCOL_T1;
		break;
	case WIRE_TRANSMIT:
		msg->u.transmit.recv_pci_protocol = msg->u.transmit.send_pci_protocol;
		msg->u.transmit.recv_pci_length = msg->u.transmit.send_pci_length;
		if (msg->u.transmit.recv_length < sizeof ok) {
			rv = SCARD_E_INSUFFICIENT_BUFFER;
			break;
		}
		msg->u.transmit.recv_length = sizeof ok;
		*data = ok;
		*len = sizeof ok;
		break;
	case WIRE_RELEASE_CONTEXT:
	case WIRE_DISCONNECT: break; /* success, nothing to fill */
	default: return -1;          /* not part of the ceiling */
	}
	wire_msg_set_rv(msg, rv);
	return 0;
}

/* Answers the whole request at the front of c->in into c->out; returns the
 * bytes it used, 0 if more must be read first, -1 to drop the client. */
static long serve_one(struct client *c)
{
	struct wire_header hdr;
	const struct wire_cmd_spec *spec;
	struct wire_msg msg;
	const uint8_t *data = NULL;
	uint32_t data_len = 0;

	if (wire_decode_header(&c->params, c->in, c->have, &hdr) != WIRE_OK)
		return 0;
	if (sizeof c->out - c->out_len < ANSWER_MAX)
		return -1;
	uint8_t *reply = c->out + c->out_len;
	size_t cap = sizeof c->out - c->out_len;
	if (wire_check_request(&c->params, &hdr, &spec) != WIRE_OK)
		return -1;
	size_t used = WIRE_HEADER_SIZE;
	memset(&msg, 0, sizeof msg);
	msg.cmd = hdr.cmd;
	if (spec->body == WIRE_BODY_STRUCT) {
		int r = wire_decode_body(&c->params, hdr.cmd, c->in + used, c->have - used, &msg);
		if (r == WIRE_NEED_MORE)
			return 0;
		if (r != WIRE_OK)
			return -1;
		used += spec->body_size;
		uint32_t trailer = wire_request_trailer_len(&msg);
		if (c->have - used < trailer)
			return c->have == sizeof c->in ? -1 : 0;
		used += trailer;
	}

	size_t n;
	if (spec->reply == WIRE_REPLY_STATE_ARRAY || spec->reply == WIRE_REPLY_ARRAY_AND_WAIT) {
		n = wire_encode_reader_states(&c->params, readers, n_readers, reply, cap);
	} else if (spec->reply == WIRE_REPLY_STRUCT) {
		if (answer(c, &msg, &data, &data_len) < 0)
			return -1;
		n = wire_encode_body(&c->params, &msg, reply, cap);
	} else {
		return -1; /* waiting for events is not part of the ceiling */
	}
	if (n == 0)
		return -1;
	memcpy(reply + n, data, data_len);
	c->out_len += n + data_len;
	return (long)used;
}

/* k more bytes have arrived: answers every whole request (into c->out);
 * 0 to keep the client, -1 to drop it. */
static int took(struct client *c, size_t k)
{
	c->have += k;
	long used;
	while ((used = serve_one(c)) > 0) {
		memmove(c->in, c->in + used, c->have - (size_t)used);
		c->have -= (size_t)used;
	}
	return used;
}

/* One read of what has arrived, and one write of the answers. */
static int take_input(struct client *c, int flags)
{
	ssize_t k = recv(c->fd, c->in + c->have, sizeof c->in - c->have, flags);
	if (k < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (k <= 0 || took(c, (size_t)k) < 0)
		return -1;
	int rc = io_all(c->fd, c->out, c->out_len, true);
	c->out_len = 0;
	return rc;
}

static struct client *client_new(int fd)
{
	struct client *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->user_tag = 2;
	wire_params_init(&c->params);
	return c;
}

static void client_free(struct client *c)
{
	close(c->fd);
	free(c);
}

static bool use_uring;

static void *serve_thread(void *arg)
{
	struct client *c = arg;
	while (take_input(c, 0) == 0)
		;
	client_free(c);
	return NULL;
}

/* With the answers sent (when there are any), the next read; the read
 * starts only once the send is done, so c->out is free when it completes. */
static int queue_send_then_recv(struct uring *u, struct client *c)
{
	/* both entries or neither: a send queued alone would link to the next */
	if (uring_reserve(u, c->out_len > 0 ? 2 : 1) < 0)
		return -1;
	struct io_uring_sqe *sqe;
	if (c->out_len > 0) {
		sqe = uring_queue(u);
		sqe->opcode = IORING_OP_SEND;
		sqe->fd = c->fd;
		sqe->addr = (uintptr_t)c->out;
		sqe->len = (unsigned)c->out_len;
		sqe->msg_flags = MSG_WAITALL; /* all of it, or a failure */
		sqe->flags = IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
		sqe->user_data = c->user_tag | 1;
	}
	sqe = uring_queue(u);
	sqe->opcode = IORING_OP_RECV;
	sqe->fd = c->fd;
	sqe->addr = (uintptr_t)(c->in + c->have);
	sqe->len = (unsigned)(sizeof c->in - c->have);
	sqe->user_data = c->user_tag;
	return 0;
}

static void *serve_uring_thread(void *arg)
{
	struct client *c = arg;
	struct uring u;
	int rc = uring_init(&u, 4);
	if (rc < 0) {
		fprintf(stderr, "ideal_daemon: io_uring: %s\n", strerror(-rc));
		client_free(c);
		return NULL;
	}
	bool alive = queue_send_then_recv(&u, c) == 0;
	while (alive && uring_submit_and_wait(&u) == 0) {
		struct io_uring_cqe *cqe;
		while (alive && (cqe = uring_peek(&u))) {
			/* a send's entry comes only when it failed (and its read is cancelled) */
			int res = cqe->res;
			bool is_recv = cqe->user_data == 2;
			uring_consume(&u);
			if (!is_recv || res <= 0) {
				alive = false;
				break;
			}
			c->out_len = 0;
			alive = took(c, (size_t)res) >= 0 && queue_send_then_recv(&u, c) == 0;
		}
	}
	uring_free(&u);
	client_free(c);
	return NULL;
}

/* user_data of the loop's ring: a client's read is its pointer, a failed
 * send the pointer with the low bit set. The read linked to a failed send
 * is cancelled without an entry of its own (the send skips successes, and
 * with them the link's cancellations), so that one is the client's last. */
#define ACCEPTED 0

static int queue_accept(struct uring *u, int listener)
{
	if (uring_reserve(u, 1) < 0)
		return -1;
	struct io_uring_sqe *sqe = uring_queue(u);
	sqe->opcode = IORING_OP_ACCEPT;
	sqe->fd = listener;
	sqe->accept_flags = SOCK_CLOEXEC;
	sqe->user_data = ACCEPTED;
	return 0;
}

/* One io_uring for every client: each completed read is answered at once
 * and the answer's send and the next read are queued; the pass's one
 * io_uring_enter submits them all and waits for the next completion. */
static int serve_uring_loop(int listener)
{
	struct uring u;
	int rc = uring_init(&u, 256);
	if (rc < 0) {
		fprintf(stderr, "ideal_daemon: io_uring: %s\n", strerror(-rc));
		return 1;
	}
	if (queue_accept(&u, listener) < 0)
		return 1;
	for (;;) {
		rc = uring_submit_and_wait(&u);
		if (rc < 0) {
			fprintf(stderr, "ideal_daemon: io_uring_enter: %s\n", strerror(-rc));
			return 1;
		}
		struct io_uring_cqe *cqe;
		while ((cqe = uring_peek(&u))) {
			uint64_t tag = cqe->user_data;
			int res = cqe->res;
			uring_consume(&u);
			if (tag == ACCEPTED) {
				if (res < 0 && res != -EINTR && res != -ECONNABORTED) {
					fprintf(stderr, "ideal_daemon: accept: %s\n",
						strerror(-res));
					return 1;
				}
				struct client *c = res >= 0 ? client_new(res) : NULL;
				if (c)
					c->user_tag = (uintptr_t)c;
				if (c && queue_send_then_recv(&u, c) < 0)
					client_free(c);
				if (queue_accept(&u, listener) < 0)
					return 1;
				continue;
			}
			struct client *c = (struct client *)(uintptr_t)(tag & ~(uint64_t)1);
			if (tag & 1) {
				client_free(c); /* a failed send, the client's last entry */
				continue;
			}
			c->out_len = 0;
			if (res <= 0 || took(c, (size_t)res) < 0 || queue_send_then_recv(&u, c) < 0)
				client_free(c);
		}
	}
}

static int accept_client(int listener)
{
	for (;;) {
		int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0 || (errno != EINTR && errno != ECONNABORTED))
			return fd;
	}
}

/* pcscd's model: a thread per client, blocked in its read. */
static int serve_threads(int listener)
{
	for (;;) {
		int fd = accept_client(listener);
		if (fd < 0) {
			perror("accept");
			return 1;
		}
		struct client *c = client_new(fd);
		pthread_t t;
		if (!c)
			continue;
		if (pthread_create(&t, NULL, use_uring ? serve_uring_thread : serve_thread, c) !=
		    0) {
			client_free(c);
			continue;
		}
		pthread_detach(t);
	}
}

/* scardd's model: one thread, epoll, a read when a client is readable. */
static int serve_epoll(int listener)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) {
		perror("epoll");
		return 1;
	}
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0 && errno != EINTR) {
			perror("epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;
			if (c) {
				if (take_input(c, MSG_DONTWAIT) < 0) {
					epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
					client_free(c);
				}
				continue;
			}
			int fd = accept_client(listener);
			if (fd < 0 || !(c = client_new(fd)))
				continue;
			ev.data.ptr = c;
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
				client_free(c);
		}
	}
}

int main(int argc, char **argv)
{
	bool use_epoll = argc > 1 && strcmp(argv[1], "--epoll") == 0;
	bool use_uring_loop = argc > 1 && strcmp(argv[1], "--uring-loop") == 0;
	use_uring = argc > 1 && strcmp(argv[1], "--uring") == 0;
	if (use_epoll || use_uring || use_uring_loop) {
		argc--;
		argv++;
	}
	if (argc < 3 || argc - 2 > MAX_READERS) {
		fprintf(stderr,
			"usage: %s [--epoll | --uring | --uring-loop] SOCKET READER... (at most %d readers)\n",
			argv[0], MAX_READERS);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		struct wire_reader_state *r = &readers[n_readers++];
		snprintf(r->name, sizeof r->name, "%s", argv[i]);
		r->state = SCARD_PRESENT | SCARD_POWERED | SCARD_NEGOTIABLE;
		r->atr[0] = 0x3B; /* the ATR ifd_instant gives */
		r->atr[1] = 0x80;
		r->atr[2] = 0x80;
		r->atr[3] = 0x01;
		r->atr[4] = 0x01;
		r->atr_len = 5;
		r->protocol = SCARD_PROTOCOL_T1;
		r->event_counter = 1;
	}

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(argv[1]) >= sizeof addr.sun_path) {
		fprintf(stderr, "socket path too long: %s\n", argv[1]);
		return 2;
	}
	strcpy(addr.sun_path, argv[1]);
	int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(argv[1]);
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
	    listen(listener, 128) < 0) {
		perror(argv[1]);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (use_uring || use_uring_loop) {
		struct uring u;
		int rc = uring_init(&u, 4);
		if (rc < 0) {
			fprintf(stderr, "io_uring unavailable here: %s\n", strerror(-rc));
			return 3;
		}
		uring_free(&u);
	}
	if (use_uring_loop)
		return serve_uring_loop(listener);
	return use_epoll ? serve_epoll(listener) : serve_threads(listener);
}
