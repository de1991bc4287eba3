/* reader.conf.d parsing: real files, stanzas, quoting, channel ids, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit_support.h"

#include "reader_conf.h"

/* Collected warnings, so tests can check what was reported. */
static char warnings[32][200];
static int n_warnings;

static void collect_warn(const char *source, int line, const char *msg)
{
	if (n_warnings < 32)
		snprintf(warnings[n_warnings], sizeof warnings[0], "%s:%d: %s", source, line, msg);
	n_warnings++;
}

static bool warned(const char *needle)
{
	for (int i = 0; i < n_warnings && i < 32; i++)
		if (strstr(warnings[i], needle))
			return true;
	return false;
}

static int parse(const char *text, struct reader_conf *conf)
{
	n_warnings = 0;
	return reader_conf_parse(text, strlen(text), "test.conf", conf, collect_warn);
}

/* Debian's /etc/reader.conf.d/vpcd, verbatim. */
static const char vpcd_conf[] = "FRIENDLYNAME \"Virtual PCD\"\n"
				"DEVICENAME   /dev/null:0x8C7B\n"
				"LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"
				"CHANNELID    0x8C7B\n";

static void test_vpcd_file(void **state)
{
	(void)state;
	struct reader_conf conf = { 0 };
	assert_int_equal(parse(vpcd_conf, &conf), 1);
	assert_int_equal(conf.n, 1);
	struct reader_conf_entry *e = &conf.entries[0];
	assert_string_equal(e->friendly_name, "Virtual PCD");
	assert_string_equal(e->device_name, "/dev/null:0x8C7B");
	assert_string_equal(e->lib_path, "/usr/lib/pcsc/drivers/serial/libifdvpcd.so");
	assert_true(e->has_channel_id);
	assert_int_equal(e->channel_id, 0x8C7B);
	assert_string_equal(e->source, "test.conf");
	assert_int_equal(e->line, 1);
	assert_int_equal(n_warnings, 0);
	reader_conf_free(&conf);
	assert_null(conf.entries);
	assert_int_equal(conf.n, 0);
}

static void test_multiple_stanzas_and_comments(void **state)
{
	(void)state;
	struct reader_conf conf = { 0 };
	const char *text = "# two readers\r\n"
			   "\r\n"
			   "FRIENDLYNAME\t\"Reader One\"   # trailing comment\r\n"
			   "LIBPATH /usr/lib/one.so\r\n"
			   "CHANNELID 42   \r\n"
			   "   # indented comment\n"
			   "friendlyname \"Reader #2 (with spaces)\"\n"
			   "\tDEVICENAME\t/dev/ttyS1\t\n"
			   "LibPath \"/opt/my drivers/two.so\"\n";
	assert_int_equal(parse(text, &conf), 2);
	assert_int_equal(conf.n, 2);
	assert_string_equal(conf.entries[0].friendly_name, "Reader One");
	assert_string_equal(conf.entries[0].lib_path, "/usr/lib/one.so");
	assert_null(conf.entries[0].device_name);
	assert_true(conf.entries[0].has_channel_id);
	assert_int_equal(conf.entries[0].channel_id, 42);
	assert_int_equal(conf.entries[0].line, 3);
	/* '#' inside quotes is text, not a comment. */
	assert_string_equal(conf.entries[1].friendly_name, "Reader #2 (with spaces)");
	assert_string_equal(conf.entries[1].device_name, "/dev/ttyS1");
	assert_string_equal(conf.entries[1].lib_path, "/opt/my drivers/two.so");
	assert_false(conf.entries[1].has_channel_id);
	assert_int_equal(conf.entries[1].line, 7);
	assert_int_equal(n_warnings, 0);
	reader_conf_free(&conf);
}

static void test_channel_ids(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		bool ok;
		uint32_t id;
	} cases[] = {
		{ "0", true, 0 },
		{ "0x0", true, 0 },
		{ "0X1f", true, 0x1f },
		{ "4294967295", true, 0xffffffffu },
		{ "0xFFFFFFFF", true, 0xffffffffu },
		{ "010", true, 10 },
		{ "4294967296", false, 0 },
		{ "0x100000000", false, 0 },
		{ "-1", false, 0 },
		{ "12abc", false, 0 },
		{ "0x", false, 0 },
		{ "0xG1", false, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[256];
		struct reader_conf conf = { 0 };
		snprintf(text, sizeof text, "FRIENDLYNAME R\nLIBPATH /l.so\nCHANNELID %s\n",
			 cases[i].value);
		int n = parse(text, &conf);
		if (cases[i].ok) {
			assert_int_equal(n, 1);
			assert_int_equal(conf.entries[0].channel_id, cases[i].id);
		} else {
			assert_int_equal(n, 0);
			assert_true(warned("bad CHANNELID"));
		}
		reader_conf_free(&conf);
	}
}

