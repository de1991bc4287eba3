/*
 * Drives the real daemon (sessions, dispatch, handles, transactions, status
 * waiters, worker jobs) with arbitrary byte streams from three clients at
 * once, against a stub driver with two slots (a card in slot 0).
 *
 * Input: a sequence of chunks [client index][length][bytes...]; after each
 * chunk the loop runs until it goes quiet (settle) and the clients read
 * what they were sent. At the end every client hangs up and the daemon must
 * drop all their sessions without leaking. Context and card ids count from 1
 * in every input (seeds: tests/fuzz/make_session_seeds.py, make_traffic_seeds).
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ifdhandler.h>
#include <reader.h>

#include "daemon.h"
#include "driver.h"
#include "event_loop.h"
#include "handles.h"
#include "job.h"
#include "listener.h"
#include "log.h"
#include "session.h"

#define CLIENTS 3

static const UCHAR stub_atr[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };

static RESPONSECODE stub_create(DWORD lun, DWORD channel)
{
	(void)lun;
	(void)channel;
	return IFD_SUCCESS;
}

static RESPONSECODE stub_close(DWORD lun)
{
	(void)lun;
	return IFD_SUCCESS;
}

static RESPONSECODE stub_get_cap(DWORD lun, DWORD tag, PDWORD len, PUCHAR value)
{
	(void)lun;
	if (tag == TAG_IFD_SLOTS_NUMBER && *len >= 1) {
		value[0] = 2;
		*len = 1;
		return IFD_SUCCESS;
	}
	if (tag == SCARD_ATTR_VENDOR_NAME && *len >= 4) {
		memcpy(value, "stub", 4);
		*len = 4;
		return IFD_SUCCESS;
	}
	return IFD_ERROR_TAG;
}

static RESPONSECODE stub_set_cap(DWORD lun, DWORD tag, DWORD len, PUCHAR value)
{
	(void)lun;
	(void)len;
	(void)value;
	return tag == 1 ? IFD_SUCCESS : IFD_ERROR_TAG;
}

static RESPONSECODE stub_set_protocol(DWORD lun, DWORD protocol, UCHAR flags, UCHAR p1, UCHAR p2,
				      UCHAR p3)
{
	(void)lun;
	(void)flags;
	(void)p1;
	(void)p2;
	(void)p3;
	return protocol == SCARD_PROTOCOL_T1 || protocol == SCARD_PROTOCOL_T0
		       ? IFD_SUCCESS
		       : IFD_PROTOCOL_NOT_SUPPORTED;
}

static RESPONSECODE stub_power(DWORD lun, DWORD action, PUCHAR atr, PDWORD atr_len)
{
	if ((lun & 0xFFFF) != 0)
		return IFD_ICC_NOT_PRESENT;
	if (action == IFD_POWER_DOWN)
		return IFD_SUCCESS;
	if (*atr_len < sizeof(stub_atr))
		return IFD_COMMUNICATION_ERROR;
	memcpy(atr, stub_atr, sizeof(stub_atr));
	*atr_len = sizeof(stub_atr);
	return IFD_SUCCESS;
}

static RESPONSECODE stub_transmit(DWORD lun, SCARD_IO_HEADER send_pci, PUCHAR tx, DWORD tx_len,
				  PUCHAR rx, PDWORD rx_len, PSCARD_IO_HEADER recv_pci)
{
	(void)lun;
	(void)send_pci;
	(void)recv_pci;
	if (*rx_len < tx_len + 2)
		return IFD_COMMUNICATION_ERROR;
	memcpy(rx, tx, tx_len);
	rx[tx_len] = 0x90;
	rx[tx_len + 1] = 0x00;
	*rx_len = tx_len + 2;
	return IFD_SUCCESS;
}

static RESPONSECODE stub_presence(DWORD lun)
{
	return (lun & 0xFFFF) == 0 ? IFD_ICC_PRESENT : IFD_ICC_NOT_PRESENT;
}

static RESPONSECODE stub_control(DWORD lun, DWORD code, PUCHAR tx, DWORD tx_len, PUCHAR rx,
				 DWORD rx_len, PDWORD returned)
{
	(void)lun;
	if (code != 0x42000001)
		return IFD_ERROR_NOT_SUPPORTED;
	if (rx_len < tx_len)
		return IFD_ERROR_INSUFFICIENT_BUFFER;
	memcpy(rx, tx, tx_len);
	*returned = tx_len;
	return IFD_SUCCESS;
}

static struct options opts;
static struct daemon *d;

/* A session waits for a job its device's worker thread runs. */
static bool parked_on_worker(void)
{
	for (struct session *s = d->sessions; s; s = s->next)
		if (s->park == PARK_JOB && s->job && s->job->state == JOB_QUEUED)
			return true;
	return false;
}

/*
 * Runs loop passes until the daemon has done all it can with what the
 * clients sent: each pass takes the events ready (the bytes just sent, a
 * worker's answer) and ends with the before-sleep hook, which runs the
 * requests; another pass follows while the hook says work is left. Waits (on
 * the completion eventfd) only while a session is parked on a job handed to
 * a worker.
 */
