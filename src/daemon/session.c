#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "dispatch.h"
#include "event_loop.h"
#include "handles.h"
#include "listener.h"
#include "log.h"
#include "reader_worker.h"
#include "socket_spec.h"
#include "status_waiters.h"

/* Largest request: header, the biggest fixed struct, an extended APDU. */
#define MAX_REQUEST (WIRE_HEADER_SIZE + 512u + WIRE_MAX_BUFFER_SIZE_EXTENDED)
/* Stop taking requests while this much reply data is unsent. */
#define OUT_HIGH_WATER (64u * 1024u)
/* A client that lets more than this pile up is not reading: drop it. */
#define OUT_LIMIT (4u * 1024u * 1024u)

static void on_socket(struct event_loop *loop, int fd, void *data, int mask);

static size_t out_pending(const struct session *s)
{
	return s->out_len - s->out_off;
}

static void update_mask(struct session *s)
{
	if (s->closing)
		return;
	int want = 0;
	if (s->park == PARK_NONE && out_pending(s) < OUT_HIGH_WATER)
		want |= EL_READ;
	if (out_pending(s) > 0)
		want |= EL_WRITE;
	if (want != s->mask && el_mod_fd(s->d->loop, s->fd, want) == 0)
		s->mask = want;
}

void session_fail(struct session *s, const char *why)
{
	if (s->closing)
		return;
	if (why)
		log_info("client %" PRIu64 " (pid %d): %s; closing its connection", s->id,
			 (int)s->pid, why);
	s->closing = true;
}

