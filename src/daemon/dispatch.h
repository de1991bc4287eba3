/*
 * Turns one decoded request into its effect and its reply. The context and
 * state commands live in dispatch.c, the card-handle commands in
 * card_commands.c.
 */
#ifndef SCARDD_DISPATCH_H
#define SCARDD_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct session;

enum dispatch_result {
	DISPATCH_DONE,    /* answered (or nothing to answer) */
	DISPATCH_PARKED,  /* the session waits for a worker or a lock */
	DISPATCH_CLOSE,   /* protocol violation: close this client */
};

enum dispatch_result dispatch_request(struct session *s, struct wire_msg *msg,
				      const uint8_t *data, size_t data_len);

/* Card-handle commands (card_commands.c). */
enum dispatch_result cmd_connect(struct session *s, struct wire_msg *msg);
enum dispatch_result cmd_reconnect(struct session *s, struct wire_msg *msg);
enum dispatch_result cmd_disconnect(struct session *s, struct wire_msg *msg);
enum dispatch_result cmd_begin(struct session *s, struct wire_msg *msg);
enum dispatch_result cmd_end(struct session *s, struct wire_msg *msg);
enum dispatch_result cmd_transmit(struct session *s, struct wire_msg *msg, const uint8_t *data,
				  size_t len);
enum dispatch_result cmd_control(struct session *s, struct wire_msg *msg, const uint8_t *data,
				 size_t len);
enum dispatch_result cmd_status(struct session *s, struct wire_msg *msg);
enum dispatch_result cmd_getset_attrib(struct session *s, struct wire_msg *msg);

/* Re-runs a request parked on a transaction lock (BEGIN or CONNECT). */
enum dispatch_result dispatch_retry_parked(struct session *s);

/* Releases every handle of a session as pcsc-lite does on release/death. */
void session_release_handles(struct session *s);

#endif
