/* libFuzzer: ATR parsing and protocol choice never crash and keep their invariants. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pcsclite.h>

#include "atr.h"

#define OFFERABLE (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1 | SCARD_PROTOCOL_T15)

static void check_choice(const struct atr_info *info, uint32_t preferred)
{
	uint32_t chosen = 0;
	bool pps = false;
	long rv = atr_choose_protocol(info, preferred, &chosen, &pps);
	if (rv == SCARD_E_PROTO_MISMATCH)
		return;
	if (rv != SCARD_S_SUCCESS || !(chosen & preferred))
		__builtin_trap();
	if (chosen == SCARD_PROTOCOL_RAW && pps)
		__builtin_trap();
	if (chosen != SCARD_PROTOCOL_RAW && !(chosen & info->protocols) && !info->specific_mode)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct atr_info info;
	if (size < 1)
		return 0;
	/* First byte picks the preferred protocols, the rest is the ATR. */
	uint32_t preferred = data[0] & 0x0f;
	if (atr_parse(data + 1, size - 1, &info) != 0)
		return 0;
	if (info.historical_len > 15 || (info.protocols & ~OFFERABLE))
		__builtin_trap();
	if (!(info.default_protocol & info.protocols) || (info.tck_ok && !info.has_tck))
		__builtin_trap();
	check_choice(&info, preferred);
	return 0;
}
