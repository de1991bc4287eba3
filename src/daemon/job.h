/*
 * A job: one piece of work on a device's driver (open, a card command, a
 * presence change), with its inputs and results. The loop creates it and
 * hands it to the scheduler (jobs.h); it runs on the loop itself when the
 * device is idle and quick, else on the device's worker thread; its finish
 * function then runs on the loop with the results.
 */
#ifndef SCARDD_JOB_H
#define SCARDD_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct daemon;
struct device;
struct job;
struct session;
struct worker;

enum job_kind {
	JOB_OPEN,      /* the channel was opened (or not): slot count (worker-made) */
	JOB_CONNECT,   /* power up if needed, negotiate the protocol */
	JOB_RECONNECT, /* reset or power-cycle per `action`, renegotiate */
	JOB_DISPOSE,   /* leave/reset/unpower/eject after disconnect or end */
	JOB_TRANSMIT,
	JOB_CONTROL,
	JOB_GET_ATTRIB,
	JOB_SET_ATTRIB,
	JOB_CARD_EVENT, /* a slot's card came or went (worker-made) */
	JOB_CLOSED,     /* the channel is closed and the thread ends: its last job */
};

/* Where the loop last put the job; only the loop writes it. */
enum job_state {
	JOB_NEW,
	JOB_PENDING, /* in the loop's list, to run this pass */
	JOB_QUEUED,  /* given to the worker: queued, running or posted */
	JOB_RUNNING, /* run inline by a thread that lost the loop meanwhile */
	JOB_DONE,    /* finishing */
};

typedef void job_finish_fn(struct daemon *d, struct session *s, struct job *job);

struct job {
	enum job_kind kind;
	/* atomic: the loop reads it (jobs_abandon) on whichever thread runs the loop,
	 * and a hand-off can leave the write to the thread that lost it */
	_Atomic enum job_state state;
	struct job *next; /* in whichever list holds it */
	struct device *dev;
	bool dev_ref; /* holds a reference to dev (loop-made jobs) */
	struct worker *worker;
	unsigned slot;
	job_finish_fn *finish;   /* on the loop; s is NULL when nobody waits any more */
	job_finish_fn *answer;   /* a session's job: the command's own finish (session.c) */
	struct session *session; /* the client waiting for it, or NULL */
	int32_t card;            /* the handle the request named */
	struct wire_msg msg;     /* the request being answered */

	/* inputs */
	uint32_t action;    /* IFD power action */
	uint32_t preferred; /* preferred protocols (connect/reconnect) */
	uint32_t protocol;  /* active protocol (transmit) */
	uint32_t code;      /* control code / attribute id */
	uint32_t rx_cap;    /* client's receive buffer size */
	uint8_t *tx;
	size_t tx_len;

	/* outputs */
	long rv;          /* SCARD_* */
	long driver_rc;   /* JOB_OPEN: the driver's answer to the open (IFD_*) */
	bool unknown_tag; /* get-attrib: the driver does not know the attribute */
	uint8_t *rx;
	size_t rx_len;
	bool present, powered; /* card state after the job */
	bool mute;             /* present but its power-up failed */
	bool unavailable;      /* the device is gone (card event) */
	bool card_lost;        /* the driver found no card during the job */
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	size_t atr_len;
	bool atr_changed; /* the card was (re)powered */
	uint32_t out_protocol;
	unsigned n_slots; /* JOB_OPEN, JOB_CARD_EVENT */
};

struct job *job_new(enum job_kind kind, struct device *dev, struct worker *w, unsigned slot,
		    job_finish_fn *finish);
void job_free(struct job *job);
/* Copies len bytes as the job's input; false when out of memory. */
bool job_set_tx(struct job *job, const uint8_t *data, size_t len);

#endif
