/* ifd-virtual's text formats: card files and the driver configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vcard.h"
#include "vconfig.h"

#ifndef DEMO_CARD
#error DEMO_CARD must name cards/demo.card
#endif

static struct vcard *parse(const char *text, char *err, size_t errlen)
{
	return vcard_parse(text, strlen(text), err, errlen);
}

/* Parses text, expecting failure with msg in the error. */
static void expect_error(const char *text, const char *msg)
{
	char err[256] = "";
	struct vcard *c = parse(text, err, sizeof(err));
	if (c || !strstr(err, msg))
		fail_msg("text %s: expected an error containing '%s', got '%s'", text, msg, err);
	vcard_free(c);
}

static unsigned send(struct vcard *c, const uint8_t *apdu, size_t len, uint8_t *out,
		     size_t *out_len)
{
	*out_len = vcard_transmit(c, VCARD_T1, apdu, len, out, VCARD_MAX_RESPONSE);
	assert_true(*out_len >= 2);
	return (unsigned)(out[*out_len - 2] << 8 | out[*out_len - 1]);
}

static void test_minimal_card(void **state)
{
	(void)state;
	char err[256];
	struct vcard *c = parse("", err, sizeof(err));
	assert_non_null(c);
	/* default ATR: both protocols */
	assert_int_equal(vcard_protocols(c), VCARD_PROTO_T0 | VCARD_PROTO_T1);
	vcard_free(c);
}

static void test_explicit_atr(void **state)
{
	(void)state;
	char err[256];
	struct vcard *c = parse("atr 3B 02 14 50   # T=0 only\n", err, sizeof(err));
	assert_non_null(c);
	size_t len;
	const uint8_t *atr = vcard_atr(c, &len);
	assert_int_equal(len, 4);
	assert_int_equal(atr[3], 0x50);
	assert_int_equal(vcard_protocols(c), VCARD_PROTO_T0);
	assert_int_equal(vcard_default_protocol(c), VCARD_T0);
	vcard_free(c);
	c = parse("atr 3B800181\n", err, sizeof(err)); /* compact hex, T=1 */
	assert_non_null(c);
	assert_int_equal(vcard_protocols(c), VCARD_PROTO_T1);
	assert_int_equal(vcard_default_protocol(c), VCARD_T1);
	vcard_free(c);
	c = parse("atr T=1\n", err, sizeof(err));
	assert_non_null(c);
	assert_int_equal(vcard_protocols(c), VCARD_PROTO_T1);
	vcard_free(c);
}

static void test_values_quoted_and_hex(void **state)
{
	(void)state;
	char err[256];
	struct vcard *c = parse("ef 3F00/0001 data \"a\\\"b\" 0D0A \"#x\"  # comment\n", err,
				sizeof(err));
	assert_non_null(c);
	uint8_t out[VCARD_MAX_RESPONSE];
	size_t n;
	const uint8_t sel[] = { 0x00, 0xA4, 0x00, 0x0C, 0x02, 0x00, 0x01 };
	assert_int_equal(send(c, sel, sizeof(sel), out, &n), 0x9000);
	const uint8_t rd[] = { 0x00, 0xB0, 0x00, 0x00, 0x00 };
	assert_int_equal(send(c, rd, sizeof(rd), out, &n), 0x9000);
	assert_int_equal(n - 2, 7);
	assert_memory_equal(out, "a\"b\r\n#x", 7);
	vcard_free(c);
}

static void test_size_pads_with_zeros(void **state)
{
	(void)state;
	char err[256];
	struct vcard *c = parse("ef 3F00/0001 size 4 data 01\n", err, sizeof(err));
	assert_non_null(c);
	uint8_t out[VCARD_MAX_RESPONSE];
	size_t n;
	const uint8_t sel[] = { 0x00, 0xA4, 0x00, 0x0C, 0x02, 0x00, 0x01 };
	send(c, sel, sizeof(sel), out, &n);
	const uint8_t rd[] = { 0x00, 0xB0, 0x00, 0x00, 0x00 };
	assert_int_equal(send(c, rd, sizeof(rd), out, &n), 0x9000);
	const uint8_t want[] = { 1, 0, 0, 0 };
	assert_int_equal(n - 2, 4);
	assert_memory_equal(out, want, 4);
	vcard_free(c);
}

