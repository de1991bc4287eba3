#include "apdu_log.h"

#include <stdio.h>

#include "log.h"

/* The commands whose data is a PIN, a PUK or a new PIN (ISO 7816-4). */
static const char *pin_command(uint8_t ins)
{
	switch (ins) {
	case 0x20:
	case 0x21: return "VERIFY";
	case 0x24:
	case 0x25: return "CHANGE REFERENCE DATA";
	case 0x2C:
	case 0x2D: return "RESET RETRY COUNTER";
	default: return NULL;
	}
}

size_t apdu_shown_bytes(const uint8_t *apdu, size_t len)
{
	/* CLA INS P1 P2 [Le]: no data to hide */
	if (len <= 5 || !pin_command(apdu[1]))
		return len;
	/* extended length: 00 Lc1 Lc2 */
	if (apdu[4] == 0 && len >= 7)
		return 7;
	return 5;
}

void apdu_log_command(const char *who, const uint8_t *apdu, size_t len)
{
	size_t shown = apdu_shown_bytes(apdu, len);
	const char *sep = who[0] ? " " : "";
	char label[320];
	if (shown == len)
		snprintf(label, sizeof(label), "%s%sAPDU", who, sep);
	else
		snprintf(label, sizeof(label), "%s%sAPDU (%s, %zu data bytes not logged)", who, sep,
			 pin_command(apdu[1]), len - shown);
	log_hex(label, apdu, shown);
}
