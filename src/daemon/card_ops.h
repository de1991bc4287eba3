/*
 * What each job does to a card through the driver: power, protocol
 * negotiation, transmit, control, attributes. Runs on whichever thread holds
 * the device (worker.h): the worker, or the loop for a quick job. Fills the
 * job's results and the worker's slot state; touches nothing else.
 */
#ifndef SCARDD_CARD_OPS_H
#define SCARDD_CARD_OPS_H

#include <stdbool.h>
#include <stdint.h>

struct job;
struct worker;

void card_ops_run(struct worker *w, struct job *job);

/* Powers a slot's card up or down (presence code, at insertion). Returns the driver's code. */
long card_ops_power(struct worker *w, unsigned slot, uint32_t action);

/* Copies the slot's card state into the job's results. */
void card_ops_report(struct job *job, const struct worker *w, unsigned slot, bool atr_changed);

#endif
