/* ISO 7816-3 answer-to-reset parsing and the protocol choice made at connect. */
#include "atr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <pcsclite.h>

/* More TDi than this in a hand-written ATR is a mistake, not a card. */
#define MAX_TD_BYTES 8

/* TDi's low nibble names a protocol; 15 announces global interface bytes. */
static uint32_t protocol_bit(unsigned t)
{
	switch (t) {
	case 0: return SCARD_PROTOCOL_T0;
	case 1: return SCARD_PROTOCOL_T1;
	case 15: return SCARD_PROTOCOL_T15;
	default: return 0; /* RFU or proprietary (T=14): nothing we can drive */
	}
}

/* What walking T0 and the TDi found, beyond what atr_info reports. */
struct walk {
	size_t end;      /* offset just past the announced interface bytes */
	bool td_missing; /* a TDi is announced past the end of the ATR */
	unsigned td_count;
	bool tck_needed; /* a TDi names a protocol other than T=0 */
	bool named_t0t1; /* a TDi names T=0 or T=1 */
	int first_t;     /* the first protocol a TDi names, T=15 aside; -1 if none */
};

/* Fills out's protocol fields from TA1..TDn; never reads past len. */
static void walk_interface_bytes(const uint8_t *atr, size_t len, struct atr_info *out,
				 struct walk *w)
{
	unsigned y = atr[1] >> 4;
	size_t pos = 2;

	memset(w, 0, sizeof(*w));
	w->first_t = -1;
	for (unsigned i = 1; y; i++) {
		size_t ta = pos;

		/* TA, TB, TC present per bits 5..7 of the byte before; TD per bit 8. */
		pos += (y & 1) + ((y >> 1) & 1) + ((y >> 2) & 1);
		if ((y & 1) && ta < len && i == 1)
			out->ta1 = atr[ta];
		if ((y & 1) && ta < len && i == 2) {
			uint32_t sp = protocol_bit(atr[ta] & 0x0f);

			out->specific_mode = true;
			out->can_change = !(atr[ta] & 0x80);
			out->specific_protocol = sp == SCARD_PROTOCOL_T15 ? 0 : sp;
		}
		if (!(y & 8))
			break;
		if (pos >= len) {
			w->td_missing = true;
			break;
		}
		uint8_t td = atr[pos++];
		unsigned t = td & 0x0f;
		uint32_t bit = protocol_bit(t);

		w->td_count++;
		out->protocols |= bit;
		if (t != 0)
			w->tck_needed = true;
		if (t != 15 && w->first_t < 0)
			w->first_t = (int)t;
		if (!w->named_t0t1 && (bit == SCARD_PROTOCOL_T0 || bit == SCARD_PROTOCOL_T1)) {
			out->default_protocol = bit;
			w->named_t0t1 = true;
		}
		y = td >> 4;
	}
	/* No TD1, or TD bytes naming neither T=0 nor T=1: the card speaks T=0. */
	if (!w->named_t0t1) {
		out->protocols |= SCARD_PROTOCOL_T0;
		out->default_protocol = SCARD_PROTOCOL_T0;
	}
	w->end = pos;
}

/* TS, T0 and the interface bytes; -1 when TS is neither convention. */
static int start(const uint8_t *atr, struct atr_info *out, struct walk *w, size_t len)
{
	memset(out, 0, sizeof(*out));
	out->ta1 = 0x11;
	if (atr[0] != 0x3B && atr[0] != 0x3F)
		return -1; /* TS: direct or inverse convention, already decoded by the reader */
	walk_interface_bytes(atr, len, out, w);
	out->historical_len = atr[1] & 0x0f;
	return 0;
}

/* XOR of T0 .. atr[last]: 0 when atr[last] is the right TCK. */
static uint8_t xor_from_t0(const uint8_t *atr, size_t last)
{
	uint8_t x = 0;

	for (size_t i = 1; i <= last; i++)
		x ^= atr[i];
	return x;
}

/*
 * A card offering anything but T=0 must end with TCK. One that leaves it
 * out is still accepted (has_tck false) so the caller can decide; bytes
 * after the declared end are ignored.
 */
int atr_parse(const uint8_t *atr, size_t len, struct atr_info *out)
{
	struct walk w;

	if (!atr || !out || len < 2 || len > MAX_ATR_SIZE)
		return -1;
	if (start(atr, out, &w, len) < 0 || w.td_missing || w.end > len)
		return -1;
	if (len - w.end < out->historical_len)
		return -1;
	size_t tck_at = w.end + out->historical_len;
	if (!w.tck_needed || tck_at >= len)
		return 0;
	out->has_tck = true;
	out->tck_ok = xor_from_t0(atr, tck_at) == 0;
	return 0;
}

static int refuse(char *why, size_t why_len, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int atr_check(const uint8_t *atr, size_t len, struct atr_info *out, char *why, size_t why_len)
{
	struct atr_info local;
	struct walk w;

	if (!out)
		out = &local;
	if (!atr || len < 2 || len > MAX_ATR_SIZE)
		return refuse(why, why_len, "an ATR has 2 to %d bytes", MAX_ATR_SIZE);
	if (start(atr, out, &w, len) < 0)
		return refuse(why, why_len, "TS must be 3B (direct) or 3F (inverse convention)");
	if (w.td_count > MAX_TD_BYTES)
		return refuse(why, why_len, "too many TD bytes");
	if (w.td_missing)
		return refuse(why, why_len, "interface bytes run past the end");
	size_t want = w.end + out->historical_len + (w.tck_needed ? 1 : 0);
	if (want != len)
		return refuse(why, why_len, "T0 and TDi announce %zu bytes%s, the ATR has %zu",
			      want, w.tck_needed ? " (with TCK)" : "", len);
	if (w.tck_needed) {
		uint8_t x = xor_from_t0(atr, len - 1);

		if (x)
			return refuse(why, why_len, "wrong TCK: the last byte should be %02X",
				      atr[len - 1] ^ x);
		out->has_tck = true;
		out->tck_ok = true;
	}
	if (!w.named_t0t1 && w.first_t >= 0)
		return refuse(why, why_len, "the ATR offers neither T=0 nor T=1");
	if (w.first_t > 1)
		return refuse(why, why_len, "the first offered protocol must be T=0 or T=1");
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
