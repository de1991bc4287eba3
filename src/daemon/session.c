#include "session.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <pcsclite.h>

#include "access.h"
#include "audit.h"
#include "daemon.h"
#include "event_loop.h"
#include "jobs.h"
#include "listener.h"
#include "log.h"
#include "polkit_gate.h"
#include "requests.h"
#include "socket_spec.h"
#include "status_report.h"

/* Largest request: header, the biggest fixed struct, an extended APDU. */
#define MAX_REQUEST (WIRE_HEADER_SIZE + WIRE_MAX_STRUCT_SIZE + WIRE_MAX_BUFFER_SIZE_EXTENDED)
/* Stop taking requests while this much reply data is unsent. */
#define OUT_HIGH_WATER (64u * 1024u)
/* A client that lets more than this pile up is not reading: drop it. */
#define OUT_LIMIT (4u * 1024u * 1024u)

static size_t out_pending(const struct session *s)
{
	return s->out_len - s->out_off;
}

/* Queues the session to be settled before the loop sleeps. */
static void mark_dirty(struct session *s)
{
	if (s->dirty)
		return;
	struct daemon *d = s->d;
	s->dirty = true;
	s->next_dirty = NULL;
	if (d->dirty_tail)
		d->dirty_tail->next_dirty = s;
	else
		d->dirty = s;
	d->dirty_tail = s;
}

/* Its buffered input may hold a request that can run now. */
static void wake_input(struct session *s)
{
	s->process = true;
	mark_dirty(s);
}

void session_fail(struct session *s, const char *why)
{
	if (s->closing)
		return;
	if (why)
		log_info("client %" PRIu64 " (pid %d): %s; closing its connection", s->id,
			 (int)s->pid, why);
	s->closing = true;
	mark_dirty(s);
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
		session_fail(s, NULL); /* peer gone */
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

/* Keeps what the socket did not take, and watches for room. */
static void queue_output(struct session *s, const uint8_t *buf, size_t len)
{
	if (len == 0)
		return;
	if (s->out_off > 0 && s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
	if (!reserve(&s->out, &s->out_cap, s->out_len + len)) {
		session_fail(s, "out of memory for its replies");
		return;
	}
	memcpy(s->out + s->out_len, buf, len);
	s->out_len += len;
	flush_output(s);
	mark_dirty(s);
}

/*
 * Sends head and then tail (either may be empty) as one message: a reply
 * struct and the data after it reach the client together, in one system
 * call, so it wakes once.
 */
static void send_parts(struct session *s, const uint8_t *head, size_t head_len, const uint8_t *tail,
		       size_t tail_len)
{
	if (s->closing || head_len + tail_len == 0)
		return;
	if (out_pending(s) + head_len + tail_len > OUT_LIMIT) {
		session_fail(s, "not reading its replies");
		return;
	}
	size_t sent = 0;
	if (out_pending(s) == 0) {
		/* The common case: nothing queued, and the socket takes it all now. */
		struct iovec iov[2] = { { (void *)head, head_len }, { (void *)tail, tail_len } };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = tail_len ? 2 : 1 };
		ssize_t n = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			session_fail(s, NULL);
			return;
		}
		sent = n > 0 ? (size_t)n : 0;
	}
	if (sent < head_len)
		queue_output(s, head + sent, head_len - sent);
	size_t tail_sent = sent > head_len ? sent - head_len : 0;
	if (tail_len > tail_sent) /* (tail may be NULL: no arithmetic on it then) */
		queue_output(s, tail + tail_sent, tail_len - tail_sent);
}

void session_send(struct session *s, const void *buf, size_t len)
{
	send_parts(s, buf, len, NULL, 0);
}

void session_send_msg_data(struct session *s, const struct wire_msg *msg, const void *data,
			   size_t len)
{
	uint8_t buf[WIRE_MAX_STRUCT_SIZE];
	size_t n = wire_encode_body(&s->params, msg, buf, sizeof(buf));
	if (n == 0) {
		log_error("cannot encode reply %s", wire_cmd_name(msg->cmd));
		session_fail(s, NULL);
		return;
	}
	send_parts(s, buf, n, data, len);
	if (s->d->audit)
		audit_reply(s->d->audit, s, msg);
}

void session_send_msg(struct session *s, const struct wire_msg *msg)
{
	session_send_msg_data(s, msg, NULL, 0);
}

/* ---- parking ---- */

