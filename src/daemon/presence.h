/*
 * Card presence for one device: polling IFDHICCPresence every poll period,
 * or, when the driver offers its own event wait
 * (TAG_IFD_POLLING_THREAD_WITH_TIMEOUT), one thread per slot blocked in it
 * that asks the worker to look when something happened. A change is posted
 * to the loop as a JOB_CARD_EVENT.
 *
 * A driver that answers SCARDD_TAG_IFD_PRESENCE_ANYTIME is also asked apart
 * from the worker's jobs (by the event threads, or a watcher thread when it
 * has no event wait): a removal is posted at once, even while another
 * client's command is in the driver (docs/ARCHITECTURE.md).
 */
#ifndef SCARDD_PRESENCE_H
#define SCARDD_PRESENCE_H

struct worker;

/* After the channel opened: reads the driver's event functions, starts the event threads. */
void presence_start(struct worker *w);
/* Worker, holding the device: asks the driver about every slot, posts changes. */
void presence_check(struct worker *w);
/* Stops and joins the event threads (a stuck one is abandoned). */
void presence_stop(struct worker *w);

#endif
