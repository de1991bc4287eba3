/*
 * One thread per device calls its driver; nothing else does. The event loop
 * queues jobs; the worker runs them and posts them back through the
 * daemon's completion queue (an eventfd the loop watches), where job->done
 * runs on the loop's thread. Between jobs the worker watches card presence
 * and posts card events the same way.
 */
#ifndef SCARDD_READER_WORKER_H
#define SCARDD_READER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct daemon;
struct device;
struct session;
struct job;

enum job_kind {
	JOB_OPEN,        /* create the channel, read slot count (posted back once) */
	JOB_CONNECT,     /* power up if needed, negotiate the protocol */
	JOB_RECONNECT,   /* reset or power-cycle per `action`, renegotiate */
	JOB_DISPOSE,     /* leave/reset/unpower/eject after disconnect or end */
	JOB_TRANSMIT,
	JOB_CONTROL,
	JOB_GET_ATTRIB,
	JOB_SET_ATTRIB,
	JOB_CARD_EVENT,  /* produced by the worker: presence changed */
};

typedef void job_done_fn(struct daemon *d, struct job *job);

struct job {
	enum job_kind kind;
	struct job *next;
	struct device *dev;
	unsigned slot;
	job_done_fn *done;
	struct session *session; /* NULL once the session is gone: drop the reply */
	int32_t card;
	struct wire_msg msg;     /* the request being answered */

	/* inputs */
	uint32_t action;         /* IFD power action / SCARD disposition */
	uint32_t preferred;      /* preferred protocols (connect/reconnect) */
	uint32_t protocol;       /* active protocol (transmit) */
	uint32_t code;           /* control code / attribute id */
	uint32_t rx_cap;         /* client's receive buffer size */
	uint8_t *tx;
	size_t tx_len;

	/* outputs */
	long rv;                 /* SCARD_* */
	uint8_t *rx;
	size_t rx_len;
	bool present, powered;   /* card state after the job */
	bool mute;               /* present but its power-up failed */
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	size_t atr_len;
	bool atr_changed;        /* the card was (re)powered */
	uint32_t out_protocol;
	unsigned n_slots;        /* JOB_OPEN */
};

struct job *job_new(enum job_kind kind, struct device *dev, unsigned slot, job_done_fn *done);
void job_free(struct job *job);

/*
 * Starts the device's thread. It opens the channel and posts a JOB_OPEN
 * (done = opened) with the slot count or an error, then serves jobs and
 * posts a JOB_CARD_EVENT (done = card_event) whenever a slot's card comes
 * or goes. poll_ms is the presence poll period.
 */
int worker_start(struct daemon *d, struct device *dev, job_done_fn *opened,
		 job_done_fn *card_event, unsigned poll_ms);
void worker_submit(struct device *dev, struct job *job);
/*
 * Takes a job back if the worker has not started it: returns true and the
 * caller owns (and frees) it. False: it is running or done and will be posted.
 */
bool worker_cancel(struct device *dev, struct job *job);
/*
 * Nobody waits for this job any more (timeout, client gone): if it has not
 * started it never will, unless it is a disposition the card still owes.
 */
void job_abandon(struct job *job);
/* Asks the thread to close the channel and stop; waits up to timeout_ms. */
void worker_stop(struct device *dev, unsigned timeout_ms);

#endif
