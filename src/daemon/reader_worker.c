#include "reader_worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pcsclite.h>
#include <reader.h>

#include "atr.h"
#include "daemon.h"
#include "driver.h"
#include "log.h"
#include "readers.h"

/* What the worker knows of a slot from its own driver calls. */
struct slot_state {
	bool present;
	bool powered;
	bool mute;               /* present, but the last power-up failed */
	uint32_t protocol;       /* negotiated, 0 = not yet */
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	size_t atr_len;
};

typedef RESPONSECODE (*poll_fn)(DWORD lun, int timeout_ms);
typedef RESPONSECODE (*stop_poll_fn)(DWORD lun);

/* Blocks in the driver's own card-event wait, one per slot, and flags the worker. */
struct event_thread {
	struct worker *w;
	unsigned slot;
	pthread_t thread;
	bool started;
};

struct worker {
	struct daemon *d;
	struct device *dev;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, *tail;
	bool stop;
	bool exited;
	job_done_fn *opened;
	job_done_fn *card_event;
	unsigned poll_ms;
	struct slot_state *slots;
	unsigned n_slots;
	/* Calls go through the library's mutex unless the driver says it is
	 * thread-safe; decided once, by this thread, after the channel opens. */
	bool serialize;

	/* Drivers that report card events themselves (TAG_IFD_POLLING_THREAD_WITH_TIMEOUT). */
	poll_fn wait_event;
	stop_poll_fn stop_wait;
	bool killable;
	struct event_thread *events;
	bool event_driven;       /* every slot has its event thread */
	bool check_presence;     /* an event thread saw something: poll now */
};

struct job *job_new(enum job_kind kind, struct device *dev, unsigned slot, job_done_fn *done)
{
	struct job *job = calloc(1, sizeof(*job));
	if (!job)
		return NULL;
	job->kind = kind;
	job->dev = dev;
	job->slot = slot;
	job->done = done;
	return job;
}

void job_free(struct job *job)
{
	if (!job)
		return;
	free(job->tx);
	free(job->rx);
	free(job);
}

/* ---- driver calls, serialized for drivers that are not thread-safe ---- */

static void drv_enter(struct worker *w)
{
	if (w->serialize)
		pthread_mutex_lock(&w->dev->drv->lock);
}

static void drv_leave(struct worker *w)
{
	if (w->serialize)
		pthread_mutex_unlock(&w->dev->drv->lock);
}

static unsigned long lun_of(const struct worker *w, unsigned slot)
{
	return w->dev->lun_base | slot;
}

static RESPONSECODE get_cap(struct worker *w, unsigned slot, DWORD tag, uint8_t *buf, DWORD *len)
{
	drv_enter(w);
	RESPONSECODE rc = w->dev->drv->ops.get_capabilities(lun_of(w, slot), tag, len, buf);
	drv_leave(w);
	return rc;
}

static RESPONSECODE power(struct worker *w, unsigned slot, DWORD action)
{
	struct slot_state *ss = &w->slots[slot];
	uint8_t atr[WIRE_MAX_ATR_SIZE + 31];
	DWORD len = sizeof(atr);
	drv_enter(w);
	RESPONSECODE rc = w->dev->drv->ops.power_icc(lun_of(w, slot), action, atr, &len);
	drv_leave(w);
	ss->protocol = 0;
	if (action == IFD_POWER_DOWN) {
		ss->powered = false;
		return rc;
	}
	ss->powered = rc == IFD_SUCCESS;
	ss->mute = !ss->powered;
	ss->atr_len = 0;
	if (ss->powered) {
		ss->atr_len = len < WIRE_MAX_ATR_SIZE ? len : WIRE_MAX_ATR_SIZE;
		memcpy(ss->atr, atr, ss->atr_len);
	}
	return rc;
}

static void report_card(struct job *job, const struct slot_state *ss, bool atr_changed)
{
	job->present = ss->present;
	job->powered = ss->powered;
	job->mute = ss->present && ss->mute;
	job->atr_changed = atr_changed;
	job->atr_len = ss->atr_len;
	memcpy(job->atr, ss->atr, ss->atr_len);
}

/* ---- protocol negotiation ---- */

