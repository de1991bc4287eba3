/*
 * One Unix-socket connection to the daemon: connect, framed send, exact
 * reads. Every failure closes the socket and reports CLIENT_CONN_LOST, so a
 * dead or restarted daemon gives an error instead of a hang or a SIGPIPE.
 */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "config.h"

/* The largest fixed message: a header and the largest struct. */
#define REQUEST_MAX (WIRE_HEADER_SIZE + WIRE_MAX_STRUCT_SIZE)

static enum wire_byte_order host_order(void)
{
	const uint16_t probe = 1;
	uint8_t first;

	memcpy(&first, &probe, 1);
	return first == 1 ? WIRE_LITTLE_ENDIAN : WIRE_BIG_ENDIAN;
}

void conn_init(struct client_conn *c)
{
	c->fd = -1;
	c->ahead_off = c->ahead_len = 0;
	wire_params_init(&c->params);
	/* pcsc-lite's protocol is a dump of native structs: speak our own order. */
	c->params.order = host_order();
	c->legacy_slots = WIRE_LEGACY_READER_SLOTS;
}

void conn_default_path(char out[CLIENT_PATH_MAX])
{
	const char *env = secure_getenv("PCSCLITE_CSOCK_NAME");
	const char *path = env && env[0] != '\0' ? env : SCARDD_DEFAULT_SOCKET;

	/* Longer names are cut to what sun_path can hold, as pcsc-lite does. */
	snprintf(out, CLIENT_PATH_MAX, "%s", path);
}

LONG conn_open(struct client_conn *c, const char *path)
{
	struct sockaddr_un addr;
	size_t len = strlen(path);

	conn_init(c);
	if (len == 0 || len >= sizeof(addr.sun_path))
		return SCARD_E_NO_SERVICE;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, path, len);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return SCARD_E_NO_SERVICE;
	if (connect(fd, (struct sockaddr *)&addr,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1)) < 0) {
		close(fd);
		return SCARD_E_NO_SERVICE;
	}
	c->fd = fd;
	return SCARD_S_SUCCESS;
}

void conn_close(struct client_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->ahead_off = c->ahead_len = 0;
}

static LONG lost(struct client_conn *c)
{
	conn_close(c);
	return CLIENT_CONN_LOST;
}

/* Sends every byte of iov[]; MSG_NOSIGNAL turns a closed peer into EPIPE. */
static LONG send_all(struct client_conn *c, struct iovec *iov, int n)
{
	struct msghdr mh;

	memset(&mh, 0, sizeof(mh));
	while (n > 0) {
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)n;
		ssize_t sent = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (sent < 0) {
			if (errno == EINTR)
				continue;
			return lost(c);
		}
		while (n > 0 && (size_t)sent >= iov->iov_len) {
			sent -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + sent;
			iov->iov_len -= (size_t)sent;
		}
	}
	return SCARD_S_SUCCESS;
}

LONG conn_send(struct client_conn *c, const struct wire_msg *msg, const void *data, size_t len)
{
	if (c->fd < 0)
		return CLIENT_CONN_LOST;
	uint8_t req[REQUEST_MAX];
	size_t n = wire_encode_request(&c->params, msg, req, sizeof(req));
	if (n == 0)
		return SCARD_F_INTERNAL_ERROR;
	struct iovec iov[2];
	iov[0].iov_base = req;
	iov[0].iov_len = n;
	iov[1].iov_base = (void *)(uintptr_t)data;
	iov[1].iov_len = len;
	return send_all(c, iov, len > 0 ? 2 : 1);
}

LONG conn_send_together(struct client_conn *c, const struct wire_msg *msgs, size_t n)
{
	if (c->fd < 0)
		return CLIENT_CONN_LOST;
	if (n > CONN_TOGETHER_MAX)
		return SCARD_F_INTERNAL_ERROR;
	uint8_t req[CONN_TOGETHER_MAX * REQUEST_MAX];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = wire_encode_request(&c->params, &msgs[i], req + len, REQUEST_MAX);
		if (k == 0)
			return SCARD_F_INTERNAL_ERROR;
		len += k;
	}
	struct iovec iov = { .iov_base = req, .iov_len = len };
	return send_all(c, &iov, 1);
}

