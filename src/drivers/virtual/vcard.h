/*
 * The emulated ISO 7816-4 card of ifd-virtual.
 *
 * A card is built from a card file (CARD-FORMAT.md) and then answers APDUs
 * exactly as a contact card would behind a T=0 or T=1 reader: a small file
 * system (MF, DFs, transparent EFs), SELECT, READ/UPDATE BINARY, GET
 * CHALLENGE, VERIFY with retry counters, GET RESPONSE and the T=0 61xx/6Cxx
 * procedure. Nothing here does I/O or locking: the caller owns a card and
 * serializes calls on it.
 */
#ifndef IFD_VIRTUAL_VCARD_H
#define IFD_VIRTUAL_VCARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VCARD_MAX_ATR 33
#define VCARD_MAX_FILES 256
#define VCARD_MAX_EF_SIZE 32767 /* highest offset P1-P2 can address + 1 */
#define VCARD_MAX_PINS 8
#define VCARD_MAX_PIN_LEN 64
#define VCARD_MAX_AID 16
#define VCARD_MAX_TEXT (1u << 20) /* card files larger than this are refused */
/* Longest answer: 65536 data bytes (extended Le) + SW1 SW2. */
#define VCARD_MAX_RESPONSE (65536 + 2)

/* Transmission protocols, as the T number the reader uses. */
#define VCARD_T0 0
#define VCARD_T1 1
/* Bits of vcard_protocols(). */
#define VCARD_PROTO_T0 0x1u
#define VCARD_PROTO_T1 0x2u

struct vcard;

/*
 * Builds a card from the text of a card file. Returns NULL with a message
 * ("line 3: unknown keyword 'foo'") in err on any error; err may be NULL.
 */
struct vcard *vcard_parse(const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses a card file. */
struct vcard *vcard_load(const char *path, char *err, size_t errlen);
/* The built-in demo card (CARD-FORMAT.md shows its text). */
struct vcard *vcard_builtin(void);
const char *vcard_builtin_text(void);
void vcard_free(struct vcard *card);

/* Answer-to-reset and the protocols it offers. */
const uint8_t *vcard_atr(const struct vcard *card, size_t *len);
unsigned vcard_protocols(const struct vcard *card);
/* The protocol used when the reader negotiates nothing (the first offered). */
int vcard_default_protocol(const struct vcard *card);

/*
 * Power-up, warm reset or power-down: the security state (verified PINs),
 * the current file and any pending GET RESPONSE data are lost; file contents
 * and PIN retry counters survive, as in a real card's EEPROM.
 */
void vcard_reset(struct vcard *card);

/*
 * Processes one command APDU sent with protocol VCARD_T0 or VCARD_T1 and
 * writes the response (data + SW1 SW2) to out. Returns its length (>= 2), or
 * 0 if cap is too small for the response (cap >= VCARD_MAX_RESPONSE always
 * suffices).
 */
size_t vcard_transmit(struct vcard *card, int protocol, const uint8_t *apdu, size_t len,
		      uint8_t *out, size_t cap);

/* ATR helpers (vcard_atr.c). */
/*
 * Checks a card file's ATR with the shared parser (src/atr, atr_check): TS,
 * the interface bytes announced by T0 and the TDi, the historical bytes and
 * TCK (present and correct whenever a protocol other than T=0 is named).
 * Returns true, the offered protocols (VCARD_PROTO_* bits) and the first
 * offered protocol (VCARD_T0 or VCARD_T1); false with a reason.
 */
bool vcard_atr_check(const uint8_t *atr, size_t len, unsigned *protocols, int *first, char *err,
		     size_t errlen);
/* The built-in ATRs: protocols is VCARD_PROTO_T0, _T1 or both. */
size_t vcard_atr_builtin(unsigned protocols, uint8_t *out, size_t cap);

/* Status word meanings, for logs and the scard tool. */
const char *vcard_sw_text(uint16_t sw);

#endif