static long negotiate(struct worker *w, unsigned slot, uint32_t preferred, uint32_t *out)
{
	struct slot_state *ss = &w->slots[slot];
	if (ss->protocol) {
		if (!(preferred & ss->protocol) && !(preferred & SCARD_PROTOCOL_RAW))
			return SCARD_E_PROTO_MISMATCH;
		*out = (preferred & ss->protocol) ? ss->protocol : SCARD_PROTOCOL_RAW;
		return SCARD_S_SUCCESS;
	}
	struct atr_info info;
	if (atr_parse(ss->atr, ss->atr_len, &info) < 0) {
		/* An ATR we cannot read: assume the ISO default, T=0. */
		memset(&info, 0, sizeof(info));
		info.protocols = info.default_protocol = SCARD_PROTOCOL_T0;
	}
	uint32_t chosen = 0;
	bool need_pps = false;
	long rv = atr_choose_protocol(&info, preferred, &chosen, &need_pps);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (chosen != SCARD_PROTOCOL_RAW && w->dev->drv->ops.set_protocol_parameters) {
		drv_enter(w);
		RESPONSECODE rc = w->dev->drv->ops.set_protocol_parameters(lun_of(w, slot), chosen,
									     0, 0, 0, 0);
		drv_leave(w);
		if (rc == IFD_NOT_SUPPORTED || rc == IFD_ERROR_NOT_SUPPORTED) {
			/* The reader cannot switch: only the card's default works. */
			if (need_pps) {
				if (!(preferred & info.default_protocol))
					return SCARD_E_PROTO_MISMATCH;
				chosen = info.default_protocol;
			}
		} else if (rc != IFD_SUCCESS) {
			log_error("protocol negotiation failed on %s (driver code %ld)",
				  w->dev->friendly_name, (long)rc);
			return SCARD_E_PROTO_MISMATCH;
		}
	}
	ss->protocol = chosen;
	*out = chosen;
	return SCARD_S_SUCCESS;
}

/* ---- jobs ---- */

static void run_connect(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	bool repowered = false;
	if (!ss->present) {
		job->rv = SCARD_E_NO_SMARTCARD;
		return;
	}
	if (!ss->powered) {
		/* Also a second chance for a card that was mute at insertion, as pcscd gives. */
		repowered = true;
		if (power(w, job->slot, IFD_POWER_UP) != IFD_SUCCESS) {
			job->rv = SCARD_W_UNPOWERED_CARD;
			report_card(job, ss, true);
			return;
		}
	}
	job->rv = negotiate(w, job->slot, job->preferred, &job->out_protocol);
	report_card(job, ss, repowered);
}

static void run_reconnect(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	bool repowered = false;
	if (!ss->present) {
		job->rv = SCARD_E_NO_SMARTCARD;
		return;
	}
	if (job->action == IFD_RESET || job->action == IFD_POWER_DOWN || !ss->powered) {
		if (job->action == IFD_POWER_DOWN)
			power(w, job->slot, IFD_POWER_DOWN);
		DWORD up = job->action == IFD_RESET && ss->powered ? IFD_RESET : IFD_POWER_UP;
		repowered = true;
		if (power(w, job->slot, up) != IFD_SUCCESS) {
			job->rv = SCARD_W_UNRESPONSIVE_CARD;
			report_card(job, ss, true);
			return;
		}
	}
	job->rv = SCARD_S_SUCCESS;
	if (job->preferred)
		job->rv = negotiate(w, job->slot, job->preferred, &job->out_protocol);
	else
		job->out_protocol = ss->protocol;
	report_card(job, ss, repowered);
}

static void run_dispose(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	job->rv = SCARD_S_SUCCESS;
	if (!ss->present) {
		report_card(job, ss, false);
		return;
	}
	RESPONSECODE rc = power(w, job->slot, job->action);
	if (rc != IFD_SUCCESS)
		log_error("%s: power action %lu failed (driver code %ld)", w->dev->friendly_name,
			  (unsigned long)job->action, (long)rc);
	report_card(job, ss, job->action != IFD_POWER_DOWN);
}

static long map_transmit_rc(RESPONSECODE rc)
{
	switch (rc) {
	case IFD_SUCCESS: return SCARD_S_SUCCESS;
	case IFD_NO_SUCH_DEVICE: return SCARD_E_READER_UNAVAILABLE;
	case IFD_ICC_NOT_PRESENT: return SCARD_E_NO_SMARTCARD;
	default: return SCARD_E_NOT_TRANSACTED;
	}
}

