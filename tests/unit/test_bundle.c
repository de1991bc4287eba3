/* Info.plist parsing and bundle directory scans. */
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

#include "bundle.h"
#include "config.h"

#define PLIST_HEAD \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" \
	"<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" " \
	"\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n" \
	"<plist version=\"1.0\">\n<dict>\n"
#define PLIST_TAIL "</dict>\n</plist>\n"

/* Our own sample in the shape of a USB reader driver's Info.plist. */
static const char sample[] = PLIST_HEAD
	"\t<key>CFBundleDevelopmentRegion</key>\n\t<string>English</string>\n"
	"\t<key>CFBundleExecutable</key>\n\t<string>libsample.so.1</string>\n"
	"\t<key>CFBundleName</key>\n\t<string>SampleDriver</string>\n"
	"\t<key>ifdCapabilities</key>\n\t<string>0x00000001</string>\n"
	"\t<!-- a comment between keys -->\n"
	"\t<key>ifdOptions</key>\n\t<dict><key>nested</key><string>x</string></dict>\n"
	"\t<key>ifdVendorID</key>\n\t<array>\n"
	"\t\t<string>0x08E6</string>\n\t\t<string>0x04e6</string>\n\t\t<string>0x1050</string>\n"
	"\t</array>\n"
	"\t<key>ifdProductID</key>\n\t<array>\n"
	"\t\t<string>0x3437</string>\n\t\t<string>0x5116</string>\n\t\t<string>0x0407</string>\n"
	"\t</array>\n"
	"\t<key>ifdFriendlyName</key>\n\t<array>\n"
	"\t\t<string>Gemalto PC Twin Reader</string>\n"
	"\t\t<string>SCM Microsystems &amp; Co. SCR 3310</string>\n"
	"\t\t<string>Yubico YubiKey OTP+FIDO+CCID</string>\n"
	"\t</array>\n"
	"\t<key>Copyright</key>\n\t<string>sample text</string>\n" PLIST_TAIL;

static char err[256];

static int parse(const char *xml, struct bundle *b)
{
	err[0] = '\0';
	return bundle_parse_plist(xml, strlen(xml), "/drv/sample.bundle", b, err, sizeof err);
}

#ifdef HAVE_EXPAT

static void test_sample_arrays(void **state)
{
	(void)state;
	struct bundle b;
	assert_int_equal(parse(sample, &b), 0);
	assert_string_equal(b.path, "/drv/sample.bundle");
	assert_string_equal(b.lib_path, "/drv/sample.bundle/Contents/Linux/libsample.so.1");
	assert_string_equal(b.name, "SampleDriver");
	assert_false(b.class_driver);
	assert_int_equal(b.capabilities, 1);
	assert_int_equal(b.n_devices, 3);
	assert_int_equal(b.devices[0].vendor_id, 0x08E6);
	assert_int_equal(b.devices[0].product_id, 0x3437);
	assert_string_equal(b.devices[0].friendly_name, "Gemalto PC Twin Reader");
	assert_int_equal(b.devices[1].vendor_id, 0x04E6);
	assert_string_equal(b.devices[1].friendly_name, "SCM Microsystems & Co. SCR 3310");
	assert_int_equal(b.devices[2].vendor_id, 0x1050);
	assert_int_equal(b.devices[2].product_id, 0x0407);
	bundle_clear(&b);
	assert_null(b.devices);
	assert_null(b.lib_path);
}

static void test_single_strings_and_integers(void **state)
{
	(void)state;
	struct bundle b;
	const char *xml = PLIST_HEAD
		"<key>CFBundleExecutable</key><string>libone.so</string>"
		"<key>CFBundleName</key><string>CCIDCLASSDRIVER</string>"
		"<key>ifdCapabilities</key><integer>3</integer>"
		"<key>ifdVendorID</key><string>0x072F</string>"
		"<key>ifdProductID</key><integer>4660</integer>"
		"<key>ifdFriendlyName</key><string>One Reader</string>" PLIST_TAIL;
	assert_int_equal(parse(xml, &b), 0);
	assert_true(b.class_driver);
	assert_int_equal(b.capabilities, 3);
	assert_int_equal(b.n_devices, 1);
	assert_int_equal(b.devices[0].vendor_id, 0x072F);
	assert_int_equal(b.devices[0].product_id, 4660);
	assert_string_equal(b.devices[0].friendly_name, "One Reader");
	bundle_clear(&b);

	/* No device table at all is allowed (nothing to match); caps default 0. */
	const char *bare = PLIST_HEAD
		"<key>CFBundleExecutable</key><string>x.so</string>" PLIST_TAIL;
	assert_int_equal(parse(bare, &b), 0);
	assert_int_equal(b.n_devices, 0);
	assert_int_equal(b.capabilities, 0);
	assert_null(b.name);
	bundle_clear(&b);
}

