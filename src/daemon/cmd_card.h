/* Shared by the card-handle commands (cmd_card.c, cmd_io.c). */
#ifndef SCARDD_CMD_CARD_H
#define SCARDD_CMD_CARD_H

#include <stdbool.h>

#include "job.h"

struct handle;
struct reader;

/* The common gate: the reader still there, no other handle's transaction, then this handle's warnings. */
long cmd_card_check(const struct handle *h, bool check_events);
/* A job on the reader's device and slot. */
struct job *cmd_card_job(enum job_kind kind, struct reader *r, job_finish_fn *finish);

#endif