static void run_transmit(struct worker *w, struct job *job)
{
	struct slot_state *ss = &w->slots[job->slot];
	if (!ss->present) {
		job->rv = SCARD_W_REMOVED_CARD;
		return;
	}
	job->rx = malloc(WIRE_MAX_BUFFER_SIZE_EXTENDED);
	if (!job->rx) {
		job->rv = SCARD_E_NO_MEMORY;
		return;
	}
	SCARD_IO_HEADER send_pci = {.Protocol = 0, .Length = 0};
	SCARD_IO_HEADER recv_pci = {.Protocol = 0, .Length = 0};
	/* Drivers take T=0 as 0 and T=1 as 1, not the SCARD_PROTOCOL bits. */
	if (job->protocol == SCARD_PROTOCOL_T1)
		send_pci.Protocol = 1;
	else if (job->protocol == SCARD_PROTOCOL_RAW)
		send_pci.Protocol = SCARD_PROTOCOL_RAW;
	DWORD rx_len = WIRE_MAX_BUFFER_SIZE_EXTENDED;
	drv_enter(w);
	RESPONSECODE rc = w->dev->drv->ops.transmit_to_icc(lun_of(w, job->slot), send_pci, job->tx,
							   job->tx_len, job->rx, &rx_len,
							   &recv_pci);
	drv_leave(w);
	job->rv = map_transmit_rc(rc);
	if (job->rv != SCARD_S_SUCCESS)
		return;
	if (rx_len > WIRE_MAX_BUFFER_SIZE_EXTENDED)
		rx_len = WIRE_MAX_BUFFER_SIZE_EXTENDED;
	job->rx_len = rx_len;
	if (rx_len > job->rx_cap)
		job->rv = SCARD_E_INSUFFICIENT_BUFFER;
}

static void run_control(struct worker *w, struct job *job)
{
	size_t cap = job->rx_cap < WIRE_MAX_BUFFER_SIZE_EXTENDED ? job->rx_cap
								  : WIRE_MAX_BUFFER_SIZE_EXTENDED;
	job->rx = malloc(cap ? cap : 1);
	if (!job->rx) {
		job->rv = SCARD_E_NO_MEMORY;
		return;
	}
	const struct ifd_ops *ops = &w->dev->drv->ops;
	DWORD returned = 0;
	RESPONSECODE rc;
	drv_enter(w);
	if (ops->control_v3) {
		rc = ops->control_v3(lun_of(w, job->slot), job->code, job->tx, job->tx_len, job->rx,
				     cap, &returned);
	} else {
		returned = cap;
		rc = ops->control_v2(lun_of(w, job->slot), job->tx, job->tx_len, job->rx, &returned);
	}
	drv_leave(w);
	switch (rc) {
	case IFD_SUCCESS:
		job->rv = returned > cap ? SCARD_E_INSUFFICIENT_BUFFER : SCARD_S_SUCCESS;
		job->rx_len = returned > cap ? 0 : returned;
		break;
	case IFD_NOT_SUPPORTED:
	case IFD_ERROR_NOT_SUPPORTED: job->rv = SCARD_E_UNSUPPORTED_FEATURE; break;
	case IFD_ERROR_INSUFFICIENT_BUFFER: job->rv = SCARD_E_INSUFFICIENT_BUFFER; break;
	default: job->rv = SCARD_E_NOT_TRANSACTED; break;
	}
}

/* Attributes the driver does not know but the daemon can answer itself. */
static long own_attribute(struct worker *w, struct job *job)
{
	const struct slot_state *ss = &w->slots[job->slot];
	const void *value;
	size_t len;
	switch (job->code) {
	case SCARD_ATTR_DEVICE_FRIENDLY_NAME:
	case SCARD_ATTR_DEVICE_SYSTEM_NAME:
		value = w->dev->slots[job->slot]->name;
		len = strlen(value) + 1;
		break;
	case SCARD_ATTR_ATR_STRING:
		if (!ss->powered)
			return SCARD_E_UNSUPPORTED_FEATURE;
		value = ss->atr;
		len = ss->atr_len;
		break;
	default:
		return SCARD_E_UNSUPPORTED_FEATURE;
	}
	if (len > job->rx_cap)
		return SCARD_E_INSUFFICIENT_BUFFER;
	memcpy(job->rx, value, len);
	job->rx_len = len;
	return SCARD_S_SUCCESS;
}

