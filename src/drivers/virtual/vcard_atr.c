/* Answer-to-reset: the card file's view of the shared ATR parser, and the built-in ATRs. */
#include <string.h>

#include <pcsclite.h>

#include "atr.h"
#include "vcard.h"

bool vcard_atr_check(const uint8_t *atr, size_t len, unsigned *protocols, int *first, char *err,
		     size_t errlen)
{
	struct atr_info info;

	if (atr_check(atr, len, &info, err, errlen) < 0)
		return false;
	/* The card answers T=0 and T=1 only; T=15 carries no APDUs. */
	if (protocols)
		*protocols = (info.protocols & SCARD_PROTOCOL_T0 ? VCARD_PROTO_T0 : 0) |
			     (info.protocols & SCARD_PROTOCOL_T1 ? VCARD_PROTO_T1 : 0);
	if (first)
		*first = info.default_protocol == SCARD_PROTOCOL_T1 ? VCARD_T1 : VCARD_T0;
	return true;
}

size_t vcard_atr_builtin(unsigned protocols, uint8_t *out, size_t cap)
{
	/* Historical bytes: "vcard" then the protocol digits, easy to spot in logs. */
	static const uint8_t t0[] = { 0x3B, 0x07, 'v', 'c', 'a', 'r', 'd', '-', '0' };
	static const uint8_t t1[] = { 0x3B, 0x87, 0x01, 'v', 'c', 'a', 'r', 'd', '-', '1', 0 };
	static const uint8_t both[] = { 0x3B, 0x88, 0x80, 0x01, 'v', 'c', 'a',
					'r',  'd',  '-',  '0',  '1', 0 };
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
