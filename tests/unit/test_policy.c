/* Unit tests: the policy file's parser, its errors, and what it decides. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "peer_identity.h"
#include "policy.h"

/* Users and groups of the tests, whatever the machine's databases hold. */
static bool fake_user(const char *name, uid_t *uid)
{
	if (!strcmp(name, "alice"))
		*uid = 1000;
	else if (!strcmp(name, "bob"))
		*uid = 1001;
	else
		return false;
	return true;
}

static bool fake_group(const char *name, gid_t *gid)
{
	if (!strcmp(name, "scard"))
		*gid = 500;
	else
		return false;
	return true;
}

static const struct policy_names names = { fake_user, fake_group };

static struct policy *parse(const char *text)
{
	char err[512];
	struct policy *p = policy_parse(text, strlen(text), "policy.conf", &names, err,
					sizeof(err));
	if (!p)
		fail_msg("%s", err);
	return p;
}

/* The error text a policy gets, "" if it parses. */
static const char *error_of(const char *text, size_t len)
{
	static char err[512];
	struct policy *p = policy_parse(text, len, "p.conf", &names, err, sizeof(err));
	if (p) {
		policy_free(p);
		return "";
	}
	return err;
}

#define assert_error(text, want) assert_string_equal(error_of(text, strlen(text)), want)

static gid_t alice_groups[] = { 500, 27 };

static struct peer_identity host(uid_t uid)
{
	return (struct peer_identity){
		.pid = 100, .uid = uid, .gid = uid, .exe = "/usr/bin/pcsc_scan"
	};
}

static struct peer_identity alice(void)
{
	struct peer_identity id = host(1000);
	id.groups = alice_groups;
	id.n_groups = 2;
	return id;
}

static struct peer_identity flatpak(const char *app)
{
	struct peer_identity id = host(1000);
	id.sandbox = PEER_FLATPAK;
	id.app = (char *)app;
	id.exe = "/app/bin/reader";
	return id;
}

/* The rights the policy gives id on reader. */
static uint32_t rights(const struct policy *p, const struct peer_identity *id, const char *reader)
{
	const struct policy_rule *r = policy_decide(p, id, reader);
	return r ? policy_rule_rights(r) : 0;
}

static int line_of(const struct policy *p, const struct peer_identity *id, const char *reader)
{
	const struct policy_rule *r = policy_decide(p, id, reader);
	return r ? policy_rule_line(r) : 0;
}

static void test_first_match_per_reader(void **state)
{
	(void)state;
	struct policy *p = parse("# readers for the SIM bank are root's\n"
				 "allow uid=0 all\n"
				 "deny reader=\"SIM *\"\n"
				 "\n"
				 "allow user=alice reader=\"Yubico*\" list shared transmit\n"
				 "allow user=alice list\n");
	struct peer_identity root = host(0), a = alice(), b = host(1001);
	assert_int_equal(rights(p, &root, "SIM bank 00 00"), POLICY_ALL);
	assert_int_equal(line_of(p, &root, "SIM bank 00 00"), 2);
	assert_int_equal(rights(p, &a, "SIM bank 00 00"), 0);
	assert_int_equal(line_of(p, &a, "SIM bank 00 00"), 3);
	assert_int_equal(rights(p, &a, "Yubico YubiKey 00 00"),
			 POLICY_LIST | POLICY_SHARED | POLICY_TRANSMIT);
	assert_int_equal(rights(p, &a, "Other 00 00"), POLICY_LIST);
	assert_int_equal(line_of(p, &a, "Other 00 00"), 6);
	/* nobody else: no rule fits, nothing */
	assert_null(policy_decide(p, &b, "Other 00 00"));
	assert_true(policy_admits(p, &root, NULL));
	assert_true(policy_admits(p, &a, NULL));
	const struct policy_rule *deny = (void *)1;
	assert_false(policy_admits(p, &b, &deny));
	assert_null(deny);
	policy_free(p);
}