static void run_get_attrib(struct worker *w, struct job *job)
{
	job->rx = calloc(1, WIRE_MAX_BUFFER_SIZE);
	if (!job->rx) {
		job->rv = SCARD_E_NO_MEMORY;
		return;
	}
	if (job->rx_cap > WIRE_MAX_BUFFER_SIZE)
		job->rx_cap = WIRE_MAX_BUFFER_SIZE;
	DWORD len = job->rx_cap;
	RESPONSECODE rc = get_cap(w, job->slot, job->code, job->rx, &len);
	switch (rc) {
	case IFD_SUCCESS:
		job->rv = len > job->rx_cap ? SCARD_E_INSUFFICIENT_BUFFER : SCARD_S_SUCCESS;
		job->rx_len = len > job->rx_cap ? 0 : len;
		break;
	case IFD_ERROR_TAG: job->rv = own_attribute(w, job); break;
	case IFD_ERROR_INSUFFICIENT_BUFFER: job->rv = SCARD_E_INSUFFICIENT_BUFFER; break;
	default: job->rv = SCARD_E_NOT_TRANSACTED; break;
	}
}

static void run_set_attrib(struct worker *w, struct job *job)
{
	drv_enter(w);
	RESPONSECODE rc = w->dev->drv->ops.set_capabilities(lun_of(w, job->slot), job->code,
							    job->tx_len, job->tx);
	drv_leave(w);
	switch (rc) {
	case IFD_SUCCESS: job->rv = SCARD_S_SUCCESS; break;
	case IFD_ERROR_TAG: job->rv = SCARD_E_UNSUPPORTED_FEATURE; break;
	default: job->rv = SCARD_E_NOT_TRANSACTED; break;
	}
}

static void run_job(struct worker *w, struct job *job)
{
	if (job->slot >= w->n_slots) {
		job->rv = SCARD_E_READER_UNAVAILABLE;
		return;
	}
	switch (job->kind) {
	case JOB_CONNECT: run_connect(w, job); break;
	case JOB_RECONNECT: run_reconnect(w, job); break;
	case JOB_DISPOSE: run_dispose(w, job); break;
	case JOB_TRANSMIT: run_transmit(w, job); break;
	case JOB_CONTROL: run_control(w, job); break;
	case JOB_GET_ATTRIB: run_get_attrib(w, job); break;
	case JOB_SET_ATTRIB: run_set_attrib(w, job); break;
	default: job->rv = SCARD_F_INTERNAL_ERROR; break;
	}
}

/* ---- presence ---- */

static void poll_slot(struct worker *w, unsigned slot)
{
	struct slot_state *ss = &w->slots[slot];
	drv_enter(w);
	RESPONSECODE rc = w->dev->drv->ops.icc_presence(lun_of(w, slot));
	drv_leave(w);
	bool present;
	if (rc == IFD_SUCCESS || rc == IFD_ICC_PRESENT)
		present = true;
	else if (rc == IFD_ICC_NOT_PRESENT || rc == IFD_NO_SUCH_DEVICE)
		present = false;
	else
		return; /* the reader could not tell: keep what we knew */
	if (present == ss->present)
		return;

	ss->present = present;
	ss->powered = false;
	ss->mute = false;
	ss->protocol = 0;
	ss->atr_len = 0;
	if (present && power(w, slot, IFD_POWER_UP) != IFD_SUCCESS)
		log_error("%s: card in slot %u does not answer to power-up", w->dev->friendly_name,
			  slot);
	struct job *ev = job_new(JOB_CARD_EVENT, w->dev, slot, w->card_event);
	if (!ev)
		return;
	report_card(ev, ss, true);
	daemon_post(w->d, ev);
}

/* ---- the thread ---- */

/* Function pointers travel through GetCapabilities as raw bytes. */
static void *get_fn_cap(struct worker *w, DWORD tag)
{
	void *fn = NULL;
	uint8_t buf[sizeof(void *)];
	DWORD len = sizeof(buf);
	if (get_cap(w, 0, tag, buf, &len) == IFD_SUCCESS && len == sizeof(buf))
		memcpy(&fn, buf, sizeof(fn));
	return fn;
}

