/* ifd-virtual's card emulation: every command and status word, over T=0 and T=1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vcard.h"

static const char card_text[] =
	"atr T=0,T=1\n"
	"pin 81 \"1234\" tries 3\n"
	"pin 01 31 32 33 34 35 36 tries 2\n"
	"ef 3F00/2F00 sfi 30 data 61 0C 4F 07 F0 73 63 61 72 64 64 50 01 64\n"
	"df 3F00/5000 name F0 73 63 61 72 64 64\n"
	"ef 3F00/5000/5001 sfi 1 data \"Hello from ifd-virtual\"\n"
	"ef 3F00/5000/5002 sfi 2 size 32 read pin 81 write pin 81 data \"secret\"\n"
	"ef 3F00/5000/5003 size 8 read always write never data \"ro\"\n"
	"df 3F00/5000/6000 name F0 73 63 61 72 64 64 02\n"
	"ef 3F00/5000/6000/6001 data 01 02 03\n"
	"ef 3F00/5000/5004 size 300\n"
	"ef 3F00/5000/5005 size 0\n";

static struct vcard *card;

static int setup(void **state)
{
	(void)state;
	char err[256];
	card = vcard_parse(card_text, strlen(card_text), err, sizeof(err));
	if (!card)
		fprintf(stderr, "parse: %s\n", err);
	return card ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	vcard_free(card);
	card = NULL;
	return 0;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int half = -1;
	for (; *s; s++) {
		int v;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else
			continue;
		if (half < 0) {
			half = v;
		} else {
			assert_true(n < cap);
			out[n++] = (uint8_t)(half << 4 | v);
			half = -1;
		}
	}
	return n;
}

static uint8_t resp[VCARD_MAX_RESPONSE];
static size_t resp_len;

/* Sends hex; returns the SW; resp/resp_len hold the whole answer. */
static unsigned xfer(int proto, const char *hex)
{
	uint8_t apdu[70000];
	size_t n = unhex(hex, apdu, sizeof(apdu));
	resp_len = vcard_transmit(card, proto, apdu, n, resp, sizeof(resp));
	assert_true(resp_len >= 2);
	return (unsigned)(resp[resp_len - 2] << 8 | resp[resp_len - 1]);
}

static void assert_data(const char *hex)
{
	uint8_t want[4096];
	size_t n = unhex(hex, want, sizeof(want));
	assert_int_equal(resp_len - 2, n);
	assert_memory_equal(resp, want, n);
}

static void assert_text(const char *text)
{
	size_t n = strlen(text);
	assert_int_equal(resp_len - 2, n);
	assert_memory_equal(resp, text, n);
}

#define T0 VCARD_T0
#define T1 VCARD_T1

/* ---- ATR ---- */

static void test_atr_builtin_protocols(void **state)
{
	(void)state;
	size_t len;
	const uint8_t *atr = vcard_atr(card, &len);
	unsigned protos;
	int first;
	assert_true(vcard_atr_check(atr, len, &protos, &first, NULL, 0));
	assert_int_equal(protos, VCARD_PROTO_T0 | VCARD_PROTO_T1);
	assert_int_equal(first, 0);
	assert_int_equal(vcard_protocols(card), VCARD_PROTO_T0 | VCARD_PROTO_T1);

	uint8_t buf[40];
	size_t n = vcard_atr_builtin(VCARD_PROTO_T0, buf, sizeof(buf));
	assert_true(vcard_atr_check(buf, n, &protos, &first, NULL, 0));
	assert_int_equal(protos, VCARD_PROTO_T0);
	n = vcard_atr_builtin(VCARD_PROTO_T1, buf, sizeof(buf));
	assert_true(vcard_atr_check(buf, n, &protos, &first, NULL, 0));
	assert_int_equal(protos, VCARD_PROTO_T1);
	assert_int_equal(first, 1);
}

/* ---- APDU shape, CLA, INS ---- */

static void test_malformed_lengths(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4"), 0x6700);                 /* < 4 bytes */
	assert_int_equal(xfer(T1, "00A4000002 3F"), 0x6700);        /* Lc 2, 1 byte */
	assert_int_equal(xfer(T1, "00A4000002 3F0000 00"), 0x6700); /* 2 extra bytes */
	assert_int_equal(xfer(T1, "00B0000000 01"), 0x6700);        /* 00 then 1 byte: no case */
	assert_int_equal(xfer(T0, "00B00000 000010"), 0x6700);      /* extended on T=0 */
}