static void test_mismatched_arrays(void **state)
{
	(void)state;
	struct bundle b;
	const char *xml = PLIST_HEAD
		"<key>CFBundleExecutable</key><string>lib.so</string>"
		"<key>ifdVendorID</key><array><string>0x1</string><string>0x2</string></array>"
		"<key>ifdProductID</key><array><string>0x1</string><string>0x2</string></array>"
		"<key>ifdFriendlyName</key><array><string>only one</string></array>" PLIST_TAIL;
	assert_int_equal(parse(xml, &b), -1);
	assert_non_null(strstr(err, "2/2/1"));
	assert_null(b.devices);
	assert_null(b.lib_path);

	const char *no_names = PLIST_HEAD "<key>CFBundleExecutable</key><string>lib.so</string>"
					  "<key>ifdVendorID</key><string>0x1</string>"
					  "<key>ifdProductID</key><string>0x2</string>" PLIST_TAIL;
	assert_int_equal(parse(no_names, &b), -1);
	assert_non_null(strstr(err, "1/1/0"));
}

static void test_rejected_documents(void **state)
{
	(void)state;
	struct bundle b;
	static const struct {
		const char *xml;
		const char *why;
	} cases[] = {
		{ PLIST_HEAD "<key>CFBundleName</key><string>x</string>" PLIST_TAIL,
		  "CFBundleExecutable" },
		{ PLIST_HEAD
		  "<key>CFBundleExecutable</key><string>../../evil.so</string>" PLIST_TAIL,
		  "plain file name" },
		{ PLIST_HEAD
		  "<key>CFBundleExecutable</key><array><string>a</string></array>" PLIST_TAIL,
		  "single <string>" },
		{ PLIST_HEAD "<key>CFBundleExecutable</key><string>a</string>"
			     "<key>ifdVendorID</key><string>0x10000</string>"
			     "<key>ifdProductID</key><string>0x1</string>"
			     "<key>ifdFriendlyName</key><string>n</string>" PLIST_TAIL,
		  "bad vendor/product id" },
		{ PLIST_HEAD "<key>CFBundleExecutable</key><string>a</string>"
			     "<key>ifdVendorID</key><string>0xZZ</string>"
			     "<key>ifdProductID</key><string>0x1</string>"
			     "<key>ifdFriendlyName</key><string>n</string>" PLIST_TAIL,
		  "bad vendor/product id" },
		{ PLIST_HEAD "<key>CFBundleExecutable</key><string>a</string>"
			     "<key>ifdCapabilities</key><string>lots</string>" PLIST_TAIL,
		  "ifdCapabilities" },
		{ PLIST_HEAD "<key>CFBundleExecutable</key><string>a</string>"
			     "<key>CFBundleExecutable</key><string>b</string>" PLIST_TAIL,
		  "duplicate key" },
		{ PLIST_HEAD "<key>ifdVendorID</key><dict></dict>" PLIST_TAIL,
		  "unexpected <dict>" },
		{ PLIST_HEAD "<key>CFBundleExecutable</key><string>a</string>", "XML error" },
		{ "<plist><array/></plist>", "no <dict>" },
		{ "not xml at all", "XML error" },
		{ "", "XML error" },
		{ "<?xml version=\"1.0\"?><!DOCTYPE p [<!ENTITY a \"aaaa\">]><plist><dict/></plist>",
		  "entity" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		b.path = (char *)"junk"; /* must be reset by the parser */
		assert_int_equal(parse(cases[i].xml, &b), -1);
		if (!strstr(err, cases[i].why))
			fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].why);
		assert_null(b.path);
	}

	/* Over-long values are refused, not truncated. */
	size_t n = 10000;
	char *big = malloc(n + 512);
	assert_non_null(big);
	int off = snprintf(big, 512, PLIST_HEAD "<key>CFBundleExecutable</key><string>");
	memset(big + off, 'a', n);
	strcpy(big + off + n, "</string>" PLIST_TAIL);
	assert_int_equal(parse(big, &b), -1);
	assert_non_null(strstr(err, "too long"));
	free(big);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char scan_warn_msg[4][300];
static int scan_warns;

static void scan_warn(const char *path, const char *msg)
{
	if (scan_warns < 4)
		snprintf(scan_warn_msg[scan_warns], sizeof scan_warn_msg[0], "%s: %s", path, msg);
	scan_warns++;
}

static void make_bundle(const char *dir, const char *name, const char *plist)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof path, "%s/%s/Contents", dir, name);
	assert_int_equal(mkdir(path, 0700), 0);
	if (!plist)
		return;
	snprintf(path, sizeof path, "%s/%s/Contents/Info.plist", dir, name);
	write_file(path, plist);
}