static void test_conditions(void **state)
{
	(void)state;
	struct policy *p = parse("allow user=alice user=bob exe=/usr/bin/* transmit\n"
				 "allow uid=2000-2999 sandbox=none shared\n"
				 "allow group=scard reader=R1 exclusive\n"
				 "allow flatpak=org.mozilla.* direct\n"
				 "allow flatpak=* list\n"
				 "allow snap=chromium container=docker control\n"
				 "allow container=pod* control=0x42000D48\n"
				 "allow sandbox=snap sandbox=container list\n");
	struct peer_identity a = alice(), b = host(1001), c = host(2500);
	/* user= twice: either; exe= too: both keys must hold */
	assert_int_equal(rights(p, &a, "R0"), POLICY_LIST | POLICY_TRANSMIT);
	assert_int_equal(rights(p, &b, "R0"), POLICY_LIST | POLICY_TRANSMIT);
	b.exe = "/opt/x";
	assert_int_equal(rights(p, &b, "R0"), 0);
	b.exe = NULL; /* unknown: exe= never holds */
	assert_int_equal(rights(p, &b, "R0"), 0);
	assert_int_equal(rights(p, &c, "R0"), POLICY_LIST | POLICY_SHARED);
	c.uid = 3000;
	assert_int_equal(rights(p, &c, "R0"), 0);
	/* a supplementary group counts */
	a.exe = "/opt/x";
	assert_int_equal(rights(p, &a, "R1"), POLICY_LIST | POLICY_EXCLUSIVE);
	assert_int_equal(rights(p, &a, "R2"), 0);
	/* sandboxes */
	struct peer_identity f = flatpak("org.mozilla.firefox"), g = flatpak("org.gnome.Foo");
	struct peer_identity unnamed = flatpak(NULL);
	f.uid = g.uid = unnamed.uid = 3000;
	assert_int_equal(rights(p, &f, "R0"), POLICY_LIST | POLICY_DIRECT);
	assert_int_equal(rights(p, &g, "R0"), POLICY_LIST);
	assert_int_equal(rights(p, &unnamed, "R0"), POLICY_LIST); /* flatpak=* */
	struct peer_identity s = host(3000);
	s.sandbox = PEER_SNAP;
	s.app = "chromium";
	assert_int_equal(rights(p, &s, "R0"), POLICY_LIST); /* snap= and container= both needed */
	struct peer_identity d = host(3000);
	d.sandbox = PEER_CONTAINER;
	d.container = "podman";
	const struct policy_rule *r = policy_decide(p, &d, "R0");
	assert_int_equal(policy_rule_line(r), 7);
	assert_true(policy_rule_allows_control(r, 0x42000D48));
	assert_false(policy_rule_allows_control(r, 0x42000D49));
	assert_int_equal(policy_rule_rights(r), POLICY_LIST | POLICY_CONTROL_SOME);
	/* a host process of the same uid is none of these */
	struct peer_identity h = host(3000);
	assert_int_equal(rights(p, &h, "R0"), 0);
	policy_free(p);
}

static void test_rights(void **state)
{
	(void)state;
	struct policy *p = parse("allow uid=1 list\n"
				 "allow uid=2 shared exclusive direct transmit\n"
				 "allow uid=3 control\n"
				 "allow uid=4 control=1 control=0x42000C00 control=4294967295\n"
				 "allow uid=5 all\n");
	struct peer_identity id = host(1);
	assert_int_equal(rights(p, &id, "R"), POLICY_LIST);
	id.uid = 2;
	assert_int_equal(rights(p, &id, "R"), POLICY_LIST | POLICY_SHARED | POLICY_EXCLUSIVE |
						      POLICY_DIRECT | POLICY_TRANSMIT);
	id.uid = 3;
	const struct policy_rule *r = policy_decide(p, &id, "R");
	assert_true(policy_rule_allows_control(r, 0));
	assert_true(policy_rule_allows_control(r, 0x42000D48));
	id.uid = 4;
	r = policy_decide(p, &id, "R");
	assert_true(policy_rule_allows_control(r, 1));
	assert_true(policy_rule_allows_control(r, 0x42000C00));
	assert_true(policy_rule_allows_control(r, 0xFFFFFFFFu));
	assert_false(policy_rule_allows_control(r, 2));
	id.uid = 5;
	assert_int_equal(rights(p, &id, "R"), POLICY_ALL);
	policy_free(p);
}

