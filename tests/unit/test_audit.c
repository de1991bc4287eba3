/* Unit tests: the audit log's lines, what is audited, and reopening. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <pcsclite.h>

#include "audit.h"
#include "handles.h"
#include "readers.h"
#include "session.h"

static char dir[] = "/tmp/scardd-audit-XXXXXX";

static char *read_all(const char *path)
{
	static char buf[8192];
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* A client of uid 1000 in a flatpak sandbox, and a reader with one of its handles. */
struct fixture {
	struct readers rs;
	struct session s;
	struct handle *h;
};

static int setup(void **state)
{
	if (!mkdtemp(dir))
		return -1;
	struct fixture *f = calloc(1, sizeof(*f));
	readers_init(&f->rs);
	struct reader *r = readers_add(&f->rs, "Yubico \"Key\" 00 00", NULL, 0);
	f->s.id = 7;
	f->s.identity = (struct peer_identity){ .pid = 42,
						.uid = 1000,
						.gid = 1001,
						.exe = "/app/bin/re\nader",
						.sandbox = PEER_FLATPAK,
						.app = "org.example.Reader" };
	f->h = handle_new(&f->s.handles, r, SCARD_SHARE_SHARED);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	handle_free(f->h);
	readers_destroy(&f->rs);
	free(f);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	strcpy(dir, "/tmp/scardd-audit-XXXXXX");
	return system(cmd);
}

/* The line without its time stamp. */
static const char *after_time(const char *line)
{
	const char *sp = strchr(line, ' ');
	assert_non_null(sp);
	assert_int_equal(sp - line, (int)strlen("2026-12-02T08:30:00.123Z"));
	assert_int_equal(line[sp - line - 1], 'Z');
	return sp + 1;
}

static void test_format(void **state)
{
	struct fixture *f = *state;
	char line[512];
	int n = audit_format(line, sizeof(line), "connect", &f->s, " result=SCARD_S_SUCCESS");
	assert_int_equal(n, (int)strlen(line));
	assert_string_equal(
		after_time(line),
		"connect client=7 pid=42 uid=1000 gid=1001 exe=\"/app/bin/re\\x0aader\" "
		"sandbox=flatpak app=\"org.example.Reader\" result=SCARD_S_SUCCESS");
	char small[20];
	assert_int_equal(audit_format(small, sizeof(small), "connect", &f->s, ""),
			 n - (int)strlen(" result=SCARD_S_SUCCESS"));
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_what_is_audited(void **state)
{
	struct fixture *f = *state;
	char path[128], err[256];
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	struct audit *a = audit_open(path, err, sizeof(err));
	assert_non_null(a);

	struct wire_msg m = { .cmd = WIRE_CONNECT };
	strcpy(m.u.connect.reader, "Yubico \"Key\" 00 00");
	m.u.connect.share_mode = SCARD_SHARE_EXCLUSIVE;
	m.u.connect.card = 0x1234;
	m.u.connect.rv = SCARD_S_SUCCESS;
	audit_reply(a, &f->s, &m);
	m.u.connect.rv = SCARD_W_SECURITY_VIOLATION;
	audit_reply(a, &f->s, &m);
	struct wire_msg t = { .cmd = WIRE_TRANSMIT }; /* not audited */
	audit_reply(a, &f->s, &t);
	struct wire_msg b = { .cmd = WIRE_BEGIN_TRANSACTION };
	b.u.begin.card = f->h->id;
	b.u.begin.rv = SCARD_S_SUCCESS;
	audit_reply(a, &f->s, &b);
	struct wire_msg c = { .cmd = WIRE_CONTROL };
	c.u.control.card = f->h->id;
	c.u.control.control_code = 0x42000D48;
	c.u.control.rv = 0x80100099; /* a code without a name */
	audit_reply(a, &f->s, &c);
	struct wire_msg e = { .cmd = WIRE_END_TRANSACTION };
	e.u.end.card = 99; /* no such handle: no reader to name */
	e.u.end.disposition = SCARD_RESET_CARD;
	e.u.end.rv = SCARD_E_INVALID_HANDLE;
	audit_reply(a, &f->s, &e);
	struct wire_msg v = { .cmd = WIRE_VERSION };
	v.u.version.rv = SCARD_S_SUCCESS; /* an admitted client: nothing */
	audit_reply(a, &f->s, &v);
	v.u.version.rv = SCARD_W_SECURITY_VIOLATION;
	audit_reply(a, &f->s, &v);

	char *text = read_all(path);
	assert_non_null(text);
	const char *want[] = {
		" reader=\"Yubico \\x22Key\\x22 00 00\" mode=exclusive card=0x00001234 "
		"result=SCARD_S_SUCCESS\n",
		" reader=\"Yubico \\x22Key\\x22 00 00\" mode=exclusive "
		"result=SCARD_W_SECURITY_VIOLATION\n",
		" reader=\"Yubico \\x22Key\\x22 00 00\" result=SCARD_S_SUCCESS\n",
		" reader=\"Yubico \\x22Key\\x22 00 00\" code=0x42000D48 result=0x80100099\n",
		" card=0x00000063 disposition=reset result=SCARD_E_INVALID_HANDLE\n",
		" result=SCARD_W_SECURITY_VIOLATION\n",
	};
	const char *events[] = { "connect", "connect",         "begin-transaction",
				 "control", "end-transaction", "refused" };
	char *line = text;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		const char *rest = after_time(line);
		assert_memory_equal(rest, events[i], strlen(events[i]));
		assert_non_null(strstr(rest, "client=7 pid=42 uid=1000 gid=1001"));
		size_t wl = strlen(want[i]);
		assert_true((size_t)(nl + 1 - line) >= wl);
		assert_memory_equal(nl + 1 - wl, want[i], wl);
		line = nl + 1;
	}
	assert_string_equal(line, ""); /* nothing else */

	/* rotated away: the next line goes to a new file at the path */
	char moved[160];
	snprintf(moved, sizeof(moved), "%s/audit.log.1", dir);
	assert_int_equal(rename(path, moved), 0);
	audit_reopen(a);
	audit_reply(a, &f->s, &m);
	text = read_all(path);
	assert_non_null(text);
	assert_non_null(strstr(text, "result=SCARD_W_SECURITY_VIOLATION\n"));
	assert_int_equal(strchr(text, '\n') - text + 1, (long)strlen(text)); /* one line */
	audit_close(a);
}

static void test_open_errors(void **state)
{
	(void)state;
	char err[256];
	assert_null(audit_open(dir, err, sizeof(err))); /* a directory */
	assert_non_null(strstr(err, dir));
	char link[160];
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(symlink("/tmp/elsewhere", link), 0);
	assert_null(audit_open(link, err, sizeof(err))); /* not through a symlink */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_what_is_audited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