static void on_job_finished(struct daemon *d, struct session *s, struct job *job);

static void on_job_timeout(struct event_loop *loop, uint64_t id, void *data)
{
	struct session *s = data;
	struct job *job = s->job;
	(void)loop;
	(void)id;
	s->job_timer = 0;
	if (!job)
		return;
	log_error("client %" PRIu64 " (pid %d): %s got no answer from the driver in %u s", s->id,
		  (int)s->pid, wire_cmd_name(job->msg.cmd), s->d->opts->driver_timeout_s);
	s->job = NULL;
	s->park = PARK_NONE;
	requests_timed_out(s, job);
	request_log_rv(s, SCARD_E_TIMEOUT);
	jobs_abandon(&s->d->jobs, job); /* a late answer still updates the reader */
	wake_input(s);
}

static void park_job(struct session *s, struct job *job, const struct wire_msg *msg)
{
	job->session = s;
	job->msg = *msg;
	job->answer = job->finish;
	job->finish = on_job_finished;
	s->park = PARK_JOB;
	s->job = job;
	s->job_timer = el_add_timer(s->d->loop, (uint64_t)s->d->opts->driver_timeout_s * 1000,
				    on_job_timeout, s);
	jobs_submit(&s->d->jobs, job);
}

/* Runs on the loop for every job a session parked on, answered or abandoned. */
static void on_job_finished(struct daemon *d, struct session *s, struct job *job)
{
	if (s) {
		s->park = PARK_NONE;
		s->job = NULL;
		el_del_timer(d->loop, s->job_timer);
		s->job_timer = 0;
		wake_input(s); /* input may be waiting behind the request */
	}
	job->answer(d, s, job);
	if (s)
		request_log_answered(s, &job->msg);
}

static void unpark_lock(struct session *s)
{
	reader_unwait(&s->lock_wait);
	s->park = PARK_NONE;
	if (s->lock_timer) {
		el_del_timer(s->d->loop, s->lock_timer);
		s->lock_timer = 0;
	}
}

static void on_lock_timeout(struct event_loop *loop, uint64_t id, void *data)
{
	struct session *s = data;
	(void)loop;
	(void)id;
	s->lock_timer = 0;
	struct wire_msg msg = s->parked;
	unpark_lock(s);
	s->auth_granted = false;
	reply_rv(s, &msg, SCARD_E_SHARING_VIOLATION);
	request_log_answered(s, &msg);
	wake_input(s);
}

static void park_lock(struct session *s, struct reader *r, const struct wire_msg *msg,
		      unsigned wait_ms)
{
	s->park = PARK_LOCK;
	s->parked = *msg;
	reader_wait_lock(r, &s->lock_wait);
	if (wait_ms)
		s->lock_timer = el_add_timer(s->d->loop, wait_ms, on_lock_timeout, s);
}

/* Runs one decoded request and does what its outcome asks. */
static void run_request(struct session *s, struct wire_msg *msg, const uint8_t *data, size_t len)
{
	struct request rq = { .s = s, .msg = msg, .data = data, .data_len = len };
	request_log_begin(s, msg);
	switch (requests_handle(&rq)) {
	case OUT_DONE: request_log_answered(s, msg); break;
	case OUT_JOB: park_job(s, rq.job, msg); break;
	case OUT_WAIT_LOCK: park_lock(s, rq.lock_reader, msg, rq.lock_wait_ms); break;
	case OUT_AUTH:
		s->park = PARK_AUTH;
		s->parked = *msg;
		s->auth_for_request = true;
		break;
	case OUT_CLOSE:
		request_log_closed(s);
		session_fail(s, NULL);
		break;
	}
	/* polkit's yes holds for this request while it waits for a lock, no longer */
	if (s->park != PARK_LOCK)
		s->auth_granted = false;
}

void session_auth_answered(struct session *s, bool allowed)
{
	if (s->park != PARK_AUTH || s->closing)
		return;
	s->park = PARK_NONE;
	if (!s->auth_for_request) {
		/* the connection itself (access_pcsc): refused, it is closed, as by pcscd */
		if (!allowed)
			session_fail(s, NULL);
		wake_input(s);
		return;
	}
	s->auth_for_request = false;
	struct wire_msg msg = s->parked;
	if (allowed) {
		s->auth_granted = true;
		run_request(s, &msg, NULL, 0);
	} else {
		reply_rv(s, &msg, SCARD_W_SECURITY_VIOLATION);
		request_log_answered(s, &msg);
	}
	wake_input(s);
}