static void test_incomplete_stanzas(void **state)
{
	(void)state;
	struct reader_conf conf = { 0 };
	const char *text = "FRIENDLYNAME \"No lib\"\n"
			   "DEVICENAME /dev/a\n"
			   "FRIENDLYNAME \"No device\"\n"
			   "LIBPATH /b.so\n"
			   "FRIENDLYNAME \"Good\"\n"
			   "LIBPATH /c.so\n"
			   "DEVICENAME /dev/c\n"
			   "LIBPATH /orphan.so\n";
	assert_int_equal(parse(text, &conf), 1);
	assert_string_equal(conf.entries[0].friendly_name, "Good");
	assert_string_equal(conf.entries[0].lib_path, "/c.so");
	assert_true(warned("test.conf:1: incomplete reader stanza (no LIBPATH)"));
	assert_true(warned("test.conf:3: incomplete reader stanza (no DEVICENAME or CHANNELID)"));
	assert_true(warned("test.conf:8: incomplete reader stanza (no FRIENDLYNAME)"));
	assert_int_equal(n_warnings, 3);
	reader_conf_free(&conf);
}

static void test_name_last_order(void **state)
{
	(void)state;
	struct reader_conf conf = { 0 };
	/* Keys in another order still pair up: a repeated key starts the next reader. */
	const char *text = "LIBPATH /a.so\nDEVICENAME /dev/a\nFRIENDLYNAME \"A\"\n"
			   "LIBPATH /b.so\nDEVICENAME /dev/b\nFRIENDLYNAME \"B\"\n";
	assert_int_equal(parse(text, &conf), 2);
	assert_string_equal(conf.entries[0].friendly_name, "A");
	assert_string_equal(conf.entries[0].device_name, "/dev/a");
	assert_string_equal(conf.entries[1].friendly_name, "B");
	assert_string_equal(conf.entries[1].lib_path, "/b.so");
	assert_int_equal(n_warnings, 0);
	reader_conf_free(&conf);
}

static void test_bad_values_spoil_stanza(void **state)
{
	(void)state;
	struct reader_conf conf = { 0 };
	/* The second stanza's name is broken: its DEVICENAME must not be given
	 * to the first reader. */
	const char *text = "FRIENDLYNAME \"First\"\nLIBPATH /a.so\nCHANNELID 1\n"
			   "FRIENDLYNAME \"Broken\n"
			   "DEVICENAME /dev/b\nLIBPATH /b.so\n"
			   "FRIENDLYNAME \"Third\"\nLIBPATH /c.so extra words\nCHANNELID 3\n"
			   "FRIENDLYNAME \"Fourth\"\nLIBPATH /d.so\nDEVICENAME\nCHANNELID 4\n"
			   "FRIENDLYNAME \"\"\nLIBPATH /e.so\nCHANNELID 5\n";
	assert_int_equal(parse(text, &conf), 1);
	assert_string_equal(conf.entries[0].friendly_name, "First");
	assert_null(conf.entries[0].device_name);
	assert_true(warned(":4: FRIENDLYNAME: unterminated quote"));
	assert_true(warned(":8: LIBPATH: unexpected text after the value"));
	assert_true(warned(":12: DEVICENAME: missing value"));
	assert_true(warned(":14: FRIENDLYNAME: empty value"));
	assert_true(warned("reader stanza with errors skipped"));
	reader_conf_free(&conf);
}

static void test_unknown_keys_and_long_values(void **state)
{
	(void)state;
	struct reader_conf conf = { 0 };
	size_t big = 5000;
	char *text = malloc(big + 200);
	assert_non_null(text);
	int n = snprintf(text, 200,
			 "FRIENDLYNAME \"R\"\nLIBPATH /r.so\nCHANNELID 7\nCOLOR blue\n"
			 "DEVICENAME ");
	memset(text + n, 'x', big);
	strcpy(text + n + big, "\n");
	assert_int_equal(parse(text, &conf), 0);
	assert_true(warned("unknown key \"COLOR\" ignored"));
	assert_true(warned("value too long"));
	free(text);
	reader_conf_free(&conf);

	/* Exactly 4096 bytes is still accepted. */
	text = malloc(4096 + 100);
	assert_non_null(text);
	n = snprintf(text, 100, "FRIENDLYNAME R\nLIBPATH /r.so\nDEVICENAME ");
	memset(text + n, 'y', 4096);
	strcpy(text + n + 4096, "\n");
	assert_int_equal(parse(text, &conf), 1);
	assert_int_equal(strlen(conf.entries[0].device_name), 4096);
	free(text);
	reader_conf_free(&conf);
}

