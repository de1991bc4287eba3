/* What status words mean (ISO 7816-4), for logs and the scard tool. */
#include "vcard.h"

const char *vcard_sw_text(uint16_t sw)
{
	switch (sw >> 8) {
	case 0x61: return "more data available: GET RESPONSE";
	case 0x6C: return "wrong Le: SW2 gives the exact length";
	case 0x63:
		if ((sw & 0xF0) == 0xC0)
			return "verification failed: SW2 low nibble gives tries left";
		break;
	default: break;
	}
	switch (sw) {
	case 0x9000: return "success";
	case 0x6200: return "warning: state unchanged";
	case 0x6281: return "warning: returned data may be corrupted";
	case 0x6282: return "warning: end of file reached before Le bytes";
	case 0x6283: return "warning: selected file deactivated";
	case 0x6300: return "warning: verification failed";
	case 0x6400: return "execution error: state unchanged";
	case 0x6581: return "memory failure";
	case 0x6700: return "wrong length";
	case 0x6881: return "logical channel not supported";
	case 0x6882: return "secure messaging not supported";
	case 0x6884: return "command chaining not supported";
	case 0x6981: return "command incompatible with file structure";
	case 0x6982: return "security status not satisfied";
	case 0x6983: return "authentication method blocked";
	case 0x6984: return "reference data not usable";
	case 0x6985: return "conditions of use not satisfied";
	case 0x6986: return "command not allowed (no current EF)";
	case 0x6A80: return "incorrect data field";
	case 0x6A81: return "function not supported";
	case 0x6A82: return "file or application not found";
	case 0x6A83: return "record not found";
	case 0x6A84: return "not enough memory space in the file";
	case 0x6A86: return "incorrect parameters P1-P2";
	case 0x6A87: return "Lc inconsistent with P1-P2";
	case 0x6A88: return "referenced data not found";
	case 0x6B00: return "wrong parameters P1-P2 (offset outside the file)";
	case 0x6D00: return "instruction not supported";
	case 0x6E00: return "class not supported";
	case 0x6F00: return "no precise diagnosis";
	default: break;
	}
	switch (sw >> 8) {
	case 0x62: return "warning: state unchanged";
	case 0x63: return "warning: state changed";
	case 0x64: return "execution error: state unchanged";
	case 0x65: return "execution error: state changed";
	case 0x66: return "security-related error";
	case 0x67: return "wrong length";
	case 0x68: return "functions in CLA not supported";
	case 0x69: return "command not allowed";
	case 0x6A: return "wrong parameters P1-P2";
	case 0x90: return "success";
	default: return "unknown status word";
	}
}