static void test_refused_outright(void **state)
{
	(void)state;
	struct policy *p = parse("deny sandbox=container\n"
				 "allow uid=1000 reader=\"A*\" list\n"
				 "deny uid=1000\n"
				 "deny uid=1001 reader=B\n");
	struct peer_identity a = alice(), b = host(1001), c = host(1000);
	assert_true(policy_admits(p, &a, NULL));
	/* only a deny for one reader, and nothing allowed after it: refused, with no rule to name */
	assert_false(policy_admits(p, &b, NULL));
	c.sandbox = PEER_CONTAINER;
	c.container = "docker";
	const struct policy_rule *deny = NULL;
	assert_false(policy_admits(p, &c, &deny));
	assert_int_equal(policy_rule_line(deny), 1);
	/* a client that left before it was seen could be anything: nothing */
	struct peer_identity gone = alice();
	gone.gone = true;
	assert_false(policy_admits(p, &gone, NULL));
	assert_null(policy_decide(p, &gone, "A1"));
	policy_free(p);

	p = parse("# nothing but comments\n\n   # and blanks\n");
	assert_int_equal(policy_rule_count(p), 0);
	assert_false(policy_admits(p, &a, NULL));
	policy_free(p);
}

static void test_syntax(void **state)
{
	(void)state;
	/* tabs, CRLF, quotes with spaces and escapes, a comment after a rule */
	struct policy *p = parse(
		"allow\tuser=alice reader=\"Gemalto PC \\\"Twin\\\" 00 00\"\tlist\r\n"
		"allow uid=0 exe=\"/opt/my app/bin\\\\x\" all # root\n"
		"allow uid=7 exe=/opt/a#b all\n");
	assert_int_equal(policy_rule_count(p), 3);
	struct peer_identity a = alice(), root = host(0), seven = host(7);
	assert_int_equal(rights(p, &a, "Gemalto PC \"Twin\" 00 00"), POLICY_LIST);
	/* "\\" in quotes is one backslash, which the glob reads as quoting the x */
	root.exe = "/opt/my app/binx";
	assert_int_equal(rights(p, &root, "R"), POLICY_ALL);
	seven.exe = "/opt/a#b"; /* '#' inside a word is no comment */
	assert_int_equal(rights(p, &seven, "R"), POLICY_ALL);
	policy_free(p);

	p = parse("allow all"); /* no final newline; no condition: everyone */
	assert_int_equal(rights(p, &a, "R"), POLICY_ALL);
	policy_free(p);
}