/*
 * Reads exactly len bytes. Small reads go through the read-ahead buffer, so
 * that a reply struct and the data after it (sent together by the daemon)
 * cost one system call; large ones go straight to the caller's buffer.
 */
LONG conn_recv_raw(struct client_conn *c, void *buf, size_t len)
{
	uint8_t *p = buf;

	if (c->fd < 0)
		return CLIENT_CONN_LOST;
	while (len > 0) {
		size_t have = c->ahead_len - c->ahead_off;
		ssize_t got;

		if (have > 0) {
			size_t n = have < len ? have : len;

			memcpy(p, c->ahead + c->ahead_off, n);
			c->ahead_off += n;
			p += n;
			len -= n;
			continue;
		}
		/*
		 * Wait in poll, not in a blocking recv: a recv asleep on the
		 * socket is also woken when the daemon reads our request (the
		 * send space coming back wakes the same queue) and sleeps again,
		 * a second wake-up per call. poll for POLLIN wakes for the answer.
		 */
		LONG ready = conn_wait_readable(c, -1);
		if (ready == 0)
			continue; /* interrupted */
		if (ready != 1)
			return ready;
		if (len >= sizeof(c->ahead)) {
			got = recv(c->fd, p, len, MSG_DONTWAIT);
		} else {
			got = recv(c->fd, c->ahead, sizeof(c->ahead), MSG_DONTWAIT);
			if (got > 0) {
				c->ahead_off = 0;
				c->ahead_len = (size_t)got;
				continue;
			}
		}
		if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (got <= 0)
			return lost(c); /* EOF: the daemon closed or died */
		p += got;
		len -= (size_t)got;
	}
	return SCARD_S_SUCCESS;
}

size_t conn_pending(struct client_conn *c)
{
	int n = 0;
	size_t have = c->ahead_len - c->ahead_off;

	if (c->fd < 0 || ioctl(c->fd, FIONREAD, &n) < 0 || n < 0)
		return have;
	return have + (size_t)n;
}

LONG conn_discard(struct client_conn *c, size_t len)
{
	uint8_t sink[1024];

	while (len > 0) {
		size_t n = len < sizeof(sink) ? len : sizeof(sink);
		LONG rv = conn_recv_raw(c, sink, n);

		if (rv != SCARD_S_SUCCESS)
			return rv;
		len -= n;
	}
	return SCARD_S_SUCCESS;
}

LONG conn_recv_reply(struct client_conn *c, struct wire_msg *msg)
{
	const struct wire_cmd_spec *spec = wire_cmd_lookup(c->params.proto, msg->cmd);
	uint8_t buf[REQUEST_MAX];

	if (!spec || spec->reply_size == 0 || spec->reply_size > sizeof(buf))
		return SCARD_F_INTERNAL_ERROR;
	LONG rv = conn_recv_raw(c, buf, spec->reply_size);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	uint32_t cmd = msg->cmd;
	/* A reply the codec refuses means we are out of step: start afresh. */
	if (wire_decode_reply(&c->params, cmd, buf, spec->reply_size, msg) != WIRE_OK)
		return lost(c);
	return SCARD_S_SUCCESS;
}

LONG conn_call(struct client_conn *c, struct wire_msg *msg)
{
	LONG rv = conn_send(c, msg, NULL, 0);

	if (rv != SCARD_S_SUCCESS)
		return rv;
	return conn_recv_reply(c, msg);
}

LONG conn_wait_readable(struct client_conn *c, int timeout_ms)
{
	if (c->fd < 0)
		return CLIENT_CONN_LOST;
	if (c->ahead_len > c->ahead_off)
		return 1; /* already read ahead */
	struct pollfd pfd;
	pfd.fd = c->fd;
	pfd.events = POLLIN;
	int n = poll(&pfd, 1, timeout_ms);
	if (n < 0 && errno == EINTR)
		return 0; /* the caller re-checks its deadline and waits again */
	if (n < 0)
		return lost(c);
	if (n == 0)
		return 0;
	/* POLLHUP with data still queued: let the read drain it first. */
	if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
		return 1;
	return lost(c);
}
