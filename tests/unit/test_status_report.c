/*
 * Unit tests: scardd's status report (the daemon's status_report.c) as scard
 * reads it back (src/tools/daemon_report.c): fields, who sees which client,
 * and values that cannot break a line.
 */
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

#include "daemon.h"
#include "daemon_report.h"
#include "handles.h"
#include "readers.h"
#include "session.h"
#include "socket_spec.h"
#include "status_report.h"
#include "wire.h"

struct fixture {
	struct daemon d;
	struct socket_spec specs[2];
	struct session s[5];
};

static void add_session(struct fixture *f, struct session *s, uint64_t id, pid_t pid, uid_t uid,
			const struct socket_spec *spec)
{
	s->d = &f->d;
	s->id = id;
	s->pid = pid;
	s->uid = uid;
	s->sock = spec;
	wire_params_init(&s->params);
	s->legacy_slots = WIRE_LEGACY_READER_SLOTS;
	s->next = f->d.sessions;
	f->d.sessions = s;
}

/* Two sockets; clients in 4:4, 4:6, 4:2 with 100-byte names, one not yet versioned. */
static struct fixture *make_fixture(uid_t other_uid)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	char err[128];
	assert_true(socket_spec_parse("/run/pcscd/pcscd.comm", &f->specs[0], err, sizeof(err)));
	assert_true(socket_spec_parse("/run/pcscd/old\tone.comm:readers=48,names=100,mode=0660",
				      &f->specs[1], err, sizeof(err)));
	f->d.n_sockets = 2;
	f->d.sockets[0].spec = &f->specs[0];
	f->d.sockets[1].spec = &f->specs[1];
	f->d.started_at = 1700000000;

	/* listed last-added first */
	add_session(f, &f->s[4], 5, -1, other_uid, &f->specs[0]); /* closing: never listed */
	f->s[4].closing = true;
	add_session(f, &f->s[3], 4, 40, other_uid, &f->specs[0]); /* no CMD_VERSION yet */
	add_session(f, &f->s[2], 3, 30, other_uid, &f->specs[1]);
	f->s[2].params.proto = wire_proto_with_name_len(wire_proto_find(4, 2), 100);
	f->s[2].params.order = WIRE_BIG_ENDIAN;
	f->s[2].legacy_slots = 48;
	f->s[2].versioned = true;
	add_session(f, &f->s[1], 2, 20, 0, &f->specs[0]);
	f->s[1].params.proto = wire_proto_find(4, 6);
	f->s[1].versioned = f->s[1].has_context = f->s[1].waiting = true;
	f->s[1].handles.n = 2;
	add_session(f, &f->s[0], 1, getpid(), 0, &f->specs[0]); /* the asker */
	f->s[0].versioned = true;
	return f;
}

static char *report_text(struct fixture *f, const struct session *asker)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	assert_non_null(m);
	status_report_write(m, &f->d, asker);
	assert_int_equal(fclose(m), 0);
	return text;
}

static const struct report_line *client_line(const struct daemon_report *r, const char *id)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->lines[i].kind, "client") &&
		    !strcmp(report_get(&r->lines[i], "id"), id))
			return &r->lines[i];
	return NULL;
}

static void test_root_sees_every_client(void **state)
{
	(void)state;
	struct fixture *f = make_fixture(4000);
	f->s[0].uid = 0;
	struct daemon_report r;
	assert_true(daemon_report_parse(report_text(f, &f->s[0]), &r));

	const struct report_line *top = report_first(&r, "scardd");
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_string_equal(report_get(top, "pid"), pid);
	assert_string_equal(report_get(top, "started"), "1700000000");
	assert_true(strtoull(report_get(top, "uptime_ms"), NULL, 10) > 0);
	assert_string_equal(report_get(top, "clients"),
			    "3"); /* not the asker, not the closing one */
	assert_string_equal(report_get(top, "hidden"), "0");

	const struct report_line *sock = report_first(&r, "socket");
	assert_string_equal(report_get(sock, "path"), "/run/pcscd/pcscd.comm");
	assert_string_equal(report_get(sock, "readers"), "auto");
	assert_string_equal(report_get(sock, "mode"), "0666");
	sock = &r.lines[2];
	assert_string_equal(sock->kind, "socket");
	assert_string_equal(report_get(sock, "path"), "/run/pcscd/old?one.comm"); /* the tab */
	assert_string_equal(report_get(sock, "readers"), "48");
	assert_string_equal(report_get(sock, "names"), "100");
	assert_string_equal(report_get(sock, "mode"), "0660");

	assert_null(client_line(&r, "1"));
	assert_null(client_line(&r, "5"));
	const struct report_line *c = client_line(&r, "2");
	assert_non_null(c);
	assert_string_equal(report_get(c, "protocol"), "4:6");
	assert_string_equal(report_get(c, "arrays"), "sized");
	assert_string_equal(report_get(c, "order"), "little-endian");
	assert_string_equal(report_get(c, "contexts"), "1");
	assert_string_equal(report_get(c, "cards"), "2");
	assert_string_equal(report_get(c, "waiting"), "yes");
	c = client_line(&r, "3");
	assert_string_equal(report_get(c, "protocol"), "4:2");
	assert_string_equal(report_get(c, "names"), "100");
	assert_string_equal(report_get(c, "order"), "big-endian");
	assert_string_equal(report_get(c, "arrays"), "48");
	assert_string_equal(report_get(c, "socket"), "/run/pcscd/old?one.comm");
	assert_string_equal(report_get(c, "uid"), "4000");
	c = client_line(&r, "4");
	assert_string_equal(report_get(c, "protocol"), "none");
	assert_string_equal(report_get(c, "arrays"), "none");
	assert_string_equal(report_get(c, "contexts"), "0");
	daemon_report_free(&r);
	free(f);
}

