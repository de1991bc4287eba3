/* The card's data model, shared by the card-file parser and the APDU handler. */
#ifndef IFD_VIRTUAL_VCARD_INTERNAL_H
#define IFD_VIRTUAL_VCARD_INTERNAL_H

#include "vcard.h"

#define VCARD_FID_MF 0x3F00

enum vfile_kind { VFILE_DF, VFILE_EF };
enum vaccess_kind { VACCESS_ALWAYS, VACCESS_NEVER, VACCESS_PIN };

struct vaccess {
	enum vaccess_kind kind;
	uint8_t pin_ref; /* VACCESS_PIN */
};

struct vfile {
	enum vfile_kind kind;
	uint16_t fid;
	struct vfile *parent;       /* NULL for the MF */
	struct vfile *children;     /* DF: first child */
	struct vfile *next;         /* next sibling */
	uint8_t aid[VCARD_MAX_AID]; /* DF name; aid_len 0 = none */
	size_t aid_len;
	uint8_t sfi;   /* EF: short identifier 1..30, 0 = none */
	uint8_t *data; /* EF content, size bytes */
	size_t size;
	struct vaccess read, write; /* EF access conditions */
};

struct vpin {
	uint8_t ref; /* VERIFY P2 */
	uint8_t value[VCARD_MAX_PIN_LEN];
	size_t len;
	unsigned max_tries;
	unsigned tries_left; /* 0 = blocked */
	bool verified;       /* security state: lost on reset */
};

struct vcard {
	uint8_t atr[VCARD_MAX_ATR];
	size_t atr_len;
	unsigned protocols;
	int first_protocol;

	struct vfile *mf;
	size_t n_files;
	struct vpin pins[VCARD_MAX_PINS];
	size_t n_pins;

	/* Run-time state, cleared by vcard_reset. */
	struct vfile *cur_df;
	struct vfile *cur_ef;
	uint8_t *pending; /* T=0 answer waiting for GET RESPONSE */
	size_t pending_len, pending_off;
};

struct vpin *vcard_find_pin(struct vcard *card, uint8_t ref);
void vcard_clear_pending(struct vcard *card);

#endif
