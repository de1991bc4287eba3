/*
 * ISO 7816-3 answer-to-reset: which protocols a card offers, and the choice
 * made at connect. The one ATR parser of scardd, ifd-virtual and scard: pure
 * (no I/O, no allocation, no state), so a driver can link it statically.
 */
#ifndef SCARDD_ATR_H
#define SCARDD_ATR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct atr_info {
	uint32_t protocols; /* SCARD_PROTOCOL_T0/T1/T15 bits offered (T=0 if no TD1) */
	uint32_t
		default_protocol; /* the first offered protocol (SCARD_PROTOCOL_T0 when none named) */
	bool specific_mode;       /* TA2 present: the card runs one protocol only */
	uint32_t specific_protocol;
	bool can_change; /* TA2 bit 8 clear: the card may switch to negotiable mode */
	uint8_t ta1;     /* Fi/Di (0x11 when absent) */
	size_t historical_len;
	bool has_tck; /* owed when a protocol other than T=0 is named; an ATR */
	bool tck_ok;  /* missing it still parses, with has_tck false */
};

/*
 * Reads an ATR as a reader reports it, leniently: a missing TCK is accepted
 * (has_tck false) and bytes after the declared end are ignored. Returns 0,
 * or -1 if the ATR is malformed or shorter than it declares.
 */
int atr_parse(const uint8_t *atr, size_t len, struct atr_info *out);

/*
 * Checks an ATR someone wrote down (a card file, a test): TS, exactly the
 * bytes T0 and the TDi announce, at most 8 TDi, TCK present and right when
 * a protocol other than T=0 is named, and T=0 or T=1 offered first. Returns
 * 0 with out filled as atr_parse fills it, or -1 with the reason in why
 * ("wrong TCK: the last byte should be 81"); why may be NULL.
 */
int atr_check(const uint8_t *atr, size_t len, struct atr_info *out, char *why, size_t why_len);

/*
 * Chooses the protocol for a connect with `preferred` (SCARD_PROTOCOL_* bits):
 * a card in specific mode runs its one protocol; a negotiable card runs T=1
 * when both sides allow it, else T=0 (pcscd chooses the same way), with
 * *need_pps set when that is not the card's default. RAW in preferred is the
 * last resort. Returns SCARD_S_SUCCESS or SCARD_E_PROTO_MISMATCH.
 */
long atr_choose_protocol(const struct atr_info *info, uint32_t preferred, uint32_t *chosen,
			 bool *need_pps);

#endif
