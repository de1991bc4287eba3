/* Answer-to-reset: structure checks (ISO 7816-3) and the built-in ATRs. */
#include <stdio.h>
#include <string.h>

#include "vcard.h"

static void say(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

bool vcard_atr_check(const uint8_t *atr, size_t len, unsigned *protocols, int *first,
		     char *err, size_t errlen)
{
	if (len < 2 || len > VCARD_MAX_ATR) {
		say(err, errlen, "an ATR has 2 to 33 bytes");
		return false;
	}
	if (atr[0] != 0x3B && atr[0] != 0x3F) {
		say(err, errlen, "TS must be 3B (direct) or 3F (inverse convention)");
		return false;
	}
	size_t pos = 2;
	unsigned historical = atr[1] & 0x0F;
	uint8_t y = atr[1] >> 4;
	unsigned protos = 0;
	int first_proto = -1;
	bool tck_needed = false;
	for (unsigned level = 1; y; level++) {
		/* TA, TB, TC present per bits 5..7; TD per bit 8 */
		pos += (y & 1) + ((y >> 1) & 1) + ((y >> 2) & 1);
		if (!(y & 8))
			break;
		if (pos >= len) {
			say(err, errlen, "interface bytes run past the end");
			return false;
		}
		uint8_t td = atr[pos++];
		unsigned t = td & 0x0F;
		if (t != 15) {
			if (first_proto < 0)
				first_proto = (int)t;
			if (t <= 1)
				protos |= 1u << t;
			if (t != 0)
				tck_needed = true;
		}
		if (level > 8) {
			say(err, errlen, "too many TD bytes");
			return false;
		}
		y = td >> 4;
	}
	if (first_proto < 0) {
		first_proto = 0; /* no TD1: T=0 only */
		protos = VCARD_PROTO_T0;
	}
	size_t want = pos + historical + (tck_needed ? 1 : 0);
	if (want != len) {
		char buf[96];
		snprintf(buf, sizeof(buf), "T0 and TDi announce %zu bytes%s, the ATR has %zu",
			 want, tck_needed ? " (with TCK)" : "", len);
		say(err, errlen, buf);
		return false;
	}
	if (tck_needed) {
		uint8_t x = 0;
		for (size_t i = 1; i < len; i++)
			x ^= atr[i];
		if (x) {
			char buf[64];
			snprintf(buf, sizeof(buf), "wrong TCK: the last byte should be %02X",
				 atr[len - 1] ^ x);
			say(err, errlen, buf);
			return false;
		}
	}
	if (!(protos & (VCARD_PROTO_T0 | VCARD_PROTO_T1))) {
		say(err, errlen, "the ATR offers neither T=0 nor T=1");
		return false;
	}
	if (first_proto > 1) {
		say(err, errlen, "the first offered protocol must be T=0 or T=1");
		return false;
	}
	if (protocols)
		*protocols = protos;
	if (first)
		*first = first_proto;
	return true;
}

size_t vcard_atr_builtin(unsigned protocols, uint8_t *out, size_t cap)
{
	/* Historical bytes: "vcard" then the protocol digits, easy to spot in logs. */
	static const uint8_t t0[] = {0x3B, 0x07, 'v', 'c', 'a', 'r', 'd', '-', '0'};
	static const uint8_t t1[] = {0x3B, 0x87, 0x01, 'v', 'c', 'a', 'r', 'd', '-', '1', 0};
	static const uint8_t both[] = {0x3B, 0x88, 0x80, 0x01, 'v', 'c', 'a',
				       'r',  'd',  '-',  '0', '1',  0};
	const uint8_t *src;
	size_t n;
	if (protocols == VCARD_PROTO_T0) {
		src = t0;
		n = sizeof(t0);
	} else if (protocols == VCARD_PROTO_T1) {
		src = t1;
		n = sizeof(t1);
	} else {
		src = both;
		n = sizeof(both);
	}
	if (cap < n)
		return 0;
	memcpy(out, src, n);
	if (src != t0) {
		uint8_t x = 0;
		for (size_t i = 1; i + 1 < n; i++)
			x ^= out[i];
		out[n - 1] = x; /* TCK */
	}
	return n;
}