static void flush_output(struct session *s)
{
	while (out_pending(s) > 0 && !s->closing) {
		ssize_t n = send(s->fd, s->out + s->out_off, out_pending(s),
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			s->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		s->closing = true; /* peer gone; its hang-up event frees the session */
	}
	if (out_pending(s) == 0)
		s->out_off = s->out_len = 0;
}

static bool reserve(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	size_t ncap = *cap ? *cap : 1024;
	while (ncap < need)
		ncap *= 2;
	uint8_t *nbuf = realloc(*buf, ncap);
	if (!nbuf)
		return false;
	*buf = nbuf;
	*cap = ncap;
	return true;
}

void session_send(struct session *s, const void *buf, size_t len)
{
	if (s->closing || len == 0)
		return;
	if (out_pending(s) + len > OUT_LIMIT) {
		session_fail(s, "not reading its replies");
		return;
	}
	if (s->out_off > 0 && s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
	if (!reserve(&s->out, &s->out_cap, s->out_len + len)) {
		session_fail(s, "out of memory for its replies");
		return;
	}
	memcpy(s->out + s->out_len, buf, len);
	s->out_len += len;
	flush_output(s);
	update_mask(s);
}

void session_send_msg(struct session *s, const struct wire_msg *msg)
{
	uint8_t buf[512];
	size_t n = wire_encode_body(&s->params, msg, buf, sizeof(buf));
	if (n == 0) {
		log_error("cannot encode reply %s", wire_cmd_name(msg->cmd));
		session_fail(s, NULL);
		return;
	}
	session_send(s, buf, n);
}

static void consume_input(struct session *s, size_t n)
{
	memmove(s->in, s->in + n, s->in_len - n);
	s->in_len -= n;
}

/*
 * "4:2" covers two layouts: pcsc-lite up to 1.8.3 had 100-byte reader names.
 * Such a client shows it with its first CONNECT (124 bytes, not 152); from
 * then on the connection uses that layout. (Its arrays can only be right
 * from the start on a socket set to names=100.)
 */
static bool adopt_short_names(struct session *s, const struct wire_header *hdr)
{
	const struct wire_proto *short_names = wire_proto_4_2_short_names();
	const struct wire_cmd_spec *connect = wire_cmd_lookup(short_names, WIRE_CONNECT);

	if (s->params.proto != wire_proto_find(4, 2) || hdr->cmd != WIRE_CONNECT ||
	    hdr->size != connect->body_size)
		return false;
	s->params.proto = short_names;
	log_info("client %" PRIu64 " (pid %d): 4:2 with 100-byte reader names", s->id,
		 (int)s->pid);
	return true;
}

/* Parses and dispatches whole requests until one parks or input runs out. */
static void process_input(struct session *s)
{
	while (!s->closing && s->park == PARK_NONE && out_pending(s) < OUT_HIGH_WATER) {
		if (s->in_len < WIRE_HEADER_SIZE)
			return;
		if (!s->order_known) {
			s->params.order = wire_detect_byte_order(s->in);
			s->order_known = true;
		}
		struct wire_header hdr;
		const struct wire_cmd_spec *spec = NULL;
		wire_decode_header(&s->params, s->in, s->in_len, &hdr);
		int rc = wire_check_request(&s->params, &hdr, &spec);
		if (rc == WIRE_E_BAD_SIZE && adopt_short_names(s, &hdr))
			rc = wire_check_request(&s->params, &hdr, &spec);
		if (rc == WIRE_E_UNKNOWN_CMD) {
			log_error("client %" PRIu64 " (pid %d): unknown command 0x%08X", s->id,
				  (int)s->pid, hdr.cmd);
			session_fail(s, "unknown command");
			return;
		}
		if (rc != WIRE_OK) {
			const struct wire_cmd_spec *want = wire_cmd_lookup(s->params.proto, hdr.cmd);
			log_error("client %" PRIu64 " (pid %d): %s with size %u, expected %u", s->id,
				  (int)s->pid, wire_cmd_name(hdr.cmd), hdr.size,
				  want ? want->body_size : 0);
			session_fail(s, "wrong message size");
			return;
		}
		size_t body = spec->body == WIRE_BODY_STRUCT ? spec->body_size : 0;
		size_t need = WIRE_HEADER_SIZE + body;
		if (s->in_len < need)
			goto need_more;

		struct wire_msg msg;
		rc = wire_decode_body(&s->params, hdr.cmd, s->in + WIRE_HEADER_SIZE,
				      s->in_len - WIRE_HEADER_SIZE, &msg);
		if (rc != WIRE_OK) {
			log_error("client %" PRIu64 " (pid %d): %s carries an out-of-bounds length",
				  s->id, (int)s->pid, spec->name);
			session_fail(s, "length out of bounds");
			return;
		}
		size_t data_len = wire_request_trailer_len(&msg);
		need += data_len;
		if (s->in_len < need)
			goto need_more;

		log_debug("client %" PRIu64 ": %s", s->id, spec->name);
		enum dispatch_result r =
			dispatch_request(s, &msg, s->in + WIRE_HEADER_SIZE + body, data_len);
		consume_input(s, need);
		if (r == DISPATCH_CLOSE)
			session_fail(s, NULL);
		continue;
need_more:
		if (need > MAX_REQUEST || !reserve(&s->in, &s->in_cap, need))
			session_fail(s, "request too large");
		return;
	}
}

static void read_input(struct session *s)
{
	for (;;) {
		if (s->in_len == s->in_cap && !reserve(&s->in, &s->in_cap, s->in_cap + 1)) {
			session_fail(s, "out of memory for its requests");
			return;
		}
		size_t room = s->in_cap - s->in_len;
		if (s->in_cap >= MAX_REQUEST && room == 0)
			return;
		ssize_t n = recv(s->fd, s->in + s->in_len, room, MSG_DONTWAIT);
		if (n > 0) {
			s->in_len += (size_t)n;
			if ((size_t)n < room)
				return;
			/* Filled the buffer: parse before reading more. */
			return;
		}
		if (n == 0) {
			s->closing = true;
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			s->closing = true;
		return;
	}
}

static void session_free(struct session *s)
{
	struct daemon *d = s->d;

	status_waiters_remove(d, s);
	if (s->park == PARK_LOCK)
		lock_wait_remove(s);
	if (s->job)
		job_abandon(s->job); /* a late answer is dropped */
	el_del_timer(d->loop, s->job_timer);
	session_release_handles(s);

	el_del_fd(d->loop, s->fd);
	close(s->fd);
	if (s->prev)
		s->prev->next = s->next;
	else
		d->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	d->n_sessions--;
	log_debug("client %" PRIu64 " (pid %d) gone, %zu left", s->id, (int)s->pid,
		  d->n_sessions);
	free(s->in);
	free(s->out);
	free(s);
}

bool session_resume(struct session *s)
{
	if (!s->closing)
		process_input(s);
	if (!s->closing)
		flush_output(s);
	if (s->closing) {
		session_free(s);
		return false;
	}
	update_mask(s);
	return true;
}

static void on_socket(struct event_loop *loop, int fd, void *data, int mask)
{
	struct session *s = data;
	(void)loop;
	(void)fd;
	if (mask & EL_HUP)
		s->closing = true;
	if (!s->closing && (mask & EL_WRITE))
		flush_output(s);
	if (!s->closing && (mask & EL_READ) && s->park == PARK_NONE)
		read_input(s);
	session_resume(s);
}

void session_accept(void *data, const struct peer *peer)
{
	const struct served_socket *sock = data;
	struct daemon *d = sock->d;
	struct session *s = calloc(1, sizeof(*s));
	if (!s) {
		close(peer->fd);
		return;
	}
	s->d = d;
	s->fd = peer->fd;
	s->pid = peer->pid;
	s->uid = peer->uid;
	s->gid = peer->gid;
	s->id = ++d->next_session_id;
	s->sock = sock->spec;
	wire_params_init(&s->params);
	s->legacy_slots = s->sock->readers ? s->sock->readers : WIRE_LEGACY_READER_SLOTS;
	if (el_add_fd(d->loop, s->fd, EL_READ, on_socket, s) < 0) {
		log_error("cannot watch client socket: %s", strerror(errno));
		close(s->fd);
		free(s);
		return;
	}
	s->mask = EL_READ;
	s->next = d->sessions;
	if (d->sessions)
		d->sessions->prev = s;
	d->sessions = s;
	d->n_sessions++;
	log_debug("client %" PRIu64 " connected: pid %d uid %d, %zu clients", s->id,
		  (int)s->pid, (int)s->uid, d->n_sessions);
}

void sessions_free_all(struct daemon *d)
{
	while (d->sessions) {
		d->sessions->closing = true;
		session_free(d->sessions);
	}
}

struct session *session_by_context(const struct daemon *d, uint32_t ctx)
{
	for (struct session *s = d->sessions; s; s = s->next)
		if (s->has_context && s->context == ctx)
			return s;
	return NULL;
}

bool context_in_use(const struct daemon *d, uint32_t ctx)
{
	return session_by_context(d, ctx) != NULL;
}
