/*
 * ifd-virtual's slots and control channel: presence as the daemon sees it
 * (swaps always show a removal), the event wait, power and transmit rules,
 * and the control commands over a real unix socket.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <pcsclite.h>

#include "vinstance.h"

static void test_presence_insert_remove(void **state)
{
	(void)state;
	struct vslot s;
	vslot_init(&s);
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	vslot_insert(&s, vcard_builtin(), "builtin");
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	assert_true(vslot_remove(&s));
	assert_false(vslot_remove(&s));
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	vslot_destroy(&s);
}

/*
 * The waits are checked by what ended them (vslot_wait), never by how long
 * they took: a busy machine can stretch any wait, and a long timeout that
 * is reached fails by its reason as well as by meson's timeout.
 */
#define LONG_WAIT_MS 60000

static void test_swap_shows_removal_first(void **state)
{
	(void)state;
	struct vslot s;
	vslot_init(&s);
	vslot_insert(&s, vcard_builtin(), "a");
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	/* swap: the daemon must see the slot empty (for every look during the
	 * gap: pcscd asks twice in a row), then the new card */
	vslot_insert(&s, vcard_builtin(), "b");
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	/* its wait returns when the gap ends, not at the timeout */
	assert_int_equal(vslot_wait(&s, LONG_WAIT_MS), VSLOT_WOKE_GAP);
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	/* then it blocks again */
	assert_int_equal(vslot_wait(&s, 50), VSLOT_WOKE_TIMEOUT);
	/* remove + insert between two looks is a swap too */
	vslot_remove(&s);
	vslot_insert(&s, vcard_builtin(), "c");
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	assert_int_equal(vslot_wait(&s, LONG_WAIT_MS), VSLOT_WOKE_GAP);
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	/* a removal during the gap: empty, and no wake-up storm afterwards */
	vslot_insert(&s, vcard_builtin(), "d");
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	vslot_remove(&s);
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	assert_int_not_equal(vslot_wait(&s, LONG_WAIT_MS), VSLOT_WOKE_TIMEOUT);
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	assert_int_equal(vslot_wait(&s, 50), VSLOT_WOKE_TIMEOUT);
	vslot_destroy(&s);
}

struct waiter {
	struct vslot *s;
	int timeout;
	enum vslot_wake why;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	w->why = vslot_wait(w->s, w->timeout);
	return NULL;
}

static void test_wait_event(void **state)
{
	(void)state;
	struct vslot s;
	vslot_init(&s);
	/* first wait: at once (the daemon has not looked yet) */
	assert_int_equal(vslot_wait(&s, LONG_WAIT_MS), VSLOT_WOKE_EVENT);
	vslot_presence(&s);
	/* nothing happens: the timeout */
	assert_int_equal(vslot_wait(&s, 50), VSLOT_WOKE_TIMEOUT);
	/* an insertion wakes a waiter, whether it is already waiting or not yet */
	struct waiter w = { &s, LONG_WAIT_MS, VSLOT_WOKE_TIMEOUT };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, wait_thread, &w), 0);
	vslot_insert(&s, vcard_builtin(), "builtin");
	pthread_join(th, NULL);
	assert_int_equal(w.why, VSLOT_WOKE_EVENT);
	/* an event not yet looked at: the next wait returns at once */
	vslot_presence(&s);
	vslot_remove(&s);
	assert_int_equal(vslot_wait(&s, LONG_WAIT_MS), VSLOT_WOKE_EVENT);
	/* stop wakes a waiter, once: the next wait blocks again (pcscd stops
	 * the wait after each disconnect and then waits again) */
	vslot_presence(&s);
	w.why = VSLOT_WOKE_TIMEOUT;
	assert_int_equal(pthread_create(&th, NULL, wait_thread, &w), 0);
	vslot_stop(&s);
	pthread_join(th, NULL);
	assert_int_equal(w.why, VSLOT_WOKE_STOP);
	assert_int_equal(vslot_wait(&s, 50), VSLOT_WOKE_TIMEOUT);
	/* a stop with nobody waiting ends the next wait at once (no lost wake-up) */
	vslot_stop(&s);
	assert_int_equal(vslot_wait(&s, LONG_WAIT_MS), VSLOT_WOKE_STOP);
	assert_int_equal(vslot_wait(&s, 50), VSLOT_WOKE_TIMEOUT);
	/* closed: every wait returns at once */
	vslot_close(&s);
	for (int i = 0; i < 3; i++)
		assert_int_equal(vslot_wait(&s, LONG_WAIT_MS), VSLOT_WOKE_CLOSED);
	/* and the driver's entry point answers as the API wants, whatever woke it */
	assert_int_equal(vslot_wait_event(&s, LONG_WAIT_MS), IFD_SUCCESS);
	vslot_destroy(&s);
}