static void test_errors_name_the_line(void **state)
{
	(void)state;
	expect_error("atr T=0\n\nbogus 1\n", "line 3: unknown keyword 'bogus'");
	expect_error("atr T=0\natr T=1\n", "line 2: atr given twice");
	expect_error("atr 3B 80 01 00\n", "last byte should be 81");
	expect_error("atr 3B 8\n", "odd number of digits");
	expect_error("atr T=2\n", "expected T=0");
	expect_error("atr 3B0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F2021\n",
		     "at most 33");
	expect_error("ef 5000/5001 data 00\n", "must start at the MF");
	expect_error("ef 3F00/5000/5001 data 00\n", "5000 is not a DF declared above");
	expect_error("ef 3F00/50 data 00\n", "4 hex digits");
	expect_error("ef 3F00 data 00\n", "the MF (3F00) always exists");
	expect_error("ef 3F00/3F00\n", "reserved");
	expect_error("ef 3F00/0001\nef 3F00/0001\n", "line 2: file 0001 already exists");
	expect_error("ef 3F00/0001 size 2 data 010203\n", "data is 3 bytes but size is 2");
	expect_error("ef 3F00/0001 size 40000\n", "size must be between 0 and 32767");
	expect_error("ef 3F00/0001 sfi 31\n", "sfi must be between 1 and 30");
	expect_error("ef 3F00/0001 sfi 1\nef 3F00/0002 sfi 1\n", "sfi 1 already used by 0001");
	expect_error("ef 3F00/0001 read pin 81\n", "pin 81 is not declared");
	expect_error("ef 3F00/0001 read sometimes\n", "access must be always, never or pin");
	expect_error("ef 3F00/0001 colour blue\n", "unknown or incomplete option 'colour'");
	expect_error("ef 3F00/0001 data\n", "data needs a value");
	expect_error("df 3F00/5000 name 00112233445566778899AABBCCDDEEFF00\n", "at most 16");
	expect_error("df 3F00/5000 flavour x\n", "unknown option 'flavour'");
	expect_error("pin 81\n", "usage: pin");
	expect_error("pin 8 \"1\"\n", "not one hex byte");
	expect_error("pin 81 \"1\"\npin 81 \"2\"\n", "line 2: pin 81 declared twice");
	expect_error("pin 81 \"1\" tries 16\n", "tries must be between 1 and 15");
	expect_error("pin 81 \"1\" tries 3 extra\n", "unexpected words");
	expect_error("ef 3F00/0001 data \"open\n", "unterminated quoted string");
	expect_error("ef 3F00/0001 data zz\n", "not hex bytes");
}

static void test_limits(void **state)
{
	(void)state;
	/* more than VCARD_MAX_FILES files */
	size_t cap = 40 * (VCARD_MAX_FILES + 2);
	char *text = malloc(cap);
	assert_non_null(text);
	text[0] = 0;
	size_t len = 0;
	for (int i = 1; i <= VCARD_MAX_FILES + 1; i++)
		len += (size_t)snprintf(text + len, cap - len, "ef 3F00/%04X\n", i);
	expect_error(text, "more than 256 files");
	free(text);
	/* NUL bytes */
	char err[128];
	const char nul[] = "atr T=0\n\0x\n";
	assert_null(vcard_parse(nul, sizeof(nul) - 1, err, sizeof(err)));
	assert_non_null(strstr(err, "NUL"));
}

static void test_builtin_matches_demo_file(void **state)
{
	(void)state;
	FILE *f = fopen(DEMO_CARD, "r");
	assert_non_null(f);
	char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	assert_string_equal(buf, vcard_builtin_text());
	char err[256];
	struct vcard *c = vcard_load(DEMO_CARD, err, sizeof(err));
	assert_non_null(c);
	vcard_free(c);
	c = vcard_builtin();
	assert_non_null(c);
	vcard_free(c);
}

static void test_load_errors(void **state)
{
	(void)state;
	char err[256];
	assert_null(vcard_load("/nonexistent/card", err, sizeof(err)));
	assert_non_null(strstr(err, "cannot open /nonexistent/card"));
}

/* ---- configuration ---- */

static void test_config_defaults(void **state)
{
	(void)state;
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	assert_int_equal(cfg.readers, 2);
	assert_null(cfg.control);
	assert_string_equal(cfg.reader[0].card, "builtin");
	assert_null(cfg.reader[1].card);
	vconfig_clear(&cfg);
}

