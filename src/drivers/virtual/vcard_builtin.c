/* The built-in demo card: used for "card.N = builtin" and "insert N" without a file. */
#include "vcard.h"

#include <string.h>

/* Kept identical to cards/demo.card (a unit test compares them). */
static const char demo_card[] =
	"# ifd-virtual demo card\n"
	"atr T=0,T=1\n"
	"pin 81 \"1234\" tries 3\n"
	"ef 3F00/2F00 sfi 30 data 61 0C 4F 07 F0 73 63 61 72 64 64 50 01 64\n"
	"df 3F00/5000 name F0 73 63 61 72 64 64\n"
	"ef 3F00/5000/5001 sfi 1 data \"Hello from ifd-virtual\"\n"
	"ef 3F00/5000/5002 sfi 2 size 32 read pin 81 write pin 81 data \"secret\"\n"
	"ef 3F00/5000/5003 size 64 read always write never data \"read-only\"\n";

const char *vcard_builtin_text(void)
{
	return demo_card;
}

struct vcard *vcard_builtin(void)
{
	return vcard_parse(demo_card, strlen(demo_card), NULL, 0);
}