static void test_errors(void **state)
{
	(void)state;
	assert_error("allow uid=0 all\npermit uid=1 all\n",
		     "p.conf:2: a rule starts with allow or deny, not 'permit'");
	assert_error("allow uid=0 lst\n", "p.conf:1: unknown word 'lst' (rights: list shared "
					  "exclusive direct transmit control control=CODE all)");
	assert_error("allow usr=0 all\n", "p.conf:1: unknown condition 'usr=' (conditions: user "
					  "uid group exe flatpak snap container sandbox reader)");
	assert_error("deny uid=0 list\n", "p.conf:1: deny takes no rights ('list')");
	assert_error("deny uid=0 control=1\n", "p.conf:1: deny takes no rights ('control=1')");
	assert_error("\n\nallow uid=0\n", "p.conf:3: allow without a right (list shared exclusive "
					  "direct transmit control control=CODE all)");
	assert_error("allow user=mallory all\n", "p.conf:1: unknown user 'mallory'");
	assert_error("allow group=wheel all\n", "p.conf:1: unknown group 'wheel'");
	assert_error("allow uid=5-1 all\n", "p.conf:1: uid=5-1: a number or a range N-M");
	assert_error("allow uid=-1 all\n", "p.conf:1: uid=-1: a number or a range N-M");
	assert_error("allow uid=4294967295 all\n",
		     "p.conf:1: uid=4294967295: a number or a range N-M");
	assert_error("allow uid=1x all\n", "p.conf:1: uid=1x: a number or a range N-M");
	assert_error("allow sandbox=jail all\n",
		     "p.conf:1: sandbox=jail: none, flatpak, snap or container");
	assert_error("allow control=0x100000000\n",
		     "p.conf:1: control=0x100000000: a control code, decimal or 0x hex (32 bits)");
	assert_error("allow control=-1\n",
		     "p.conf:1: control=-1: a control code, decimal or 0x hex (32 bits)");
	assert_error("allow control=0x\n",
		     "p.conf:1: control=0x: a control code, decimal or 0x hex (32 bits)");
	assert_error("allow reader=\"A all\n",
		     "p.conf:1: a quoted value without its closing quote");
	assert_error("allow reader=\"A\"B all\n", "p.conf:1: text right after a closing quote");
	assert_error("allow reader= all\n", "p.conf:1: reader= wants a value");
	assert_error("allow reader=\"\" all\n", "p.conf:1: reader= wants a value");
	assert_error("allow =x all\n", "p.conf:1: '=' without a condition before it");
	assert_error("allow reader all\n", "p.conf:1: reader wants a value: reader=...");
	assert_error("allow= all\n", "p.conf:1: a rule starts with allow or deny, not 'allow='");
	assert_error("allow uid=0 all\x1b[2J\n", "p.conf:1: control character 0x1b");
	assert_error("allow uid=0 all\rallow\n", "p.conf:1: control character 0x0d");
	assert_string_equal(error_of("allow uid=0\0 all\n", 17),
			    "p.conf:1: control character 0x00");
	char *long_line = malloc(POLICY_LINE_MAX + 16);
	assert_non_null(long_line);
	memset(long_line, ' ', POLICY_LINE_MAX + 1);
	strcpy(long_line + POLICY_LINE_MAX + 1, "all\n");
	assert_error(long_line, "p.conf:1: line longer than 4096 bytes");
	free(long_line);
}

static void test_glob(void **state)
{
	(void)state;
	assert_true(policy_glob("*", ""));
	assert_true(policy_glob("Yubico*", "Yubico YubiKey OTP+FIDO+CCID 00 00"));
	assert_false(policy_glob("Yubico*", "yubico"));
	assert_true(policy_glob("/usr/bin/*", "/usr/bin/sub/x")); /* '*' takes '/' too */
	assert_true(policy_glob("a?c", "abc"));
	assert_false(policy_glob("a?c", "ac"));
	assert_true(policy_glob("R [0-9][0-9] 0[!1]", "R 12 00"));
	assert_false(policy_glob("R [0-9][0-9] 0[!1]", "R 12 01"));
	assert_true(policy_glob("[]x]", "]"));
	assert_true(policy_glob("[a\\]]", "]"));
	assert_true(policy_glob("\\*", "*"));
	assert_false(policy_glob("\\*", "x"));
	assert_true(policy_glob("[", "[")); /* an unclosed set is a '[' */
	assert_true(policy_glob("x\\", "x\\"));
	assert_true(policy_glob("*.*.*", "org.mozilla.firefox"));
	assert_false(policy_glob("*.*.*.*", "org.mozilla.firefox"));
	assert_true(policy_glob("*a*b*c", "xxaxxbxxbxxc"));
	/* what takes exponential time in a backtracking matcher ends here */
	char s[4001];
	memset(s, 'a', 4000);
	s[4000] = '\0';
	assert_false(policy_glob("*a*a*a*a*a*a*a*a*a*a*a*a*b", s));
	assert_true(policy_glob("*a*a*a*a*a*a*a*a*a*a*a*a*", s));
}

/* Any name: the documentation's examples name users this machine need not have. */
static bool any_name(const char *name, uid_t *id)
{
	*id = (uid_t)strlen(name) + 5000;
	return true;
}

static bool any_group(const char *name, gid_t *id)
{
	*id = (gid_t)strlen(name) + 5000;
	return true;
}