static void test_power_and_transmit(void **state)
{
	(void)state;
	struct vslot s;
	vslot_init(&s);
	UCHAR atr[64], rx[300];
	DWORD atr_len = sizeof(atr), rx_len = sizeof(rx);
	const uint8_t sel[] = { 0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00 };
	assert_int_equal(vslot_power(&s, IFD_POWER_UP, atr, &atr_len), IFD_ICC_NOT_PRESENT);
	assert_int_equal(atr_len, 0);
	assert_int_equal(vslot_transmit(&s, 1, sel, sizeof(sel), rx, &rx_len), IFD_ICC_NOT_PRESENT);

	vslot_insert(&s, vcard_builtin(), "builtin");
	rx_len = sizeof(rx);
	/* not powered yet */
	assert_int_equal(vslot_transmit(&s, 1, sel, sizeof(sel), rx, &rx_len),
			 IFD_COMMUNICATION_ERROR);
	atr_len = 4;
	assert_int_equal(vslot_power(&s, IFD_POWER_UP, atr, &atr_len),
			 IFD_ERROR_INSUFFICIENT_BUFFER);
	atr_len = sizeof(atr);
	assert_int_equal(vslot_power(&s, IFD_POWER_UP, atr, &atr_len), IFD_SUCCESS);
	assert_int_equal(atr_len, 13);
	assert_int_equal(atr[0], 0x3B);
	DWORD alen = sizeof(atr);
	assert_int_equal(vslot_atr(&s, atr, &alen), IFD_SUCCESS);
	assert_int_equal(alen, 13);
	rx_len = sizeof(rx);
	assert_int_equal(vslot_transmit(&s, 1, sel, sizeof(sel), rx, &rx_len), IFD_SUCCESS);
	assert_int_equal(rx_len, 2);
	assert_int_equal(rx[0], 0x90);
	/* a response that does not fit */
	const uint8_t chal[] = { 0x00, 0x84, 0x00, 0x00, 0x20 };
	rx_len = 8;
	assert_int_equal(vslot_transmit(&s, 1, chal, sizeof(chal), rx, &rx_len),
			 IFD_ERROR_INSUFFICIENT_BUFFER);
	/* protocol negotiation */
	assert_int_equal(vslot_set_protocol(&s, SCARD_PROTOCOL_T1), IFD_SUCCESS);
	assert_int_equal(vslot_set_protocol(&s, SCARD_PROTOCOL_RAW), IFD_PROTOCOL_NOT_SUPPORTED);
	/* fast mode: 90 00 to anything */
	vslot_set_fast(&s, true);
	const uint8_t junk[] = { 0xFF };
	rx_len = sizeof(rx);
	assert_int_equal(vslot_transmit(&s, 1, junk, sizeof(junk), rx, &rx_len), IFD_SUCCESS);
	assert_int_equal(rx_len, 2);
	assert_int_equal(rx[0], 0x90);
	assert_int_equal(rx[1], 0x00);
	vslot_set_fast(&s, false);
	/* power down, then the card is not powered */
	assert_int_equal(vslot_power(&s, IFD_POWER_DOWN, NULL, NULL), IFD_SUCCESS);
	rx_len = sizeof(rx);
	assert_int_equal(vslot_transmit(&s, 1, sel, sizeof(sel), rx, &rx_len),
			 IFD_COMMUNICATION_ERROR);
	vslot_destroy(&s);
}

