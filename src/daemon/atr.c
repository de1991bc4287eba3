/* ISO 7816-3 answer-to-reset parsing and the protocol choice made at connect. */
#include "atr.h"

#include <string.h>

#include <pcsclite.h>

/* TDi's low nibble names a protocol; 15 announces global interface bytes. */
static uint32_t protocol_bit(unsigned t)
{
	switch (t) {
	case 0:
		return SCARD_PROTOCOL_T0;
	case 1:
		return SCARD_PROTOCOL_T1;
	case 15:
		return SCARD_PROTOCOL_T15;
	default:
		return 0; /* RFU or proprietary (T=14): nothing we can drive */
	}
}

struct cursor {
	const uint8_t *p;
	size_t len;
	size_t pos;
};

static int take(struct cursor *c, uint8_t *b)
{
	if (c->pos >= c->len)
		return -1;
	*b = c->p[c->pos++];
	return 0;
}

/* Walks TA1..TDn. Returns 0, or -1 when the ATR ends inside them. */
static int parse_interface_bytes(struct cursor *c, uint8_t t0, struct atr_info *out,
				 bool *tck_needed)
{
	unsigned y = t0 >> 4;
	bool named_t0t1 = false;

	for (int i = 1; y; i++) {
		uint8_t ta = 0, tb, tc, td = 0;
		if ((y & 1) && take(c, &ta) < 0)
			return -1;
		if ((y & 2) && take(c, &tb) < 0)
			return -1;
		if ((y & 4) && take(c, &tc) < 0)
			return -1;
		if ((y & 8) && take(c, &td) < 0)
			return -1;
		if (i == 1 && (y & 1))
			out->ta1 = ta;
		if (i == 2 && (y & 1)) {
			out->specific_mode = true;
			out->can_change = !(ta & 0x80);
			uint32_t sp = protocol_bit(ta & 0x0f);
			out->specific_protocol = sp == SCARD_PROTOCOL_T15 ? 0 : sp;
		}
		if (!(y & 8))
			break;
		unsigned t = td & 0x0f;
		uint32_t bit = protocol_bit(t);
		out->protocols |= bit;
		if (t != 0)
			*tck_needed = true;
		if (!named_t0t1 && (bit == SCARD_PROTOCOL_T0 || bit == SCARD_PROTOCOL_T1)) {
			out->default_protocol = bit;
			named_t0t1 = true;
		}
		y = td >> 4;
	}
	/* No TD1, or TD bytes naming only T=15: the card speaks T=0. */
	if (!named_t0t1) {
		out->protocols |= SCARD_PROTOCOL_T0;
		out->default_protocol = SCARD_PROTOCOL_T0;
	}
	return 0;
}

/*
 * A card offering anything but T=0 must end with TCK. One that leaves it
 * out is still accepted (has_tck false) so the caller can decide; bytes
 * after the declared end are ignored.
 */
int atr_parse(const uint8_t *atr, size_t len, struct atr_info *out)
{
	if (!atr || !out || len < 2 || len > MAX_ATR_SIZE)
		return -1;
	memset(out, 0, sizeof *out);
	out->ta1 = 0x11;

	if (atr[0] != 0x3B && atr[0] != 0x3F)
		return -1; /* TS: direct or inverse convention, already decoded by the reader */
	struct cursor c = { .p = atr, .len = len, .pos = 2 };
	bool tck_needed = false;
	if (parse_interface_bytes(&c, atr[1], out, &tck_needed) < 0)
		return -1;
	out->historical_len = atr[1] & 0x0f;
	if (len - c.pos < out->historical_len)
		return -1;
	c.pos += out->historical_len;
	if (!tck_needed || c.pos >= len)
		return 0;

	uint8_t x = 0;
	for (size_t i = 1; i <= c.pos; i++)
		x ^= atr[i];
	out->has_tck = true;
	out->tck_ok = x == 0;
	return 0;
}

long atr_choose_protocol(const struct atr_info *info, uint32_t preferred, uint32_t *chosen,
			 bool *need_pps)
{
	if (!info || !chosen || !need_pps)
		return SCARD_E_INVALID_PARAMETER;
	*need_pps = false;

	if (info->specific_mode) {
		if (!(info->specific_protocol & preferred))
			return SCARD_E_PROTO_MISMATCH;
		*chosen = info->specific_protocol;
		return SCARD_S_SUCCESS;
	}
	/*
	 * Negotiable card: T=1 whenever both sides allow it, as pcscd does;
	 * anything but the card's default needs a PPS exchange.
	 */
	static const uint32_t order[] = { SCARD_PROTOCOL_T1, SCARD_PROTOCOL_T0 };
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		if (info->protocols & preferred & order[i]) {
			*chosen = order[i];
			*need_pps = order[i] != info->default_protocol;
			return SCARD_S_SUCCESS;
		}
	}
	if (preferred & SCARD_PROTOCOL_RAW) {
		*chosen = SCARD_PROTOCOL_RAW;
		return SCARD_S_SUCCESS;
	}
	return SCARD_E_PROTO_MISMATCH;
}