static char *read_text(const char *rel, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", SCARDD_SOURCE_ROOT, rel);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *text = malloc(1 << 20);
	assert_non_null(text);
	*len = fread(text, 1, (1 << 20) - 1, f);
	text[*len] = '\0';
	fclose(f);
	return text;
}

/* docs/policy.conf.example and every ```conf block of docs/POLICY.md parse. */
static void test_documented_policies(void **state)
{
	(void)state;
	static const struct policy_names any = { any_name, any_group };
	char err[512];
	size_t len;
	char *text = read_text("docs/policy.conf.example", &len);
	struct policy *p = policy_parse(text, len, "policy.conf.example", &any, err, sizeof(err));
	if (!p)
		fail_msg("%s", err);
	/* what it promises: firefox sees the keys only, other flatpaks nothing */
	struct peer_identity ff = flatpak("org.mozilla.firefox"), other = flatpak("org.x.Y");
	assert_int_equal(rights(p, &ff, "Yubico YubiKey 00 00"),
			 POLICY_LIST | POLICY_SHARED | POLICY_TRANSMIT);
	assert_int_equal(rights(p, &ff, "SIM bank 00 00"), 0);
	assert_false(policy_admits(p, &other, NULL));
	struct peer_identity user = host(1500);
	assert_int_equal(rights(p, &user, "SIM bank 00 01"), 0);
	assert_true(policy_rule_allows_control(policy_decide(p, &user, "R"), 0x42000D48));
	assert_false(policy_rule_allows_control(policy_decide(p, &user, "R"), 0x42000D49));
	policy_free(p);
	free(text);

	text = read_text("docs/POLICY.md", &len);
	int blocks = 0;
	for (char *b = strstr(text, "```conf\n"); b; b = strstr(b, "```conf\n")) {
		b += strlen("```conf\n");
		char *end = strstr(b, "```");
		assert_non_null(end);
		p = policy_parse(b, (size_t)(end - b), "POLICY.md", &any, err, sizeof(err));
		if (!p)
			fail_msg("block %d: %s", blocks + 1, err);
		assert_true(policy_rule_count(p) > 0);
		policy_free(p);
		blocks++;
		b = end + 3;
	}
	assert_true(blocks >= 3);
	free(text);
}

static void test_load(void **state)
{
	(void)state;
	char dir[] = "/tmp/scardd-policy-XXXXXX", path[128], err[512];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/none.conf", dir);
	errno = 0;
	assert_null(policy_load(path, err, sizeof(err)));
	assert_int_equal(errno, ENOENT);
	/* a directory, or a FIFO nobody writes to (never waited on) */
	assert_null(policy_load(dir, err, sizeof(err)));
	assert_int_not_equal(errno, ENOENT);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_null(policy_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));
	unlink(path);
	/* a file too large */
	snprintf(path, sizeof(path), "%s/big.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (unsigned i = 0; i <= POLICY_FILE_MAX / 16; i++)
		fputs("# padding ......\n", f);
	fclose(f);
	assert_null(policy_load(path, err, sizeof(err)));
	unlink(path);
	/* a good one, its errors named by its path */
	snprintf(path, sizeof(path), "%s/policy.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("allow uid=0 all\nallow uid=1 list\n", f);
	fclose(f);
	struct policy *p = policy_load(path, err, sizeof(err));
	assert_non_null(p);
	assert_int_equal(policy_rule_count(p), 2);
	assert_string_equal(policy_source(p), path);
	policy_free(p);
	f = fopen(path, "w");
	fputs("allow uid=0 all\nallow uid=1 lst\n", f);
	fclose(f);
	assert_null(policy_load(path, err, sizeof(err)));
	char want[256];
	snprintf(want, sizeof(want), "%s:2: unknown word 'lst'", path);
	assert_memory_equal(err, want, strlen(want));
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_match_per_reader),
		cmocka_unit_test(test_conditions),
		cmocka_unit_test(test_rights),
		cmocka_unit_test(test_refused_outright),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_documented_policies),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