static void find_event_functions(struct worker *w)
{
	void *fn = get_fn_cap(w, TAG_IFD_POLLING_THREAD_WITH_TIMEOUT);
	memcpy(&w->wait_event, &fn, sizeof(fn));
	fn = get_fn_cap(w, TAG_IFD_STOP_POLLING_THREAD);
	memcpy(&w->stop_wait, &fn, sizeof(fn));
	uint8_t killable = 0;
	DWORD len = 1;
	if (get_cap(w, 0, TAG_IFD_POLLING_THREAD_KILLABLE, &killable, &len) == IFD_SUCCESS)
		w->killable = killable != 0;
}

static RESPONSECODE create_channel(struct worker *w, unsigned slot)
{
	struct device *dev = w->dev;
	const struct ifd_ops *ops = &dev->drv->ops;
	RESPONSECODE rc;
	drv_enter(w);
	if (dev->device_name && ops->create_channel_by_name)
		rc = ops->create_channel_by_name(lun_of(w, slot), dev->device_name);
	else
		rc = ops->create_channel(lun_of(w, slot), dev->channel_id);
	drv_leave(w);
	return rc;
}

static bool open_channel(struct worker *w)
{
	struct device *dev = w->dev;
	RESPONSECODE rc = create_channel(w, 0);
	if (rc != IFD_SUCCESS) {
		log_error("%s: the driver could not open the reader (code %ld)",
			  dev->friendly_name, (long)rc);
		return false;
	}

	uint8_t value[8] = {0};
	DWORD len = 1;
	w->n_slots = 1;
	if (get_cap(w, 0, TAG_IFD_SLOTS_NUMBER, value, &len) == IFD_SUCCESS && len >= 1 &&
	    value[0] >= 1)
		w->n_slots = value[0];
	len = 1;
	value[0] = 0;
	if (get_cap(w, 0, TAG_IFD_THREAD_SAFE, value, &len) == IFD_SUCCESS && len >= 1 &&
	    value[0])
		w->serialize = false;
	w->slots = calloc(w->n_slots, sizeof(*w->slots));
	if (!w->slots)
		return false;
	/* Every further slot gets its own channel on its own LUN, as under pcscd
	 * (vpcd, for one, opens slot N's port only then). */
	for (unsigned slot = 1; slot < w->n_slots; slot++) {
		rc = create_channel(w, slot);
		if (rc != IFD_SUCCESS)
			log_error("%s: the driver could not open slot %u (code %ld)",
				  dev->friendly_name, slot, (long)rc);
	}
	find_event_functions(w);
	return true;
}