void sessions_retry_lock_waiters(struct daemon *d)
{
	struct reader *r;
	while ((r = readers_next_woken(&d->readers))) {
		/* In arrival order; whoever parks again goes to the back, once. */
		size_t n = 0;
		for (struct reader_waiter *w = reader_first_waiter(r); w && w != &r->waiters;
		     w = w->next)
			n++;
		struct reader_waiter *w;
		while (n-- > 0 && !r->lock_holder && (w = reader_first_waiter(r))) {
			struct session *s = (struct session *)((char *)w -
							       offsetof(struct session, lock_wait));
			struct wire_msg msg = s->parked;
			unpark_lock(s);
			run_request(s, &msg, NULL, 0);
			wake_input(s);
		}
		reader_unref(r);
	}
}

/* ---- input ---- */

static void consume_input(struct session *s, size_t n)
{
	memmove(s->in, s->in + n, s->in_len - n);
	s->in_len -= n;
}

/*
 * A version can have an older layout of the same number (4:2 before
 * pcsc-lite 1.8.4: 100-byte reader names). Such a client shows it with a
 * request of the older size (its first CONNECT); from then on the
 * connection uses that layout. (Its arrays can only be right from the start
 * on a socket set to names=100.)
 */
static bool adopt_older_layout(struct session *s, const struct wire_header *hdr)
{
	const struct wire_proto *older = wire_proto_adopt_layout(s->params.proto, hdr);
	if (!older)
		return false;
	s->params.proto = older;
	log_info("client %" PRIu64 " (pid %d): protocol %s with %u-byte reader names", s->id,
		 (int)s->pid, older->name, older->reader_name_len);
	return true;
}

/*
 * pcsc-lite's client library writes a request's header and its body with
 * two system calls, and the loop often wakes between them. The body is then
 * a few microseconds away: reading it for a short moment costs less than
 * going back to sleep and being woken again.
 */
#define REST_WAIT_US 40u

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* True once in_len reaches need; false when the rest did not come quickly. */
static bool await_rest(struct session *s, size_t need)
{
	uint64_t start = now_us();
	do {
		ssize_t n = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, MSG_DONTWAIT);
		if (n > 0) {
			s->in_len += (size_t)n;
			if (s->in_len >= need)
				return true;
		} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			return false; /* the read in on_socket sees the hang-up */
		}
	} while (now_us() - start < REST_WAIT_US);
	return false;
}

/* Parses and runs whole requests until one parks or input runs out. */
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
		/* `scard status` asks scardd itself, before any version (status_report.c) */
		if (!s->versioned && hdr.cmd == WIRE_SCARDD_STATUS) {
			consume_input(s, WIRE_HEADER_SIZE);
			status_report_send(s);
			continue;
		}
		int rc = wire_check_request(&s->params, &hdr, &spec);
		if (rc == WIRE_E_BAD_SIZE && adopt_older_layout(s, &hdr))
			rc = wire_check_request(&s->params, &hdr, &spec);
		if (rc == WIRE_E_UNKNOWN_CMD) {
			log_error("client %" PRIu64 " (pid %d): unknown command 0x%08X", s->id,
				  (int)s->pid, hdr.cmd);
			session_fail(s, "unknown command");
			return;
		}
		if (rc != WIRE_OK) {
			const struct wire_cmd_spec *want = wire_cmd_lookup(s->params.proto,
									   hdr.cmd);
			log_error("client %" PRIu64 " (pid %d): %s with size %u, expected %u",
				  s->id, (int)s->pid, wire_cmd_name(hdr.cmd), hdr.size,
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

		s->rest_awaited = false;
		run_request(s, &msg, s->in + WIRE_HEADER_SIZE + body, data_len);
		consume_input(s, need);
		continue;
need_more:
		if (need > MAX_REQUEST || !reserve(&s->in, &s->in_cap, need)) {
			session_fail(s, "request too large");
			return;
		}
		/* once per request, so that a client trickling bytes cannot keep the loop here */
		if (s->rest_awaited || !await_rest(s, need)) {
			s->rest_awaited = true;
			return;
		}
		s->rest_awaited = true;
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
			return; /* parse before reading more */
		}
		if (n == 0) {
			session_fail(s, NULL);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			session_fail(s, NULL);
		return;
	}
}

