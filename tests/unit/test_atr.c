/* ATR parsing (ISO 7816-3): the lenient read, the strict check and the protocol chosen at connect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pcsclite.h>

#include "atr.h"

/* "3B 02 14 50" -> bytes; returns the length. */
static size_t hex(const char *s, uint8_t *out)
{
	size_t n = 0;
	while (*s) {
		if (*s == ' ') {
			s++;
			continue;
		}
		unsigned v;
		assert_int_equal(sscanf(s, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

static int parse_hex(const char *s, struct atr_info *info)
{
	uint8_t buf[64];
	size_t len = hex(s, buf);
	return atr_parse(buf, len, info);
}

#define T0 SCARD_PROTOCOL_T0
#define T1 SCARD_PROTOCOL_T1
#define T15 SCARD_PROTOCOL_T15
#define RAW SCARD_PROTOCOL_RAW

/* T=0 only, no interface bytes at all. */
static void test_t0_only(void **state)
{
	(void)state;
	struct atr_info i;
	assert_int_equal(parse_hex("3B 02 14 50", &i), 0);
	assert_int_equal(i.protocols, T0);
	assert_int_equal(i.default_protocol, T0);
	assert_false(i.specific_mode);
	assert_int_equal(i.ta1, 0x11);
	assert_int_equal(i.historical_len, 2);
	assert_false(i.has_tck);

	/* A stray byte after a T=0 ATR is not taken for a TCK. */
	assert_int_equal(parse_hex("3B 02 14 50 00", &i), 0);
	assert_false(i.has_tck);
}

/* A YubiKey 4: TA1..TD1, then T=1 twice, TCK D4. */
static void test_t1_card(void **state)
{
	(void)state;
	struct atr_info i;
	assert_int_equal(parse_hex("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4", &i), 0);
	assert_int_equal(i.protocols, T1);
	assert_int_equal(i.default_protocol, T1);
	assert_int_equal(i.ta1, 0x13);
	assert_int_equal(i.historical_len, 8);
	assert_true(i.has_tck);
	assert_true(i.tck_ok);

	assert_int_equal(parse_hex("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D5", &i), 0);
	assert_true(i.has_tck);
	assert_false(i.tck_ok);

	/* TCK left out: still parsed, the caller sees has_tck false. */
	assert_int_equal(parse_hex("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34", &i), 0);
	assert_false(i.has_tck);
	assert_int_equal(i.protocols, T1);
}

/* TD1 names T=0, TD2 names T=1: both offered, T=0 the default. */
static void test_dual_protocol(void **state)
{
	(void)state;
	struct atr_info i;
	assert_int_equal(parse_hex("3B 8A 80 01 00 31 C1 73 C8 40 00 00 90 00 90", &i), 0);
	assert_int_equal(i.protocols, T0 | T1);
	assert_int_equal(i.default_protocol, T0);
	assert_int_equal(i.historical_len, 10);
	assert_true(i.has_tck && i.tck_ok);

	/* T=0, T=1 then T=15 global bytes (TA4). */
	assert_int_equal(parse_hex("3B D8 18 00 80 B1 FE 45 1F 07 4A 43 4F 50 33 31 56 32 22", &i),
			 0);
	assert_int_equal(i.protocols, T0 | T1 | T15);
	assert_int_equal(i.default_protocol, T0);
	assert_int_equal(i.ta1, 0x18);
	assert_true(i.has_tck && i.tck_ok);

	/* Offered in the other order: T=1 is the default. */
	assert_int_equal(parse_hex("3B 82 81 00 AA BB 12", &i), 0);
	assert_int_equal(i.protocols, T0 | T1);
	assert_int_equal(i.default_protocol, T1);
	assert_true(i.tck_ok);

	/* A SIM: T=0 plus T=15, which makes TCK mandatory. */
	assert_int_equal(
		parse_hex("3B 9F 95 80 1F C7 80 31 E0 73 FE 21 1B 63 3A 20 4E 83 00 90 00 90", &i),
		0);
	assert_int_equal(i.protocols, T0 | T15);
	assert_int_equal(i.default_protocol, T0);
	assert_int_equal(i.historical_len, 15);
	assert_true(i.has_tck && i.tck_ok);
}

static void test_specific_mode(void **state)
{
	(void)state;
	struct atr_info i;
	/* TA2 = 81: T=1 only, bit 8 set so it cannot switch. */
	assert_int_equal(parse_hex("3B 92 11 11 81 AA BB 02", &i), 0);
	assert_true(i.specific_mode);
	assert_int_equal(i.specific_protocol, T1);
	assert_false(i.can_change);
	assert_true(i.tck_ok);

	/* TA2 = 00: T=0, may change; only T=0 so no TCK. */
	assert_int_equal(parse_hex("3B 91 96 10 00 42", &i), 0);
	assert_true(i.specific_mode);
	assert_int_equal(i.specific_protocol, T0);
	assert_true(i.can_change);
	assert_int_equal(i.ta1, 0x96);
	assert_false(i.has_tck);
}

static void test_malformed(void **state)
{
	(void)state;
	struct atr_info i;
	static const char *const bad[] = {
		"",               /* empty */
		"3B",             /* no T0 */
		"3C 00",          /* bad TS */
		"3B 02 14",       /* a historical byte missing */
		"3B 80",          /* TD1 promised */
		"3B 8A 80",       /* TD2 promised */
		"3B F8 13 00",    /* TC1, TD1 missing */
		"3B 81 F1 11 22", /* TA2..TD2 promised, only two there */
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		if (parse_hex(bad[k], &i) != -1)
			fail_msg("ATR \"%s\" accepted", bad[k]);
	}
	uint8_t long_atr[40] = { 0x3B, 0x0F };
	assert_int_equal(atr_parse(long_atr, 34, &i), -1); /* over MAX_ATR_SIZE */
	assert_int_equal(atr_parse(long_atr, 17, &i), 0);  /* 15 historical zeros */
	assert_int_equal(atr_parse(NULL, 4, &i), -1);
	assert_int_equal(atr_parse(long_atr, 4, NULL), -1);

	/* Inverse convention TS is accepted. */
	assert_int_equal(parse_hex("3F 00", &i), 0);
	assert_int_equal(i.protocols, T0);
}

/* "3B 80 01 00" -> atr_check's verdict, the reason in why. */
static int check_hex(const char *s, struct atr_info *info, char *why, size_t why_len)
{
	uint8_t buf[64];
	size_t len = hex(s, buf);
	return atr_check(buf, len, info, why, why_len);
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

/* Whatever atr_check accepts, atr_parse reads the same way. */
static void expect_checked(const char *s)
{
	struct atr_info strict, lenient;
	char why[128] = "";
	if (check_hex(s, &strict, why, sizeof(why)) != 0)
		fail_msg("ATR \"%s\" refused: %s", s, why);
	assert_int_equal(parse_hex(s, &lenient), 0);
	assert_true(same_info(&strict, &lenient));
}

static void expect_refused(const char *s, const char *reason)
{
	char why[128] = "";
	if (check_hex(s, NULL, why, sizeof(why)) != -1)
		fail_msg("ATR \"%s\" accepted", s);
	if (!strstr(why, reason))
		fail_msg("ATR \"%s\": \"%s\", expected \"%s\"", s, why, reason);
}

static void test_check_accepts(void **state)
{
	(void)state;
	expect_checked("3B 02 14 50"); /* T=0, no TCK */
	expect_checked("3B 80 01 81"); /* T=1, TCK 81 */
	expect_checked("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4");
	expect_checked("3B 8A 80 01 00 31 C1 73 C8 40 00 00 90 00 90");
	expect_checked("3B 92 11 11 81 AA BB 02"); /* specific mode */
	expect_checked("3F 00");                   /* inverse convention */
	/* T=0 plus T=15 global bytes: TCK owed (ISO 7816-3 8.2.5), as SIMs send it. */
	expect_checked("3B 9F 95 80 1F C7 80 31 E0 73 FE 21 1B 63 3A 20 4E 83 00 90 00 90");

	struct atr_info i;
	assert_int_equal(check_hex("3B 82 81 00 AA BB 12", &i, NULL, 0), 0);
	assert_int_equal(i.protocols, T0 | T1);
	assert_int_equal(i.default_protocol, T1);
	assert_true(i.has_tck && i.tck_ok);
}

static void test_check_refuses(void **state)
{
	(void)state;
	expect_refused("3A 00", "TS");
	expect_refused("3B", "2 to 33 bytes");
	expect_refused("3B 80 01 00", "last byte should be 81");
	expect_refused("3B 03 01", "announce 5 bytes, the ATR has 3");
	expect_refused("3B 02 14 50 00", "announce 4 bytes"); /* a stray byte */
	expect_refused("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34", "(with TCK)");
	expect_refused("3B 9F 95 80 1F C7 80 31 E0 73 FE 21 1B 63 3A 20 4E 83 00 90 00",
		       "(with TCK)"); /* T=15 owes TCK too */
	expect_refused("3B 80", "run past the end");
	expect_refused("3B 8A 80", "run past the end");
	expect_refused("3B 80 02 82", "neither T=0 nor T=1");       /* T=2 only */
	expect_refused("3B 80 82 00 02", "first offered protocol"); /* T=2, then T=0 */
	/* nine TD bytes, each naming T=0 and announcing the next */
	expect_refused("3B 80 80 80 80 80 80 80 80 80 00", "too many TD bytes");
	expect_checked("3B 80 80 80 80 80 80 80 80 00"); /* eight are fine */

	uint8_t long_atr[40] = { 0x3B, 0x0F };
	char why[64] = "";
	assert_int_equal(atr_check(long_atr, 34, NULL, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "2 to 33 bytes"));
	assert_int_equal(atr_check(long_atr, 17, NULL, NULL, 0), 0); /* 15 historical zeros */
	assert_int_equal(atr_check(NULL, 4, NULL, NULL, 0), -1);
}

static void expect(const struct atr_info *i, uint32_t pref, long rv, uint32_t proto, bool pps)
{
	uint32_t chosen = 0xdead;
	bool need_pps = !pps;
	assert_int_equal(atr_choose_protocol(i, pref, &chosen, &need_pps), rv);
	if (rv != SCARD_S_SUCCESS)
		return;
	assert_int_equal(chosen, proto);
	assert_int_equal(need_pps, pps);
}

static void test_choose(void **state)
{
	(void)state;
	struct atr_info t0, t1, dual, dual_t1, spec;
	assert_int_equal(parse_hex("3B 02 14 50", &t0), 0);
	assert_int_equal(parse_hex("3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4", &t1),
			 0);
	assert_int_equal(parse_hex("3B 8A 80 01 00 31 C1 73 C8 40 00 00 90 00 90", &dual), 0);
	assert_int_equal(parse_hex("3B 82 81 00 AA BB 12", &dual_t1), 0);
	assert_int_equal(parse_hex("3B 92 11 11 81 AA BB 02", &spec), 0);

	expect(&t0, T0, SCARD_S_SUCCESS, T0, false);
	expect(&t0, T0 | T1, SCARD_S_SUCCESS, T0, false);
	expect(&t0, T1, SCARD_E_PROTO_MISMATCH, 0, false);
	expect(&t0, T1 | RAW, SCARD_S_SUCCESS, RAW, false);
	expect(&t0, RAW, SCARD_S_SUCCESS, RAW, false);
	expect(&t0, 0, SCARD_E_PROTO_MISMATCH, 0, false);
	expect(&t0, T15, SCARD_E_PROTO_MISMATCH, 0, false);

	expect(&t1, T0 | T1, SCARD_S_SUCCESS, T1, false);
	expect(&t1, T0, SCARD_E_PROTO_MISMATCH, 0, false);

	/* T=1 whenever both sides allow it, as pcscd chooses: a PPS away from a
	 * T=0 default. Only the default wanted: no PPS. */
	expect(&dual, T0 | T1, SCARD_S_SUCCESS, T1, true);
	expect(&dual, T0, SCARD_S_SUCCESS, T0, false);
	expect(&dual, T1, SCARD_S_SUCCESS, T1, true);
	expect(&dual, T1 | RAW, SCARD_S_SUCCESS, T1, true);
	expect(&dual_t1, T0, SCARD_S_SUCCESS, T0, true);
	expect(&dual_t1, T0 | T1, SCARD_S_SUCCESS, T1, false);

	/* Specific mode: that protocol or nothing. */
	expect(&spec, T1, SCARD_S_SUCCESS, T1, false);
	expect(&spec, T0 | T1, SCARD_S_SUCCESS, T1, false);
	expect(&spec, T0, SCARD_E_PROTO_MISMATCH, 0, false);
	expect(&spec, T0 | RAW, SCARD_E_PROTO_MISMATCH, 0, false);

	/* A negotiable card offering both where the default is not preferred
	 * and both others are: T=1 wins over T=0. */
	struct atr_info both = dual;
	both.default_protocol = T15;
	expect(&both, T0 | T1, SCARD_S_SUCCESS, T1, true);

	uint32_t chosen;
	bool pps;
	assert_int_equal(atr_choose_protocol(NULL, T0, &chosen, &pps), SCARD_E_INVALID_PARAMETER);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_t0_only),       cmocka_unit_test(test_t1_card),
		cmocka_unit_test(test_dual_protocol), cmocka_unit_test(test_specific_mode),
		cmocka_unit_test(test_malformed),     cmocka_unit_test(test_choose),
		cmocka_unit_test(test_check_accepts), cmocka_unit_test(test_check_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