static void test_garbage(void **state)
{
	(void)state;
	struct reader_conf conf = { 0 };
	/* NUL bytes, control characters, no final newline, binary noise. */
	static const char junk[] =
		"FRIENDLYNAME \"A\0B\"\nLIBPATH /x\x01y.so\n\xff\xfe\x80 \x7f\n"
		"\"\"\"\n#\n\t\t\n FRIENDLYNAME \"ok\" \nLIBPATH /ok.so\nCHANNELID 0x1";
	n_warnings = 0;
	int n = reader_conf_parse(junk, sizeof junk - 1, "junk", &conf, collect_warn);
	assert_int_equal(n, 1);
	assert_string_equal(conf.entries[0].friendly_name, "ok");
	assert_int_equal(conf.entries[0].channel_id, 1);
	assert_true(n_warnings >= 3);
	reader_conf_free(&conf);

	/* Empty input and a NULL warn callback. */
	assert_int_equal(reader_conf_parse("", 0, "e", &conf, NULL), 0);
	assert_int_equal(reader_conf_parse("LIBPATH", 7, NULL, &conf, NULL), 0);
	assert_int_equal(conf.n, 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_load_directory(void **state)
{
	(void)state;
	char dir[] = "/tmp/scardd-rconf-XXXXXX";
	char path[256];
	assert_non_null(mkdtemp(dir));

	snprintf(path, sizeof path, "%s/20-second", dir);
	write_file(path, "FRIENDLYNAME \"Second\"\nLIBPATH /2.so\nCHANNELID 2\n");
	snprintf(path, sizeof path, "%s/10-first", dir);
	write_file(path, vpcd_conf);
	snprintf(path, sizeof path, "%s/.hidden", dir);
	write_file(path, "FRIENDLYNAME \"Hidden\"\nLIBPATH /h.so\nCHANNELID 9\n");
	snprintf(path, sizeof path, "%s/30-backup~", dir);
	write_file(path, "FRIENDLYNAME \"Backup\"\nLIBPATH /b.so\nCHANNELID 9\n");
	snprintf(path, sizeof path, "%s/40-subdir", dir);
	assert_int_equal(mkdir(path, 0700), 0);

	struct reader_conf conf = { 0 };
	n_warnings = 0;
	assert_int_equal(reader_conf_load(dir, &conf, collect_warn), 2);
	assert_int_equal(conf.n, 2);
	assert_string_equal(conf.entries[0].friendly_name, "Virtual PCD");
	assert_string_equal(conf.entries[1].friendly_name, "Second");
	snprintf(path, sizeof path, "%s/20-second", dir);
	assert_string_equal(conf.entries[1].source, path);

	/* A single file works too, and appends. */
	assert_int_equal(reader_conf_load(path, &conf, collect_warn), 1);
	assert_int_equal(conf.n, 3);
	reader_conf_free(&conf);

	assert_int_equal(reader_conf_load("/nonexistent/scardd", &conf, collect_warn), -1);

	/* Clean up. */
	static const char *const names[] = { "20-second", "10-first", ".hidden", "30-backup~" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	snprintf(path, sizeof path, "%s/40-subdir", dir);
	rmdir(path);
	rmdir(dir);
}

static void test_real_system_dir(void **state)
{
	(void)state;
	struct stat st;
	if (stat("/etc/reader.conf.d/vpcd", &st) != 0)
		skip_because(
			"missing-peer: /etc/reader.conf.d/vpcd (vsmartcard-vpcd; scripts/install-deps --tests "
			"installs it)");
	struct reader_conf conf = { 0 };
	n_warnings = 0;
	assert_true(reader_conf_load("/etc/reader.conf.d", &conf, collect_warn) >= 1);
	bool found = false;
	for (size_t i = 0; i < conf.n; i++)
		found |= strcmp(conf.entries[i].friendly_name, "Virtual PCD") == 0;
	assert_true(found);
	reader_conf_free(&conf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vpcd_file),
		cmocka_unit_test(test_multiple_stanzas_and_comments),
		cmocka_unit_test(test_channel_ids),
		cmocka_unit_test(test_incomplete_stanzas),
		cmocka_unit_test(test_name_last_order),
		cmocka_unit_test(test_bad_values_spoil_stanza),
		cmocka_unit_test(test_unknown_keys_and_long_values),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_load_directory),
		cmocka_unit_test(test_real_system_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
