/*
 * libFuzzer: ifd-virtual's APDU handler. The input is a sequence of commands,
 * each "<flags> <len> <len bytes>": flags bit 0 picks T=1, bit 1 a reset
 * before the command, bit 2 a short output buffer. One card lives across
 * the sequence, so state (selection, PINs, pending GET RESPONSE) is explored.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vcard.h"

static const char card_text[] =
	"atr T=0,T=1\n"
	"pin 81 \"1234\" tries 3\n"
	"pin 01 31 32 tries 1\n"
	"ef 3F00/2F00 sfi 30 data 61 0C 4F 07 F0 73 63 61 72 64 64 50 01 64\n"
	"df 3F00/5000 name F0 73 63 61 72 64 64\n"
	"ef 3F00/5000/5001 sfi 1 data \"Hello from ifd-virtual\"\n"
	"ef 3F00/5000/5002 sfi 2 size 32 read pin 81 write pin 81 data \"secret\"\n"
	"ef 3F00/5000/5003 size 8 read always write never\n"
	"df 3F00/5000/6000 name F0 73 63 61 72 64 64 02\n"
	"ef 3F00/5000/6000/6001 size 600 write pin 01\n"
	"ef 3F00/5000/5005 size 0\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vcard *c = vcard_parse(card_text, sizeof(card_text) - 1, NULL, 0);
	if (!c)
		__builtin_trap();
	static uint8_t out[VCARD_MAX_RESPONSE];
	size_t pos = 0;
	while (pos + 2 <= size) {
		uint8_t flags = data[pos];
		size_t len = data[pos + 1];
		if (flags & 0x80) { /* long command: two length bytes */
			if (pos + 3 > size)
				break;
			len = (size_t)data[pos + 1] << 8 | data[pos + 2];
			pos++;
		}
		pos += 2;
		if (len > size - pos)
			len = size - pos;
		if (flags & 2)
			vcard_reset(c);
		size_t cap = (flags & 4) ? 2 + (flags >> 3 & 0x0F) : sizeof(out);
		size_t n = vcard_transmit(c, flags & 1 ? VCARD_T1 : VCARD_T0, data + pos, len, out,
					  cap);
		if (n > cap || (n == 0 && cap >= VCARD_MAX_RESPONSE) || n == 1)
			__builtin_trap();
		pos += len;
	}
	vcard_free(c);
	return 0;
}