static void test_config_parse(void **state)
{
	(void)state;
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	const char *text = "# comment\n"
			   "readers = 3\n"
			   "control = /run/x/ctl.sock   # trailing comment\n"
			   "control_mode = 0660\n"
			   "fast = yes\n"
			   "fast.2 = no\n"
			   "mute.1 = yes\n"
			   "delay.2 = 1500\n"
			   "atr_delay.1 = 250\n"
			   "card.1 = cards/a.card\n"
			   "card.2 = /abs/b.card\n"
			   "card.0 = builtin\n";
	char err[256];
	assert_int_equal(vconfig_parse(&cfg, text, strlen(text), "/etc/scardd", err, sizeof(err)),
			 0);
	assert_int_equal(cfg.readers, 3);
	assert_string_equal(cfg.control, "/run/x/ctl.sock");
	assert_int_equal(cfg.control_mode, 0660);
	assert_true(cfg.reader[0].fast);
	assert_true(cfg.reader[1].fast);
	assert_false(cfg.reader[2].fast);
	assert_true(cfg.reader[1].mute);
	assert_int_equal(cfg.reader[2].delay_ms, 1500);
	assert_int_equal(cfg.reader[1].delay_ms, 0);
	assert_int_equal(cfg.reader[1].atr_delay_ms, 250);
	assert_int_equal(cfg.reader[2].atr_delay_ms, 0);
	assert_string_equal(cfg.reader[0].card, "builtin");
	assert_string_equal(cfg.reader[1].card, "/etc/scardd/cards/a.card");
	assert_string_equal(cfg.reader[2].card, "/abs/b.card");
	vconfig_clear(&cfg);
}

static void test_config_no_cards_means_empty(void **state)
{
	(void)state;
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	const char *text = "readers = 1\n";
	char err[256];
	assert_int_equal(vconfig_parse(&cfg, text, strlen(text), "/", err, sizeof(err)), 0);
	assert_null(cfg.reader[0].card);
	vconfig_clear(&cfg);
}

static void expect_config_error(const char *text, const char *msg)
{
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	char err[256] = "";
	int rc = vconfig_parse(&cfg, text, strlen(text), "/", err, sizeof(err));
	if (rc == 0 || !strstr(err, msg))
		fail_msg("config %s: expected '%s', got '%s'", text, msg, err);
	vconfig_clear(&cfg);
}

static void test_config_errors(void **state)
{
	(void)state;
	expect_config_error("readers = 0\n", "line 1: readers must be 1 to 128");
	expect_config_error("readers = 129\n", "readers must be 1 to 128");
	expect_config_error("\nreaders two\n", "line 2: expected key = value");
	expect_config_error("control = relative.sock\n", "absolute");
	expect_config_error("control_mode = 999\n", "octal");
	expect_config_error("fast = maybe\n", "fast must be yes or no");
	expect_config_error("card.128 = builtin\n", "unknown key 'card.128'");
	expect_config_error("card.x = builtin\n", "unknown key");
	expect_config_error("colour = blue\n", "unknown key 'colour'");
	expect_config_error("delay.0 = 60001\n", "delay.0 must be 0 to 60000");
	expect_config_error("delay.0 = -1\n", "delay.0 must be 0 to 60000");
	expect_config_error("delay.0 =\n", "delay.0 must be 0 to 60000");
	expect_config_error("atr_delay.1 = 60001\n", "atr_delay.1 must be 0 to 60000");
	expect_config_error("atr_delay.1 = 5ms\n", "atr_delay.1 must be 0 to 60000");
	char long_path[200] = "control = /";
	memset(long_path + 11, 'a', 150);
	long_path[161] = 0;
	expect_config_error(long_path, "control path longer than");
}

static void test_config_load_relative_to_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/vconfig-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/virtual.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("readers = 1\ncard.0 = my.card\n", f);
	fclose(f);
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	char err[256];
	assert_int_equal(vconfig_load(&cfg, path, err, sizeof(err)), 0);
	char want[300];
	snprintf(want, sizeof(want), "%s/my.card", dir);
	assert_string_equal(cfg.reader[0].card, want);
	vconfig_clear(&cfg);
	unlink(path);
	rmdir(dir);
	vconfig_defaults(&cfg);
	assert_int_equal(vconfig_load(&cfg, path, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
	vconfig_clear(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_card),
		cmocka_unit_test(test_explicit_atr),
		cmocka_unit_test(test_values_quoted_and_hex),
		cmocka_unit_test(test_size_pads_with_zeros),
		cmocka_unit_test(test_errors_name_the_line),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_builtin_matches_demo_file),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_config_defaults),
		cmocka_unit_test(test_config_parse),
		cmocka_unit_test(test_config_no_cards_means_empty),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_config_load_relative_to_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
