/* libFuzzer: ifd-virtual's card-file parser and configuration parser. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vcard.h"
#include "vconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct vcard *c = vcard_parse((const char *)data, size, err, sizeof(err));
	if (c) {
		/* a card that parsed must answer a SELECT of the MF and a READ */
		static const uint8_t sel[] = { 0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00, 0x00 };
		static const uint8_t rd[] = { 0x00, 0xB0, 0x81, 0x00, 0x00 };
		uint8_t out[VCARD_MAX_RESPONSE];
		if (vcard_transmit(c, VCARD_T1, sel, sizeof(sel), out, sizeof(out)) < 2)
			__builtin_trap();
		if (vcard_transmit(c, VCARD_T0, rd, sizeof(rd), out, sizeof(out)) < 2)
			__builtin_trap();
		vcard_free(c);
	} else if (!err[0]) {
		__builtin_trap(); /* every refusal says why */
	}
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	vconfig_parse(&cfg, (const char *)data, size, "/base", err, sizeof(err));
	vconfig_clear(&cfg);
	return 0;
}