/* Someone who is neither root nor the daemon's user sees their own clients only. */
static void test_other_user_sees_own_clients(void **state)
{
	(void)state;
	uid_t mine = geteuid() == 4000 ? 4001 : 4000;
	struct fixture *f = make_fixture(mine);
	f->s[0].uid = mine;
	struct daemon_report r;
	assert_true(daemon_report_parse(report_text(f, &f->s[0]), &r));
	const struct report_line *top = report_first(&r, "scardd");
	assert_string_equal(report_get(top, "clients"), "3");
	assert_string_equal(report_get(top, "hidden"), "1"); /* root's */
	assert_null(client_line(&r, "2"));                   /* root's */
	assert_non_null(client_line(&r, "3"));
	assert_non_null(client_line(&r, "4"));
	daemon_report_free(&r);
	free(f);
}

static const struct report_line *line_with(const struct daemon_report *r, const char *kind,
					   const char *key, const char *value)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->lines[i].kind, kind) &&
		    !strcmp(report_get(&r->lines[i], key), value))
			return &r->lines[i];
	return NULL;
}

/*
 * Card lines follow their client's visibility; reader lines are everyone's,
 * naming the holder only to whom may see it.
 */
static void test_who_holds_which_reader(void **state)
{
	(void)state;
	uid_t mine = geteuid() == 4000 ? 4001 : 4000;
	struct fixture *f = make_fixture(mine);
	readers_init(&f->d.readers);
	struct reader *a = readers_add(&f->d.readers, "Reader A 00 00", NULL, 0);
	struct reader *b = readers_add(&f->d.readers, "Reader\tB 00 00", NULL, 0);
	struct reader *idle = readers_add(&f->d.readers, "Idle 00 00", NULL, 0);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(idle);
	f->s[1].handles.n = 0;
	/* root's client 2: A exclusive in a transaction, T=1 */
	struct handle *ha = handle_new(&f->s[1].handles, a, SCARD_SHARE_EXCLUSIVE);
	ha->protocol = SCARD_PROTOCOL_T1;
	a->lock_holder = ha;
	/* client 3 (uid mine): B shared and B direct */
	struct handle *hb = handle_new(&f->s[2].handles, b, SCARD_SHARE_SHARED);
	hb->protocol = SCARD_PROTOCOL_T0;
	struct handle *hd = handle_new(&f->s[2].handles, b, SCARD_SHARE_DIRECT);

	struct daemon_report r;
	f->s[0].uid = 0;
	assert_true(daemon_report_parse(report_text(f, &f->s[0]), &r));
	const struct report_line *l = line_with(&r, "card", "client", "2");
	assert_non_null(l);
	assert_string_equal(report_get(l, "reader"), "Reader A 00 00");
	assert_string_equal(report_get(l, "share"), "exclusive");
	assert_string_equal(report_get(l, "protocol"), "T=1");
	assert_string_equal(report_get(l, "transaction"), "yes");
	l = line_with(&r, "card", "share", "direct");
	assert_string_equal(report_get(l, "client"), "3");
	assert_string_equal(report_get(l, "reader"), "Reader?B 00 00");
	assert_string_equal(report_get(l, "protocol"), "none");
	l = line_with(&r, "reader", "name", "Reader A 00 00");
	assert_string_equal(report_get(l, "handles"), "1");
	assert_string_equal(report_get(l, "exclusive"), "2");
	assert_string_equal(report_get(l, "transaction"), "2");
	l = line_with(&r, "reader", "name", "Reader?B 00 00");
	assert_string_equal(report_get(l, "handles"), "2");
	assert_string_equal(report_get(l, "exclusive"), "none");
	assert_string_equal(report_get(l, "transaction"), "none");
	assert_null(line_with(&r, "reader", "name", "Idle 00 00"));
	assert_null(report_first(&r, "more"));
	daemon_report_free(&r);

	/* another user: root's card line is not there, its reader's holder is hidden */
	f->s[0].uid = mine;
	assert_true(daemon_report_parse(report_text(f, &f->s[0]), &r));
	assert_null(line_with(&r, "card", "client", "2"));
	assert_non_null(line_with(&r, "card", "client", "3"));
	l = line_with(&r, "reader", "name", "Reader A 00 00");
	assert_string_equal(report_get(l, "exclusive"), "hidden");
	assert_string_equal(report_get(l, "transaction"), "hidden");
	daemon_report_free(&r);

	a->lock_holder = NULL;
	handle_free(hd);
	handle_free(hb);
	handle_free(ha);
	readers_remove(&f->d.readers, idle);
	readers_remove(&f->d.readers, b);
	readers_remove(&f->d.readers, a);
	readers_destroy(&f->d.readers);
	free(f);
}

static void test_parse_rejects_what_is_no_report(void **state)
{
	(void)state;
	struct daemon_report r;
	assert_false(daemon_report_parse(strdup("socket\tpath=/x\n"), &r));
	daemon_report_free(&r);
	assert_true(daemon_report_parse(strdup("scardd\tpid=1\tnonsense\tk=v=w\n\n"), &r));
	const struct report_line *top = report_first(&r, "scardd");
	assert_int_equal(top->n, 2); /* a field without '=' is skipped */
	assert_string_equal(report_get(top, "k"), "v=w");
	assert_string_equal(report_get(top, "absent"), "");
	daemon_report_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_sees_every_client),
		cmocka_unit_test(test_other_user_sees_own_clients),
		cmocka_unit_test(test_who_holds_which_reader),
		cmocka_unit_test(test_parse_rejects_what_is_no_report),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