static void flag_presence_check(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->check_presence = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static bool stopping(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	bool stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

static void *event_thread_main(void *arg)
{
	struct event_thread *et = arg;
	struct worker *w = et->w;
	/* Without a stop function the wait must end by itself for shutdown. */
	int timeout_ms = w->stop_wait ? 600000 : 1000;
	while (!stopping(w)) {
		RESPONSECODE rc = w->wait_event(lun_of(w, et->slot), timeout_ms);
		if (stopping(w))
			break;
		if (rc == IFD_SUCCESS) {
			flag_presence_check(w);
		} else {
			/* The driver cannot wait after all: fall back to the poll period. */
			struct timespec ts = {.tv_sec = w->poll_ms / 1000,
					      .tv_nsec = (long)(w->poll_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
			flag_presence_check(w);
		}
	}
	return NULL;
}

static void start_event_threads(struct worker *w)
{
	if (!w->wait_event)
		return;
	w->events = calloc(w->n_slots, sizeof(*w->events));
	if (!w->events)
		return;
	w->event_driven = true;
	for (unsigned i = 0; i < w->n_slots; i++) {
		w->events[i].w = w;
		w->events[i].slot = i;
		w->events[i].started =
			pthread_create(&w->events[i].thread, NULL, event_thread_main, &w->events[i]) == 0;
		if (!w->events[i].started) {
			log_error("%s: cannot start card-event thread; polling instead",
				  w->dev->friendly_name);
			w->event_driven = false;
		}
	}
}

static void stop_event_threads(struct worker *w)
{
	if (!w->events)
		return;
	for (unsigned i = 0; i < w->n_slots; i++) {
		struct event_thread *et = &w->events[i];
		if (!et->started)
			continue;
		if (w->stop_wait)
			w->stop_wait(lun_of(w, i));
		else if (w->killable)
			pthread_cancel(et->thread);
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 3;
		if (pthread_timedjoin_np(et->thread, NULL, &deadline) != 0) {
			log_error("%s: card-event wait did not return; abandoning it",
				  w->dev->friendly_name);
			pthread_detach(et->thread);
		}
	}
	free(w->events);
	w->events = NULL;
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool passed(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > deadline->tv_sec ||
	       (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct job *opened = job_new(JOB_OPEN, w->dev, 0, w->opened);
	bool ok = open_channel(w);
	if (opened) {
		opened->rv = ok ? SCARD_S_SUCCESS : SCARD_E_READER_UNAVAILABLE;
		opened->n_slots = ok ? w->n_slots : 0;
		daemon_post(w->d, opened);
	}
	if (!ok)
		goto out;

	/* Event-driven drivers get one check now, then only when they signal. */
	w->check_presence = true;
	start_event_threads(w);
	struct timespec next_poll;
	deadline_after(&next_poll, 0);
	for (;;) {
		bool polling = !w->event_driven;
		pthread_mutex_lock(&w->lock);
		while (!w->stop && !w->head && !w->check_presence) {
			int rc = polling ? pthread_cond_timedwait(&w->cond, &w->lock, &next_poll)
					 : pthread_cond_wait(&w->cond, &w->lock);
			if (rc == ETIMEDOUT)
				break;
		}
		if (w->stop) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		struct job *job = w->head;
		if (job) {
			w->head = job->next;
			if (!w->head)
				w->tail = NULL;
			job->next = NULL;
		}
		bool check = w->check_presence || (polling && passed(&next_poll));
		w->check_presence = false;
		pthread_mutex_unlock(&w->lock);

		if (job) {
			run_job(w, job);
			daemon_post(w->d, job);
		}
		if (check) {
			for (unsigned i = 0; i < w->n_slots; i++)
				poll_slot(w, i);
			deadline_after(&next_poll, w->poll_ms);
		}
	}
	stop_event_threads(w);
	drv_enter(w);
	for (unsigned slot = w->n_slots; slot-- > 0;)
		w->dev->drv->ops.close_channel(lun_of(w, slot));
	drv_leave(w);
out:
	pthread_mutex_lock(&w->lock);
	w->exited = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int worker_start(struct daemon *d, struct device *dev, job_done_fn *opened,
		 job_done_fn *card_event, unsigned poll_ms)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -1;
	w->d = d;
	w->dev = dev;
	w->opened = opened;
	w->card_event = card_event;
	w->poll_ms = poll_ms;
	w->serialize = true;
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&w->lock, NULL);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return -1;
	}
	dev->worker = w;
	return 0;
}

void worker_submit(struct device *dev, struct job *job)
{
	struct worker *w = dev->worker;
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = job;
	else
		w->head = job;
	w->tail = job;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

bool worker_cancel(struct device *dev, struct job *job)
{
	struct worker *w = dev->worker;
	if (!w)
		return false;
	bool found = false;
	pthread_mutex_lock(&w->lock);
	struct job *prev = NULL;
	for (struct job *j = w->head; j; prev = j, j = j->next) {
		if (j != job)
			continue;
		if (prev)
			prev->next = j->next;
		else
			w->head = j->next;
		if (w->tail == j)
			w->tail = prev;
		found = true;
		break;
	}
	pthread_mutex_unlock(&w->lock);
	return found;
}

void job_abandon(struct job *job)
{
	job->session = NULL;
	if (job->kind != JOB_DISPOSE && worker_cancel(job->dev, job))
		job_free(job);
}

void worker_stop(struct device *dev, unsigned timeout_ms)
{
	struct worker *w = dev->worker;
	if (!w)
		return;
	struct timespec deadline;
	deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	while (!w->exited)
		if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT)
			break;
	bool exited = w->exited;
	pthread_mutex_unlock(&w->lock);
	if (!exited) {
		/* Stuck in its driver: leave it be rather than hang the shutdown. */
		log_error("%s: driver did not return; abandoning its thread", dev->friendly_name);
		pthread_detach(w->thread);
		return;
	}
	dev->worker = NULL;
	pthread_join(w->thread, NULL);
	for (struct job *j = w->head, *next; j; j = next) {
		next = j->next;
		job_free(j);
	}
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->slots);
	free(w);
}