static void test_mute_reseats_card(void **state)
{
	(void)state;
	struct vslot s;
	vslot_init(&s);
	vslot_insert(&s, vcard_builtin(), "builtin");
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	UCHAR atr[64];
	DWORD atr_len = sizeof(atr);
	assert_int_equal(vslot_power(&s, IFD_POWER_UP, atr, &atr_len), IFD_SUCCESS);
	vslot_set_mute(&s, true);
	/* the daemon sees the card leave and come back, then cannot power it */
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	vslot_wait_event(&s, 5000);
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	atr_len = sizeof(atr);
	assert_int_equal(vslot_power(&s, IFD_POWER_UP, atr, &atr_len), IFD_ERROR_POWER_ACTION);
	assert_int_equal(atr_len, 0);
	UCHAR rx[16];
	DWORD rx_len = sizeof(rx);
	const uint8_t sel[] = { 0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00 };
	assert_int_equal(vslot_transmit(&s, 1, sel, sizeof(sel), rx, &rx_len),
			 IFD_RESPONSE_TIMEOUT);
	/* setting the same value again changes nothing */
	vslot_set_mute(&s, true);
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	vslot_set_mute(&s, false);
	assert_int_equal(vslot_presence(&s), IFD_ICC_NOT_PRESENT);
	vslot_wait_event(&s, 5000);
	assert_int_equal(vslot_presence(&s), IFD_ICC_PRESENT);
	atr_len = sizeof(atr);
	assert_int_equal(vslot_power(&s, IFD_POWER_UP, atr, &atr_len), IFD_SUCCESS);
	/* muting an empty slot just marks it; the next card is mute */
	vslot_remove(&s);
	vslot_set_mute(&s, true);
	vslot_insert(&s, vcard_builtin(), "builtin");
	atr_len = sizeof(atr);
	assert_int_equal(vslot_power(&s, IFD_POWER_UP, atr, &atr_len), IFD_ERROR_POWER_ACTION);
	vslot_destroy(&s);
}

/* ---- instances and the control channel ---- */

static struct vinstance *make_instance(const char *control)
{
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	cfg.readers = 3;
	if (control)
		cfg.control = strdup(control);
	char err[256];
	struct vinstance *inst = vinstance_new(&cfg, err, sizeof(err));
	assert_non_null(inst);
	vconfig_clear(&cfg);
	return inst;
}

static void cmd(struct vinstance *inst, const char *line, const char *want)
{
	char reply[VCONTROL_MAX_REPLY];
	vinstance_command(inst, line, reply, sizeof(reply));
	if (!strstr(reply, want))
		fail_msg("'%s': expected '%s' in '%s'", line, want, reply);
}

static void test_commands(void **state)
{
	(void)state;
	struct vinstance *inst = make_instance(NULL);
	assert_int_equal(inst->n_slots, 3);
	assert_non_null(inst->slots[0].card); /* the default: builtin in reader 0 */
	cmd(inst, "status", "slot 0 card=present");
	cmd(inst, "status", "slot 2 card=absent");
	cmd(inst, "status", "ok readers=3");
	cmd(inst, "status 1", "slot 1 card=absent mute=no fast=no");
	cmd(inst, "insert 1", "ok inserted card in reader 1 (builtin)");
	cmd(inst, "insert 1 builtin", "ok swapped card in reader 1");
	cmd(inst, "remove 1", "ok removed");
	cmd(inst, "remove 1", "ok reader was already empty");
	cmd(inst, "insert 3", "error no reader 3 here: this driver has 3 readers (0..2)");
	cmd(inst, "insert -1", "error no reader -1");
	cmd(inst, "insert x", "error no reader x");
	cmd(inst, "insert 2 /nonexistent/file.card", "error cannot open /nonexistent/file.card");
	cmd(inst, "mute 0", "ok reader 0 muted");
	cmd(inst, "status 0", "mute=yes");
	cmd(inst, "unmute 0", "ok reader 0 answers again");
	cmd(inst, "fast 0 on", "ok fast mode on");
	cmd(inst, "status 0", "fast=yes");
	cmd(inst, "fast 0 maybe", "error usage: fast N on|off");
	cmd(inst, "frobnicate", "error unknown command 'frobnicate'");
	cmd(inst, "", "error empty command");
	cmd(inst, "help", "insert N");
	cmd(inst, "version", "ok ifd-virtual");
	cmd(inst, "remove", "error usage: remove N");
	vinstance_free(inst);
}

static void test_card_file_with_spaces(void **state)
{
	(void)state;
	char dir[] = "/tmp/vslot-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/my card.card", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("atr T=1\n", f);
	fclose(f);
	struct vinstance *inst = make_instance(NULL);
	char line[300];
	snprintf(line, sizeof(line), "insert 2 %s", path);
	cmd(inst, line, "ok inserted");
	cmd(inst, "status 2", "atr=3B8701");
	snprintf(line, sizeof(line), "file=%s", path);
	cmd(inst, "status 2", line);
	vinstance_free(inst);
	/* a bad card file: the error names the line */
	f = fopen(path, "w");
	fputs("atr T=1\nwhat\n", f);
	fclose(f);
	inst = make_instance(NULL);
	snprintf(line, sizeof(line), "insert 2 %s", path);
	cmd(inst, line, "line 2: unknown keyword 'what'");
	vinstance_free(inst);
	unlink(path);
	rmdir(dir);
}

