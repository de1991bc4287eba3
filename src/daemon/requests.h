/*
 * The requests a client can make: one handler per command (the table in
 * requests.c), grouped by subject in cmd_context.c (version, contexts,
 * cancel), cmd_states.c (reader-state arrays and status-change waits),
 * cmd_card.c (connect, sharing, transactions, dispositions) and cmd_io.c
 * (transmit, control, status, attributes).
 *
 * A handler answers with session_send_msg and returns OUT_DONE, or says what
 * the session must wait for; the session does the waiting. A job's finish
 * function answers later, on the loop.
 */
#ifndef SCARDD_REQUESTS_H
#define SCARDD_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct job;
struct reader;
struct session;

enum outcome {
	OUT_DONE,      /* answered (or nothing to answer) */
	OUT_JOB,       /* rq->job answers it */
	OUT_WAIT_LOCK, /* retry when rq->lock_reader's transaction lock comes free */
	OUT_AUTH,      /* retry once polkit has answered (polkit_gate.h) */
	OUT_CLOSE,     /* protocol violation: close this client */
};

struct request {
	struct session *s;
	struct wire_msg *msg;
	const uint8_t *data; /* bytes after the struct (transmit, control) */
	size_t data_len;
	/* set by the handler */
	struct job *job;
	struct reader *lock_reader;
	unsigned lock_wait_ms; /* how long to wait for the lock; 0: as long as it takes */
};

enum outcome requests_handle(struct request *rq);

/* The driver never answered: answers the request with SCARD_E_TIMEOUT. */
void requests_timed_out(struct session *s, const struct job *job);

/* Sets the rv field of any reply struct and sends it. */
enum outcome reply_rv(struct session *s, struct wire_msg *msg, long rv);
enum outcome reply(struct session *s, const struct wire_msg *msg);

/* Handlers, by file. */
enum outcome cmd_version(struct request *rq);
enum outcome cmd_establish(struct request *rq);
enum outcome cmd_release(struct request *rq);
enum outcome cmd_cancel(struct request *rq);
enum outcome cmd_readers_state(struct request *rq);
enum outcome cmd_wait(struct request *rq);
enum outcome cmd_stop_waiting(struct request *rq);
enum outcome cmd_reader_events(struct request *rq);
enum outcome cmd_state_size(struct request *rq);
enum outcome cmd_state_array(struct request *rq);
enum outcome cmd_connect(struct request *rq);
enum outcome cmd_reconnect(struct request *rq);
enum outcome cmd_disconnect(struct request *rq);
enum outcome cmd_begin(struct request *rq);
enum outcome cmd_end(struct request *rq);
enum outcome cmd_transmit(struct request *rq);
enum outcome cmd_control(struct request *rq);
enum outcome cmd_status(struct request *rq);
enum outcome cmd_attrib(struct request *rq);

/*
 * cmd_context.c: records in the session's fixed-size reader arrays (0x12,
 * the 4:4/4:5 WAIT answer), guessed from its libpcsclite the first time one
 * is sent (a /proc/PID/maps read many short-lived clients never need).
 */
uint32_t legacy_slots(struct session *s);
/* The same without keeping or logging the guess (debug lines). */
uint32_t legacy_slots_peek(const struct session *s);

/* cmd_card.c: the handle a connect created while its job runs is dropped. */
void cmd_connect_timed_out(struct session *s, const struct job *job);

#endif
