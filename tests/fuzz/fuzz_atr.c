/*
 * libFuzzer: the ATR parser (lenient read, strict check) and the protocol
 * choice never crash and keep their invariants; whatever the strict check
 * accepts, the lenient read reads the same way.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Field by field: padding in atr_info is not part of the answer. */
static bool same_info(const struct atr_info *a, const struct atr_info *b)
{
	return a->protocols == b->protocols && a->default_protocol == b->default_protocol &&
	       a->specific_mode == b->specific_mode &&
	       a->specific_protocol == b->specific_protocol && a->can_change == b->can_change &&
	       a->ta1 == b->ta1 && a->historical_len == b->historical_len &&
	       a->has_tck == b->has_tck && a->tck_ok == b->tck_ok;
}

/* The strict check: a reason when it refuses, the lenient reading when it accepts. */
static void check_strict(const uint8_t *atr, size_t len)
{
	struct atr_info strict, lenient;
	char why[96];
	memset(why, 'x', sizeof(why));
	if (atr_check(atr, len, &strict, why, sizeof(why)) != 0) {
		if (!memchr(why, 0, sizeof(why)) || why[0] == 0)
			__builtin_trap();
		return;
	}
	if (atr_parse(atr, len, &lenient) != 0 || !same_info(&strict, &lenient))
		__builtin_trap();
	if (!(strict.protocols & (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1)))
		__builtin_trap();
	if (strict.has_tck && !strict.tck_ok)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* First byte picks the preferred protocols, the rest is the ATR. */
	uint32_t preferred = data[0] & 0x0f;
	check_strict(data + 1, size - 1);
	struct atr_info info;
	if (atr_parse(data + 1, size - 1, &info) != 0)
		return 0;
	if (info.historical_len > 15 || (info.protocols & ~OFFERABLE))
		__builtin_trap();
	if (!(info.default_protocol & info.protocols) || (info.tck_ok && !info.has_tck))
		__builtin_trap();
	check_choice(&info, preferred);
	return 0;
}