static void on_socket(struct event_loop *loop, int fd, void *data, int mask)
{
	struct session *s = data;
	(void)loop;
	(void)fd;
	if (mask & EL_HUP)
		session_fail(s, NULL);
	if (!s->closing && (mask & EL_WRITE))
		flush_output(s);
	if (!s->closing && (mask & EL_READ) && s->park == PARK_NONE)
		read_input(s);
	wake_input(s);
}

/* ---- settling, before the loop sleeps ---- */

static void update_mask(struct session *s)
{
	int want = 0;
	if (s->park == PARK_NONE && out_pending(s) < OUT_HIGH_WATER)
		want |= EL_READ;
	if (out_pending(s) > 0)
		want |= EL_WRITE;
	if (want != s->mask && el_mod_fd(s->d->loop, s->fd, want) == 0)
		s->mask = want;
}

static void session_free(struct session *s)
{
	struct daemon *d = s->d;

	session_stop_waiting(s);
	if (s->park == PARK_LOCK)
		unpark_lock(s);
	polkit_gate_forget(s);
	if (s->job) {
		s->job->session = NULL;
		jobs_abandon(&d->jobs, s->job); /* a late answer is dropped */
	}
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
	log_debug("client %" PRIu64 " (pid %d) gone, %zu left", s->id, (int)s->pid, d->n_sessions);
	peer_identity_clear(&s->identity);
	access_state_free(&s->access);
	free(s->in);
	free(s->out);
	free(s);
}

bool sessions_process(struct daemon *d)
{
	bool any = false;
	for (struct session *s = d->dirty; s; s = s->next_dirty) {
		if (!s->process)
			continue;
		s->process = false;
		any = true;
		if (!s->closing)
			process_input(s);
	}
	return any;
}

bool sessions_want_processing(const struct daemon *d)
{
	for (const struct session *s = d->dirty; s; s = s->next_dirty)
		if (s->process)
			return true;
	return false;
}

bool sessions_settle(struct daemon *d)
{
	bool freed = false;
	struct session *s = d->dirty;
	d->dirty = d->dirty_tail = NULL;
	while (s) {
		struct session *next = s->next_dirty;
		s->dirty = false;
		s->next_dirty = NULL;
		if (s->closing) {
			session_free(s);
			freed = true;
		} else {
			update_mask(s);
		}
		s = next;
	}
	return freed;
}

/* ---- lifecycle ---- */

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
	s->identity = (struct peer_identity){ .pid = s->pid, .uid = s->uid, .gid = s->gid };
	struct timespec now;
	clock_gettime(CLOCK_BOOTTIME, &now);
	s->connected_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
	access_connected(s);
	wire_params_init(&s->params);
	/* polkit first (access_pcsc): nothing is read until it has answered */
	enum polkit_gate_result gate = polkit_gate_accept(s);
	if (gate == POLKIT_GATE_REFUSE) {
		close(s->fd);
		peer_identity_clear(&s->identity);
		access_state_free(&s->access);
		free(s);
		return;
	}
	if (gate == POLKIT_GATE_WAIT)
		s->park = PARK_AUTH;
	s->mask = s->park == PARK_NONE ? EL_READ : 0;
	if (el_add_fd(d->loop, s->fd, s->mask, on_socket, s) < 0) {
		log_error("cannot watch client socket: %s", strerror(errno));
		polkit_gate_forget(s);
		close(s->fd);
		peer_identity_clear(&s->identity);
		access_state_free(&s->access);
		free(s);
		return;
	}
	s->next = d->sessions;
	if (d->sessions)
		d->sessions->prev = s;
	d->sessions = s;
	d->n_sessions++;
	log_debug("client %" PRIu64 " connected: pid %d uid %d, %zu clients", s->id, (int)s->pid,
		  (int)s->uid, d->n_sessions);
}

void sessions_free_all(struct daemon *d)
{
	d->dirty = d->dirty_tail = NULL;
	while (d->sessions) {
		d->sessions->closing = true;
		session_free(d->sessions);
	}
}

struct session *session_by_id(const struct daemon *d, uint64_t id)
{
	for (struct session *s = d->sessions; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

struct session *session_by_context(const struct daemon *d, uint32_t ctx)
{
	for (struct session *s = d->sessions; s; s = s->next)
		if (s->has_context && s->context == ctx)
			return s;
	return NULL;
}