static void settle(void)
{
	for (;;) {
		int rc = el_run_pass(d->loop);
		if (rc < 0)
			abort();
		if (rc > 0)
			continue;
		if (!parked_on_worker())
			return;
		struct pollfd pfd = { .fd = d->jobs.done.efd, .events = POLLIN };
		poll(&pfd, 1, 1000); /* the job's 5 s timer ends a driver that never answers */
	}
}

static void setup(void)
{
	log_init("fuzz", LOG_LEVEL_CRITICAL, true);
	opts = (struct options){ .n_sockets = 2,
				 .config_dir = "/nonexistent",
				 .drivers_dir = "/nonexistent",
				 .level = LOG_LEVEL_CRITICAL,
				 .foreground = true,
				 .poll_ms = 50,
				 .max_handles = 4,
				 .driver_timeout_s = 5 };
	/* clients alternate between a default socket and a 48-record one */
	char err[128];
	if (!socket_spec_parse("/nonexistent/a", &opts.sockets[0], err, sizeof(err)) ||
	    !socket_spec_parse("/nonexistent/b:readers=48,names=100,prefer=Stub*", &opts.sockets[1],
			       err, sizeof(err)))
		abort();
	d = daemon_new(&opts, false);
	if (!d)
		abort();
	for (size_t i = 0; i < opts.n_sockets; i++)
		d->sockets[i] = (struct served_socket){ d, &opts.sockets[i], NULL };
	struct driver *drv = calloc(1, sizeof(*drv));
	drv->path = strdup("stub");
	drv->api_version = 3;
	drv->refs = 1;
	pthread_mutex_init(&drv->lock, NULL);
	drv->ops = (struct ifd_ops){
		.create_channel = stub_create,
		.close_channel = stub_close,
		.get_capabilities = stub_get_cap,
		.set_capabilities = stub_set_cap,
		.set_protocol_parameters = stub_set_protocol,
		.power_icc = stub_power,
		.transmit_to_icc = stub_transmit,
		.icc_presence = stub_presence,
		.control_v3 = stub_control,
	};
	if (devices_add(&d->devices, drv, "Stub Reader", NULL, 0) < 0)
		abort();
	daemon_wait_devices(d, 5000);
	/* the first presence poll inserts the card */
	struct reader *r = d->readers.slots[0];
	for (int i = 0; i < 5000 && !(r->state & SCARD_PRESENT); i++) {
		struct pollfd pfd = { .fd = d->jobs.done.efd, .events = POLLIN };
		poll(&pfd, 1, 1);
		settle();
	}
	if (!(r->state & SCARD_PRESENT))
		abort();
}

/* A session has replies its client's full socket does not take. */
static bool output_blocked(void)
{
	for (struct session *s = d->sessions; s; s = s->next)
		if (s->out_len > s->out_off)
			return true;
	return false;
}

/* The clients read what they were sent; true if there was anything. */
static bool drain(const int *peer_fd)
{
	static uint8_t buf[1 << 16];
	struct pollfd pfd[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) /* (poll skips the unconnected, fd -1) */
		pfd[i] = (struct pollfd){ .fd = peer_fd[i], .events = POLLIN };
	bool any = false;
	if (poll(pfd, CLIENTS, 0) <= 0)
		return false;
	for (int i = 0; i < CLIENTS; i++)
		if ((pfd[i].revents & POLLIN) && read(peer_fd[i], buf, sizeof(buf)) > 0)
			any = true; /* (a closed connection reads 0 for ever) */
	return any;
}

/*
 * Settles; the clients read only when a reply is stuck behind a full socket
 * (system calls are most of what an input costs, and a client that reads
 * late is one the daemon must handle anyway).
 */
static void settle_and_read(const int *peer_fd)
{
	settle();
	while (output_blocked() && drain(peer_fd))
		settle();
}

/* A new session for client i (alternating between the two sockets); its peer end. */
static int connect_client(int i)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	struct peer peer = { .fd = sv[0], .pid = 0, .uid = 0, .gid = 0 };
	session_accept(&d->sockets[i % 2], &peer);
	return sv[1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!d)
		setup();
	/* Ids start again at 1 (the fuzz build hands out 1..64 in turn): an input
	 * names the same contexts and cards whatever ran before it. */
	while (handles_random_id() != 64)
		;

	int peer_fd[CLIENTS] = { -1, -1, -1 }; /* connected at their first chunk */
	size_t pos = 0;
	while (pos + 2 <= size) {
		int target = data[pos] % CLIENTS;
		size_t len = data[pos + 1];
		pos += 2;
		if (len > size - pos)
			len = size - pos;
		if (peer_fd[target] < 0)
			peer_fd[target] = connect_client(target);
		if (send(peer_fd[target], data + pos, len, MSG_NOSIGNAL) < 0) {
			/* the daemon closed it, or its buffer is full: both are fine */
		}
		pos += len;
		settle_and_read(peer_fd);
	}

	for (int i = 0; i < CLIENTS; i++)
		if (peer_fd[i] >= 0)
			close(peer_fd[i]);
	settle();
	if (d->n_sessions != 0)
		abort(); /* a session outlived its client */
	return 0;
}
