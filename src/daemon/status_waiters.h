/*
 * Clients registered for status-change signals (CMD_WAIT_READER_STATE_CHANGE).
 * Notification is one-shot and broadcast, as pcsc-lite clients expect: every
 * change sends each registered client one 8-byte signal and empties the list.
 */
#ifndef SCARDD_STATUS_WAITERS_H
#define SCARDD_STATUS_WAITERS_H

#include <stdbool.h>
#include <stdint.h>

struct daemon;
struct session;

void status_waiters_add(struct daemon *d, struct session *s);
/* Returns whether s was registered. */
bool status_waiters_remove(struct daemon *d, struct session *s);
/* Sends {0, rv} to s and unregisters it. */
void status_waiter_signal(struct daemon *d, struct session *s, uint32_t rv);
/* Sends {0, SCARD_S_SUCCESS} to every registered session and empties the list. */
void status_waiters_wake_all(struct daemon *d);
/* Sends the 8-byte signal now, whatever the session is doing. */
void status_waiter_send(struct session *s, uint32_t rv);

#endif