static void test_class_errors(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "80A40000023F00"), 0x6E00);
	assert_int_equal(xfer(T1, "FFCA000000"), 0x6E00);
	assert_int_equal(xfer(T1, "01A40000023F00"), 0x6881); /* logical channel 1 */
	assert_int_equal(xfer(T1, "41A40000023F00"), 0x6881); /* channel 5 */
	assert_int_equal(xfer(T1, "0CA40000023F00"), 0x6882); /* secure messaging */
	assert_int_equal(xfer(T1, "10A40000023F00"), 0x6884); /* chaining */
}

static void test_unknown_instruction(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00CA9F7F00"), 0x6D00);
	assert_int_equal(xfer(T0, "00E0000000"), 0x6D00);
	assert_int_equal(xfer(T1, "00B1000000"), 0x6D00); /* odd READ BINARY not offered */
}

/* ---- SELECT ---- */

static void test_select_fid_no_response(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4000C023F00"), 0x9000);
	assert_int_equal(resp_len, 2);
	assert_int_equal(xfer(T1, "00A4000C025000"), 0x9000);
	assert_int_equal(xfer(T1, "00A4000C025001"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000005"), 0x9000);
	assert_text("Hello");
	/* sibling EF from an EF's DF, parent DF by FID, MF */
	assert_int_equal(xfer(T1, "00A4000C025003"), 0x9000);
	assert_int_equal(xfer(T1, "00A4000C025000"), 0x9000);
	assert_int_equal(xfer(T1, "00A4000C022F00"), 0x9000); /* child of the parent (MF) */
	assert_int_equal(xfer(T1, "00A4000C029999"), 0x6A82);
	assert_int_equal(xfer(T1, "00A4000C0150"), 0x6700);
}

static void test_select_fcp_fci(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4000C025000"), 0x9000);
	assert_int_equal(xfer(T1, "00A40004025001 00"), 0x9000);
	/* FCP: size 22, transparent EF, FID 5001, SFI 1, LCS 05 */
	assert_data("6211 8002 0016 820101 83025001 880108 8A0105");
	assert_int_equal(xfer(T1, "00A4000002 5000 00"), 0x9000);
	assert_data("6F13 820138 83025000 8407F0736361726464 8A0105");
	assert_int_equal(xfer(T1, "00A4000802 5000 00"), 0x9000);
	assert_data("6400");
	/* T=1 without Le: no data, even with P2 asking for FCI */
	assert_int_equal(xfer(T1, "00A4000002 5000"), 0x9000);
	assert_int_equal(resp_len, 2);
	/* unsupported P2 (next occurrence) */
	assert_int_equal(xfer(T1, "00A4000202 5000"), 0x6A86);
	assert_int_equal(xfer(T1, "00A4050C02 5000"), 0x6A86);
}

static void test_select_by_child_kind(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4000C023F00"), 0x9000);
	assert_int_equal(xfer(T1, "00A4010C025000"), 0x9000); /* child DF */
	assert_int_equal(xfer(T1, "00A4010C025001"), 0x6A82); /* an EF is not a DF */
	assert_int_equal(xfer(T1, "00A4020C025001"), 0x9000); /* EF under current DF */
	assert_int_equal(xfer(T1, "00A4020C026000"), 0x6A82); /* a DF is not an EF */
	assert_int_equal(xfer(T1, "00A4030C"), 0x9000);       /* parent of the EF's DF */
	assert_int_equal(xfer(T1, "00B0000001"), 0x6986);     /* DF selected: no current EF */
	assert_int_equal(xfer(T1, "00A4030C00"), 0x9000);     /* Le 00 accepted, P2 0C */
	assert_int_equal(xfer(T1, "00A4030C023F00"), 0x6700); /* parent takes no data */
}

static void test_select_aid(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4040C07F0736361726464"), 0x9000);
	assert_int_equal(xfer(T1, "00A4040C025001"), 0x6A82);
	/* prefix match selects the first DF whose name starts with the bytes */
	assert_int_equal(xfer(T1, "00A40400 05F073636172 00"), 0x9000);
	assert_data("6F13 820138 83025000 8407F0736361726464 8A0105");
	assert_int_equal(xfer(T1, "00A40400 08F073636172646402 00"), 0x9000);
	assert_data("6F14 820138 83026000 8408F073636172646402 8A0105");
	assert_int_equal(xfer(T1, "00A4040C08F073636172646403"), 0x6A82);
	assert_int_equal(xfer(T1, "00A4040C11 000102030405060708090A0B0C0D0E0F10"), 0x6700);
	assert_int_equal(xfer(T1, "00A4040C"), 0x9000); /* no name: the MF */
}

static void test_select_path(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4080C04 5000 5001"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000002"), 0x9000);
	assert_text("He");
	assert_int_equal(xfer(T1, "00A4080C06 3F00 5000 6000"), 0x9000);
	assert_int_equal(xfer(T1, "00A4090C02 6001"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000003"), 0x9000);
	assert_data("010203");
	assert_int_equal(xfer(T1, "00A4080C04 5001 5000"), 0x6A82); /* EF in the middle */
	assert_int_equal(xfer(T1, "00A4080C03 500050"), 0x6700);    /* odd length */
	assert_int_equal(xfer(T1, "00A4080C"), 0x6700);             /* empty path */
	assert_int_equal(xfer(T1, "00A4070C025000"), 0x6A86);       /* unknown P1 */
}

/* ---- READ BINARY ---- */

static void test_read_binary(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4080C04 5000 5001"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000604"), 0x9000);
	assert_text("from");
	/* Le 00: the rest, without a warning */
	assert_int_equal(xfer(T1, "00B0001000"), 0x9000);
	assert_text("irtual");
	/* explicit Le past the end: what is there and 6282 */
	assert_int_equal(xfer(T1, "00B0001020"), 0x6282);
	assert_text("irtual");
	/* offset past the end */
	assert_int_equal(xfer(T1, "00B0001601"), 0x6B00);
	assert_int_equal(xfer(T1, "00B0010001"), 0x6B00);
	/* no Le, or data */
	assert_int_equal(xfer(T1, "00B00000"), 0x6700);
	assert_int_equal(xfer(T1, "00B0000001AA"), 0x6700);
	/* an empty file */
	assert_int_equal(xfer(T1, "00A4020C025005"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000000"), 0x6282);
	assert_int_equal(resp_len, 2);
}

static void test_read_binary_sfi(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4000C025000"), 0x9000);
	assert_int_equal(xfer(T1, "00B0810005"), 0x9000); /* SFI 1, offset 0 */
	assert_text("Hello");
	/* the SFI file became current */
	assert_int_equal(xfer(T1, "00B0000604"), 0x9000);
	assert_text("from");
	assert_int_equal(xfer(T1, "00B0850001"), 0x6A82); /* no SFI 5 here */
	assert_int_equal(xfer(T1, "00B0A10001"), 0x6A86); /* bits 7-6 must be 0 */
	assert_int_equal(xfer(T1, "00B0820001"), 0x6982); /* SFI 2 wants the PIN */
}

static void test_read_no_current_ef(void **state)
{
	(void)state;
	vcard_reset(card);
	assert_int_equal(xfer(T1, "00B0000001"), 0x6986);
	assert_int_equal(xfer(T1, "00D6000001AA"), 0x6986);
}

static void test_read_extended(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4080C04 5000 5004"), 0x9000);
	/* extended Le 0x012C = 300 */
	assert_int_equal(xfer(T1, "00B00000 00012C"), 0x9000);
	assert_int_equal(resp_len, 302);
	/* short Le 00 gives 256 of the 300 */
	assert_int_equal(xfer(T1, "00B0000000"), 0x9000);
	assert_int_equal(resp_len, 258);
}

/* ---- security: VERIFY and access conditions ---- */

static void test_verify_and_access(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4080C04 5000 5002"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000006"), 0x6982);
	assert_int_equal(xfer(T1, "00D6000001AA"), 0x6982);
	assert_int_equal(xfer(T1, "00200081"), 0x63C3); /* tries left */
	assert_int_equal(xfer(T1, "002000810431323334"), 0x9000);
	assert_int_equal(xfer(T1, "00200081"), 0x9000); /* already verified */
	assert_int_equal(xfer(T1, "00B0000006"), 0x9000);
	assert_text("secret");
	assert_int_equal(xfer(T1, "00D6000003 414243"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000006"), 0x9000);
	assert_text("ABCret");
	/* reset drops the security state, keeps the content */
	vcard_reset(card);
	assert_int_equal(xfer(T1, "00A4080C04 5000 5002"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000006"), 0x6982);
	assert_int_equal(xfer(T1, "002000810431323334"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000006"), 0x9000);
	assert_text("ABCret");
	/* P1 FF: drop the verified state */
	assert_int_equal(xfer(T1, "0020FF81"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000006"), 0x6982);
}

static void test_verify_retry_counter(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "002000810439393939"), 0x63C2);
	assert_int_equal(xfer(T1, "00200081"), 0x63C2);
	assert_int_equal(xfer(T1, "0020008103313233"), 0x63C1); /* wrong length is wrong */
	/* a good PIN resets the counter */
	assert_int_equal(xfer(T1, "002000810431323334"), 0x9000);
	assert_int_equal(xfer(T1, "0020FF81"), 0x9000);
	assert_int_equal(xfer(T1, "00200081"), 0x63C3);
	assert_int_equal(xfer(T1, "002000810430303030"), 0x63C2);
	assert_int_equal(xfer(T1, "002000810430303030"), 0x63C1);
	assert_int_equal(xfer(T1, "002000810430303030"), 0x63C0);
	/* blocked: even the right PIN, even the status query, and across resets */
	assert_int_equal(xfer(T1, "002000810431323334"), 0x6983);
	assert_int_equal(xfer(T1, "00200081"), 0x6983);
	vcard_reset(card);
	assert_int_equal(xfer(T1, "002000810431323334"), 0x6983);
	/* the other PIN is independent */
	assert_int_equal(xfer(T1, "0020000106313233343536"), 0x9000);
}

static void test_verify_errors(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "002000820431323334"), 0x6A88); /* no such PIN */
	assert_int_equal(xfer(T1, "002001810431323334"), 0x6A86); /* P1 */
	assert_int_equal(xfer(T1, "0020FF810131"), 0x6700);       /* FF takes no data */
	/* over-long PIN */
	char apdu[2 * (5 + 65) + 1];
	strcpy(apdu, "0020008141");
	for (int i = 0; i < 65; i++)
		strcat(apdu, "31");
	assert_int_equal(xfer(T1, apdu), 0x6700);
}

/* ---- UPDATE BINARY ---- */

static void test_update_binary(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "00A4080C04 5000 5001"), 0x9000);
	assert_int_equal(xfer(T1, "00D6000005 4A656C6C79"), 0x9000);
	assert_int_equal(xfer(T1, "00B0000005"), 0x9000);
	assert_text("Jelly");
	assert_int_equal(xfer(T1, "00D6001502 4142"), 0x6A84); /* past the end */
	assert_int_equal(xfer(T1, "00D6001601 41"), 0x6B00);   /* offset outside */
	assert_int_equal(xfer(T1, "00D60000"), 0x6700);        /* no data */
	assert_int_equal(xfer(T1, "00A4020C025003"), 0x9000);
	assert_int_equal(xfer(T1, "00D6000001 41"), 0x6982); /* write never */
	assert_int_equal(xfer(T1, "00D6810001 41"), 0x9000); /* SFI 1 */
	assert_int_equal(xfer(T1, "00B0810005"), 0x9000);
	assert_text("Aelly");
}

/* ---- GET CHALLENGE ---- */

static void test_get_challenge(void **state)
{
	(void)state;
	assert_int_equal(xfer(T1, "0084000008"), 0x9000);
	assert_int_equal(resp_len, 10);
	uint8_t first[8];
	memcpy(first, resp, 8);
	assert_int_equal(xfer(T1, "0084000008"), 0x9000);
	assert_memory_not_equal(first, resp, 8);
	assert_int_equal(xfer(T0, "0084000010"), 0x9000);
	assert_int_equal(resp_len, 18);
	assert_int_equal(xfer(T1, "0084000000"), 0x9000); /* Le 00 = 256 */
	assert_int_equal(resp_len, 258);
	assert_int_equal(xfer(T1, "00840000"), 0x6700);
	assert_int_equal(xfer(T1, "008400000101 08"), 0x6700);
	assert_int_equal(xfer(T1, "0084010008"), 0x6A86);
	assert_int_equal(xfer(T1, "00840000 000200"), 0x6700); /* 512 > 256 */
}

/* ---- T=0: 61xx, 6Cxx, GET RESPONSE ---- */

static void test_t0_case4_get_response(void **state)
{
	(void)state;
	/* SELECT with FCI over T=0: 61 15, then GET RESPONSE */
	assert_int_equal(xfer(T0, "00A4040007F0736361726464"), 0x6115);
	assert_int_equal(resp_len, 2);
	assert_int_equal(xfer(T0, "00C0000015"), 0x9000);
	assert_data("6F13 820138 83025000 8407F0736361726464 8A0105");
	/* nothing left */
	assert_int_equal(xfer(T0, "00C0000001"), 0x6985);
	/* in parts */
	assert_int_equal(xfer(T0, "00A4040007F0736361726464"), 0x6115);
	assert_int_equal(xfer(T0, "00C0000005"), 0x6110);
	assert_data("6F13820138");
	assert_int_equal(xfer(T0, "00C0000020"), 0x6C10); /* too much: exact length */
	assert_int_equal(xfer(T0, "00C0000010"), 0x9000);
	assert_data("83025000 8407F0736361726464 8A0105");
	/* GET RESPONSE errors */
	assert_int_equal(xfer(T0, "00A4040007F0736361726464"), 0x6115);
	assert_int_equal(xfer(T0, "00C0010015"), 0x6B00);
	assert_int_equal(xfer(T0, "00A4040007F0736361726464"), 0x6115);
	assert_int_equal(xfer(T0, "00C00000"), 0x6700);
	/* any other command drops the pending answer */
	assert_int_equal(xfer(T0, "00A4040007F0736361726464"), 0x6115);
	assert_int_equal(xfer(T0, "00A4000C025001"), 0x9000);
	assert_int_equal(xfer(T0, "00C0000015"), 0x6985);
}

static void test_t0_case2_wrong_le(void **state)
{
	(void)state;
	assert_int_equal(xfer(T0, "00A4080C04 5000 5001"), 0x9000);
	assert_int_equal(xfer(T0, "00B0000000"), 0x6C16); /* P3 00 means 256; file has 22 */
	assert_int_equal(resp_len, 2);
	assert_int_equal(xfer(T0, "00B0000016"), 0x9000);
	assert_text("Hello from ifd-virtual");
	assert_int_equal(xfer(T0, "00B0001008"), 0x6C06); /* 6 bytes from offset 16 */
	assert_int_equal(xfer(T0, "00B0001006"), 0x9000);
	assert_text("irtual");
	assert_int_equal(xfer(T0, "00B0000005"), 0x9000);
	assert_text("Hello");
}

static void test_t0_select_without_le(void **state)
{
	(void)state;
	/* case 3 on T=0 with FCI asked for: 61xx */
	assert_int_equal(xfer(T0, "00A4000002 3F00"), 0x610C);
	assert_int_equal(xfer(T0, "00C000000C"), 0x9000);
	assert_data("6F0A 820138 83023F00 8A0105"); /* the MF */
	/* case 2 SELECT (MF) with a Le that does not fit */
	assert_int_equal(xfer(T0, "00A4000000"), 0x6C0C);
}

static void test_t1_more_than_le(void **state)
{
	(void)state;
	/* T=1 with Le smaller than the FCI: first part, rest via 61xx */
	assert_int_equal(xfer(T1, "00A40400 07F0736361726464 05"), 0x6110);
	assert_data("6F13820138");
	assert_int_equal(xfer(T1, "00C0000000"), 0x9000);
	assert_data("83025000 8407F0736361726464 8A0105");
	assert_int_equal(xfer(T1, "00C0000000"), 0x6985);
}

static void test_reset_and_buffer(void **state)
{
	(void)state;
	/* the response does not fit the caller's buffer: 0, nothing written */
	uint8_t apdu[] = { 0x00, 0x84, 0x00, 0x00, 0x10 };
	uint8_t small[8];
	assert_int_equal(vcard_transmit(card, T1, apdu, sizeof(apdu), small, sizeof(small)), 0);
	/* reset clears pending data */
	assert_int_equal(xfer(T0, "00A4040007F0736361726464"), 0x6115);
	vcard_reset(card);
	assert_int_equal(xfer(T0, "00C0000015"), 0x6985);
}

static void test_sw_text(void **state)
{
	(void)state;
	assert_string_equal(vcard_sw_text(0x9000), "success");
	assert_non_null(strstr(vcard_sw_text(0x6A82), "not found"));
	assert_non_null(strstr(vcard_sw_text(0x63C2), "tries left"));
	assert_non_null(strstr(vcard_sw_text(0x6115), "GET RESPONSE"));
	assert_non_null(strstr(vcard_sw_text(0x6C10), "Le"));
	assert_non_null(strstr(vcard_sw_text(0x6983), "blocked"));
	assert_string_equal(vcard_sw_text(0x1234), "unknown status word");
}

#define CT(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		CT(test_atr_builtin_protocols),
		CT(test_malformed_lengths),
		CT(test_class_errors),
		CT(test_unknown_instruction),
		CT(test_select_fid_no_response),
		CT(test_select_fcp_fci),
		CT(test_select_by_child_kind),
		CT(test_select_aid),
		CT(test_select_path),
		CT(test_read_binary),
		CT(test_read_binary_sfi),
		CT(test_read_no_current_ef),
		CT(test_read_extended),
		CT(test_verify_and_access),
		CT(test_verify_retry_counter),
		CT(test_verify_errors),
		CT(test_update_binary),
		CT(test_get_challenge),
		CT(test_t0_case4_get_response),
		CT(test_t0_case2_wrong_le),
		CT(test_t0_select_without_le),
		CT(test_t1_more_than_le),
		CT(test_reset_and_buffer),
		CT(test_sw_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