static int connect_to(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	assert_true(strlen(path) < sizeof(addr.sun_path));
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends lines, reads until the last expected terminal line arrives. */
static void roundtrip(int fd, const char *send_text, int replies, char *out, size_t cap)
{
	assert_int_equal(write(fd, send_text, strlen(send_text)), (ssize_t)strlen(send_text));
	size_t len = 0;
	int done = 0;
	while (done < replies && len < cap - 1) {
		ssize_t n = read(fd, out + len, cap - 1 - len);
		assert_true(n > 0);
		len += (size_t)n;
		out[len] = 0;
		done = 0;
		for (char *p = out; (p = strstr(p, "\n")); p++) {
			char *line_start = p;
			while (line_start > out && line_start[-1] != '\n')
				line_start--;
			if (!strncmp(line_start, "ok", 2) || !strncmp(line_start, "error", 5))
				done++;
		}
	}
}

static void test_control_socket(void **state)
{
	(void)state;
	char dir[] = "/tmp/vctl-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/sub/ctl.sock", dir); /* directory made on demand */
	struct vinstance *inst = make_instance(path);
	char err[256];
	assert_int_equal(vinstance_start_control(inst, err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	/* a second instance on the same path is refused: someone serves it */
	struct vinstance *other = make_instance(path);
	assert_int_equal(vinstance_start_control(other, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "another driver instance"));
	vinstance_free(other);
	assert_int_equal(stat(path, &st), 0); /* the first one's socket stays */

	int fd = connect_to(path);
	assert_true(fd >= 0);
	char buf[8192];
	/* two commands in one write, CRLF tolerated */
	roundtrip(fd, "insert 2\r\nstatus 2\n", 2, buf, sizeof(buf));
	assert_non_null(strstr(buf, "ok inserted card in reader 2"));
	assert_non_null(strstr(buf, "slot 2 card=present"));
	close(fd);
	assert_non_null(inst->slots[2].card);

	/* an over-long line is refused and the connection closed */
	fd = connect_to(path);
	char *big = malloc(VCONTROL_MAX_LINE + 10);
	memset(big, 'x', VCONTROL_MAX_LINE + 9);
	big[VCONTROL_MAX_LINE + 9] = 0;
	roundtrip(fd, big, 1, buf, sizeof(buf));
	assert_non_null(strstr(buf, "error line too long"));
	free(big);
	close(fd);

	vinstance_free(inst);
	/* closing removes the socket */
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(connect_to(path), -1);

	/* a stale socket file (nobody listening) is replaced */
	int stale = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	assert_true(strlen(path) < sizeof(addr.sun_path));
	memcpy(addr.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(stale, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(stale);
	inst = make_instance(path);
	assert_int_equal(vinstance_start_control(inst, err, sizeof(err)), 0);
	fd = connect_to(path);
	assert_true(fd >= 0);
	roundtrip(fd, "version\n", 1, buf, sizeof(buf));
	assert_non_null(strstr(buf, "ok ifd-virtual"));
	close(fd);
	vinstance_free(inst);

	snprintf(path, sizeof(path), "%s/sub", dir);
	rmdir(path);
	rmdir(dir);
}

static void test_bad_card_fails_instance(void **state)
{
	(void)state;
	struct vconfig cfg;
	vconfig_defaults(&cfg);
	free(cfg.reader[0].card);
	cfg.reader[0].card = strdup("/nonexistent.card");
	char err[256];
	assert_null(vinstance_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "card.0: cannot open /nonexistent.card"));
	vconfig_clear(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_presence_insert_remove),
		cmocka_unit_test(test_swap_shows_removal_first),
		cmocka_unit_test(test_wait_event),
		cmocka_unit_test(test_power_and_transmit),
		cmocka_unit_test(test_mute_reseats_card),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_card_file_with_spaces),
		cmocka_unit_test(test_control_socket),
		cmocka_unit_test(test_bad_card_fails_instance),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
