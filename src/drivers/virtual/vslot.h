/*
 * One virtual reader slot: the card in it (if any), mute/fast switches, power
 * and protocol state, and the card-event bookkeeping behind the daemon's
 * polling function (TAG_IFD_POLLING_THREAD_WITH_TIMEOUT).
 *
 * Every function locks the slot: the daemon's worker, its card-event thread
 * and the control-socket thread call in concurrently.
 */
#ifndef IFD_VIRTUAL_VSLOT_H
#define IFD_VIRTUAL_VSLOT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ifdhandler.h>

#include "vcard.h"

struct vslot {
	pthread_mutex_t lock;
	pthread_cond_t cond;   /* signalled when event_gen changes or on stop */
	struct vcard *card;    /* NULL = no card */
	char *card_name;       /* "builtin" or the file it came from */
	bool mute;             /* the card does not answer */
	bool fast;             /* every command answers 90 00 */
	unsigned delay_ms;     /* every transmit takes this long (set before use; ifd_virtual.c) */
	unsigned atr_delay_ms; /* every power-up or reset takes this long (idem) */
	bool powered;
	int protocol;               /* VCARD_T0 / VCARD_T1 while powered */
	unsigned card_gen;          /* +1 per insertion */
	unsigned event_gen;         /* +1 per change the daemon should look at */
	unsigned seen_gen;          /* event_gen when presence was last asked */
	bool reported_present;      /* what presence last answered ... */
	unsigned reported_card_gen; /* ... and for which insertion */
	long long gap_until_ms;     /* a swap: the slot reads empty until then */
	bool gap_wake;              /* wake the daemon when the gap ends */
	bool stop_pending;          /* the daemon asked its current (or next) wait to return */
	bool closed;                /* the channel is closed: waits return at once */
	unsigned long commands;     /* APDUs answered, for status */
	unsigned long event_wakes;  /* event waits that returned for an event, for status */
};

void vslot_init(struct vslot *s);
void vslot_destroy(struct vslot *s);

/*
 * Puts card in the slot (taking ownership); a card already there is swapped
 * out, and the daemon is shown its removal before the new insertion: when it
 * first looks, the slot reads empty for VSLOT_SWAP_GAP_MS (pcscd asks twice
 * in a row and acts on the second answer), then its wait returns and it finds
 * the new card.
 */
#define VSLOT_SWAP_GAP_MS 100
void vslot_insert(struct vslot *s, struct vcard *card, const char *name);
/* Returns false if the slot was already empty. */
bool vslot_remove(struct vslot *s);
/* A card present when mute changes is re-seated (the daemon sees it leave and
 * come back), so the daemon powers it again and notices. */
void vslot_set_mute(struct vslot *s, bool mute);
void vslot_set_fast(struct vslot *s, bool fast);

/* IFDHICCPresence: IFD_ICC_PRESENT or IFD_ICC_NOT_PRESENT. */
RESPONSECODE vslot_presence(struct vslot *s);
/* The polling function: returns IFD_SUCCESS when there is something for the
 * daemon to look at, at the timeout, when stopped, or at once once closed. */
RESPONSECODE vslot_wait_event(struct vslot *s, int timeout_ms);
/* The same wait, saying what ended it (the driver API has no word for that). */
enum vslot_wake {
	VSLOT_WOKE_EVENT,  /* a card came or went since the daemon last looked */
	VSLOT_WOKE_GAP,    /* a swapped-in card arrived after its gap */
	VSLOT_WOKE_STOP,   /* vslot_stop */
	VSLOT_WOKE_CLOSED, /* vslot_close */
	VSLOT_WOKE_TIMEOUT,
};
enum vslot_wake vslot_wait(struct vslot *s, int timeout_ms);
/*
 * TAG_IFD_STOP_POLLING_THREAD: ends the current wait, or the next one if
 * none is running. One-shot: pcscd also calls it just to wake its polling
 * thread (after a disconnect) and then waits again.
 */
void vslot_stop(struct vslot *s);
/* Every wait from now on returns at once (the channel is closing). */
void vslot_close(struct vslot *s);

RESPONSECODE vslot_power(struct vslot *s, DWORD action, PUCHAR atr, PDWORD atr_len);
/* Protocol is SCARD_PROTOCOL_T0 / _T1 (bits), as IFDHSetProtocolParameters gets it. */
RESPONSECODE vslot_set_protocol(struct vslot *s, DWORD protocol);
/* Protocol is the T number (0 or 1), as SCARD_IO_HEADER carries it. */
RESPONSECODE vslot_transmit(struct vslot *s, DWORD protocol, const uint8_t *tx, size_t tx_len,
			    uint8_t *rx, PDWORD rx_len);
/* Writes the ATR of a powered card; IFD_ICC_NOT_PRESENT otherwise. */
RESPONSECODE vslot_atr(struct vslot *s, PUCHAR atr, PDWORD atr_len);

/* One-line description for the control channel's "status". */
void vslot_describe(struct vslot *s, unsigned index, char *buf, size_t cap);

#endif