static void test_scan_dir(void **state)
{
	(void)state;
	char dir[] = "/tmp/scardd-bundles-XXXXXX";
	char cmd[600];
	assert_non_null(mkdtemp(dir));
	make_bundle(dir, "zeta.bundle", sample);
	make_bundle(dir, "alpha.bundle",
		    PLIST_HEAD "<key>CFBundleExecutable</key><string>liba.so</string>" PLIST_TAIL);
	make_bundle(dir, "broken.bundle", "<plist><dict><key>");
	make_bundle(dir, "empty.bundle", NULL);
	make_bundle(dir, "notabundle", sample);
	make_bundle(dir, ".hidden.bundle", sample);

	struct bundle_list list = { 0 };
	scan_warns = 0;
	assert_int_equal(bundle_scan(dir, &list, scan_warn), 2);
	assert_int_equal(list.n, 2);
	/* Name order. */
	assert_non_null(strstr(list.items[0].path, "/alpha.bundle"));
	assert_non_null(
		strstr(list.items[1].lib_path, "/zeta.bundle/Contents/Linux/libsample.so.1"));
	assert_int_equal(list.items[1].n_devices, 3);
	assert_int_equal(scan_warns, 2); /* broken and empty */
	assert_non_null(strstr(scan_warn_msg[0], "broken.bundle/Contents/Info.plist"));
	assert_non_null(strstr(scan_warn_msg[1], "empty.bundle/Contents/Info.plist"));
	bundle_list_free(&list);
	assert_int_equal(list.n, 0);
	assert_null(list.items);

	assert_int_equal(bundle_scan("/nonexistent/scardd", &list, scan_warn), -1);

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* Debian's ccid driver: hundreds of devices, Info.plist reached through a symlink. */
static void test_real_ccid_bundle(void **state)
{
	(void)state;
	struct stat st;
	if (stat("/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist", &st) != 0)
		skip_because(
			"missing-peer: Debian's libccid (ifd-ccid.bundle; scripts/install-deps --tests "
			"installs it)");
	struct bundle_list list = { 0 };
	scan_warns = 0;
	assert_true(bundle_scan("/usr/lib/pcsc/drivers", &list, scan_warn) >= 1);
	assert_int_equal(scan_warns, 0);
	struct bundle *ccid = NULL;
	for (size_t i = 0; i < list.n; i++)
		if (strstr(list.items[i].path, "ifd-ccid.bundle"))
			ccid = &list.items[i];
	assert_non_null(ccid);
	assert_true(ccid->class_driver);
	assert_string_equal(ccid->lib_path,
			    "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so");
	assert_true(ccid->n_devices > 300);
	bool yubikey = false;
	for (size_t i = 0; i < ccid->n_devices; i++) {
		assert_non_null(ccid->devices[i].friendly_name);
		if (ccid->devices[i].vendor_id == 0x1050)
			yubikey = true;
	}
	assert_true(yubikey);
	bundle_list_free(&list);
}

/* A bundle_list by hand: vendor and class drivers listing some ids. */
static struct bundle_device vendor_a[] = { { 0x1209, 0x0001, (char *)"A one" },
					   { 0x1209, 0x0002, (char *)"A two" } };
static struct bundle_device vendor_b[] = { { 0x1209, 0x0002, (char *)"B two" } };
static struct bundle_device ccid[] = { { 0x1209, 0x0002, (char *)"Class two" },
				       { 0x1209, 0x0003, (char *)"Class three" } };

static void test_find_driver(void **state)
{
	(void)state;
	struct bundle items[] = {
		{ .name = (char *)"a", .devices = vendor_a, .n_devices = 2 },
		{ .name = (char *)"CCIDCLASSDRIVER",
		  .class_driver = true,
		  .devices = ccid,
		  .n_devices = 2 },
		{ .name = (char *)"b", .devices = vendor_b, .n_devices = 1 },
	};
	struct bundle_list list = { items, 3 };
	const struct bundle_device *e;
	const struct bundle *cls;

	/* one vendor driver: it, and no class driver */
	assert_ptr_equal(bundle_find_driver(&list, 0x1209, 0x0001, &e, &cls), &items[0]);
	assert_string_equal(e->friendly_name, "A one");
	assert_null(cls);
	/* two vendor drivers and the class driver: the last vendor's, the class driver next */
	assert_ptr_equal(bundle_find_driver(&list, 0x1209, 0x0002, &e, &cls), &items[2]);
	assert_string_equal(e->friendly_name, "B two");
	assert_ptr_equal(cls, &items[1]);
	/* only the class driver */
	assert_ptr_equal(bundle_find_driver(&list, 0x1209, 0x0003, &e, &cls), &items[1]);
	assert_string_equal(e->friendly_name, "Class three");
	assert_ptr_equal(cls, &items[1]);
	/* nobody */
	assert_null(bundle_find_driver(&list, 0x1209, 0x0004, &e, &cls));
	assert_null(cls);
	assert_null(bundle_find_driver(NULL, 0x1209, 0x0001, &e, &cls));
}

#else

static void test_without_expat(void **state)
{
	(void)state;
	struct bundle b;
	struct bundle_list list = { 0 };
	assert_int_equal(parse(sample, &b), -1);
	assert_string_equal(err, "built without expat");
	assert_int_equal(bundle_scan("/usr/lib/pcsc/drivers", &list, NULL), -1);
}

#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#ifdef HAVE_EXPAT
		cmocka_unit_test(test_sample_arrays),
		cmocka_unit_test(test_single_strings_and_integers),
		cmocka_unit_test(test_mismatched_arrays),
		cmocka_unit_test(test_rejected_documents),
		cmocka_unit_test(test_scan_dir),
		cmocka_unit_test(test_real_ccid_bundle),
		cmocka_unit_test(test_find_driver),
#else
		cmocka_unit_test(test_without_expat),
#endif
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
