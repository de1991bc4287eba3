/*
 * Unit tests: the reader model (readers.c, handles.c) alone: registry
 * positions and names, sharing modes, nested transactions, a card removed
 * during a transaction, and a reader removed while handles and lock waiters
 * still hold it. Run under ASan, the removal cases also prove that the
 * memory lives exactly as long as its last holder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <pcsclite.h>

#include "handles.h"
#include "readers.h"

static const uint8_t atr[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };

static int setup(void **state)
{
	static struct readers rs;
	readers_init(&rs);
	*state = &rs;
	return 0;
}

static int teardown(void **state)
{
	readers_destroy(*state);
	return 0;
}

static struct reader *add(struct readers *rs, const char *friendly, unsigned slot)
{
	char name[WIRE_MAX_READERNAME];
	readers_make_name(name, sizeof(name), friendly, 0, slot);
	struct reader *r = readers_add(rs, name, NULL, slot);
	assert_non_null(r);
	return r;
}

static void test_names_and_positions(void **state)
{
	struct readers *rs = *state;
	uint32_t events = rs->reader_events;
	struct reader *a = add(rs, "A", 0), *b = add(rs, "A", 1), *c = add(rs, "C", 0);

	assert_string_equal(a->name, "A 00 00");
	assert_string_equal(b->name, "A 00 01");
	assert_int_equal(a->position, 0);
	assert_int_equal(b->position, 1);
	assert_int_equal(c->position, 2);
	assert_int_equal(rs->count, 3);
	assert_int_equal(rs->reader_events, events + 3);
	assert_null(readers_add(rs, "A 00 00", NULL, 0)); /* a name is unique */
	assert_ptr_equal(readers_find(rs, "C 00 00"), c);

	readers_remove(rs, b);
	assert_null(readers_find(rs, "A 00 01"));
	assert_int_equal(rs->count, 2);
	assert_int_equal(rs->reader_events, events + 4);
	/* a newcomer takes the lowest free position */
	struct reader *d = add(rs, "D", 0);
	assert_int_equal(d->position, 1);

	struct wire_reader_state st[4];
	assert_int_equal(readers_snapshot(rs, st, 4, NULL), 3);
	assert_string_equal(st[0].name, "A 00 00");
	assert_string_equal(st[1].name, "D 00 00");
	assert_string_equal(st[3].name, "");
	assert_int_equal(readers_snapshot(rs, st, 2, "C*"), 2);
	assert_string_equal(st[0].name, "C 00 00");
	assert_string_equal(st[1].name, "A 00 00");
	/* D took B's position, not its serial: what was decided for B is not D's */
	assert_int_not_equal(d->serial, 0);
	assert_true(d->serial > c->serial && c->serial > a->serial);
}

static bool not_d(void *ctx, const struct reader *r)
{
	(*(int *)ctx)++;
	return strcmp(r->name, "D 00 00") != 0;
}

/* A client's view (the policy's filter): what it may not see leaves no gap. */
static void test_filtered_snapshot(void **state)
{
	struct readers *rs = *state;
	add(rs, "A", 0);
	add(rs, "D", 0);
	add(rs, "C", 0);
	struct wire_reader_state st[4];
	int asked = 0;
	assert_int_equal(readers_snapshot_where(rs, st, 4, NULL, not_d, &asked), 2);
	assert_int_equal(asked, 3);
	assert_string_equal(st[0].name, "A 00 00");
	assert_string_equal(st[1].name, "C 00 00");
	assert_string_equal(st[2].name, "");
	asked = 0;
	assert_int_equal(readers_snapshot_where(rs, st, 1, "C*", not_d, &asked), 1);
	assert_string_equal(st[0].name, "C 00 00");
}

static void test_capacity_only_grows(void **state)
{
	struct readers *rs = *state;
	struct reader *r[17];
	char friendly[8];
	for (int i = 0; i < 17; i++) {
		snprintf(friendly, sizeof(friendly), "R%d", i);
		r[i] = add(rs, friendly, 0);
	}
	assert_int_equal(readers_state_capacity(rs), 32);
	for (int i = 0; i < 17; i++)
		readers_remove(rs, r[i]);
	assert_int_equal(rs->count, 0);
	assert_int_equal(readers_state_capacity(rs), 32);
}

static void test_sharing_modes(void **state)
{
	struct readers *rs = *state;
	struct reader *r = add(rs, "S", 0);
	struct handle_list one = { 0 }, two = { 0 };

	assert_int_equal(handles_may_share(r, SCARD_SHARE_SHARED), SCARD_S_SUCCESS);
	struct handle *h1 = handle_new(&one, r, SCARD_SHARE_SHARED);
	struct handle *h2 = handle_new(&two, r, SCARD_SHARE_SHARED);
	assert_int_equal(r->sharing, 2);
	assert_int_not_equal(h1->id, h2->id);
	assert_ptr_equal(handle_find(&one, h1->id), h1);
	assert_null(handle_find(&one, h2->id)); /* another client's handle */
	assert_int_equal(handles_may_share(r, SCARD_SHARE_EXCLUSIVE), SCARD_E_SHARING_VIOLATION);
	assert_int_equal(handles_may_share(r, SCARD_SHARE_DIRECT), SCARD_S_SUCCESS);

	handle_free(h2);
	assert_int_equal(r->sharing, 1);
	handle_set_share_mode(h1, SCARD_SHARE_EXCLUSIVE);
	assert_int_equal(r->sharing, -1);
	assert_int_equal(handles_may_share(r, SCARD_SHARE_SHARED), SCARD_E_SHARING_VIOLATION);
	assert_true(readers_take_changed(rs));
	assert_false(readers_take_changed(rs));
	handle_free(h1);
	assert_int_equal(r->sharing, 0);
	assert_true(readers_take_changed(rs));
	assert_int_equal(one.n, 0);
	assert_int_equal(two.n, 0);
}

static void test_nested_transactions(void **state)
{
	struct readers *rs = *state;
	struct reader *r = add(rs, "T", 0);
	struct handle_list one = { 0 }, two = { 0 };
	struct handle *h1 = handle_new(&one, r, SCARD_SHARE_SHARED);
	struct handle *h2 = handle_new(&two, r, SCARD_SHARE_SHARED);
	struct reader_waiter w = { 0 };

	assert_true(handle_lock(h1));
	assert_true(handle_lock(h1)); /* nested */
	assert_true(handle_locked_out(h2));
	assert_false(handle_lock(h2));
	assert_false(handle_unlock(h2)); /* not the holder */
	reader_wait_lock(r, &w);
	assert_ptr_equal(reader_first_waiter(r), &w);

	assert_true(handle_unlock(h1));
	assert_ptr_equal(r->lock_holder, h1); /* one level left */
	assert_null(readers_next_woken(rs));
	assert_true(handle_unlock(h1));
	assert_null(r->lock_holder);
	assert_false(handle_locked_out(h2));

	/* the freed lock queues the reader once for its waiters */
	struct reader *woken = readers_next_woken(rs);
	assert_ptr_equal(woken, r);
	assert_null(readers_next_woken(rs));
	reader_unref(woken);
	reader_unwait(&w);
	assert_null(reader_first_waiter(r));

	/* a holder that goes away releases the lock */
	assert_true(handle_lock(h2));
	handle_free(h2);
	assert_null(r->lock_holder);
	assert_true(handle_lock(h1));
	handle_free(h1);
}

static void test_card_removed_during_transaction(void **state)
{
	struct readers *rs = *state;
	struct reader *r = add(rs, "R", 0);
	struct handle_list one = { 0 }, two = { 0 };
	struct reader_waiter w = { 0 };

	reader_card_inserted(r, atr, sizeof(atr), true);
	assert_true(reader_card_present(r));
	assert_int_equal(r->atr_len, sizeof(atr));
	uint32_t counter = r->event_counter;
	struct handle *h1 = handle_new(&one, r, SCARD_SHARE_SHARED);
	struct handle *h2 = handle_new(&two, r, SCARD_SHARE_SHARED);
	assert_true(handle_lock(h1));
	reader_wait_lock(r, &w);

	reader_card_removed(r);
	assert_false(reader_card_present(r));
	assert_int_equal(r->event_counter, counter + 1);
	assert_int_equal(r->atr_len, 0);
	assert_null(r->lock_holder);
	assert_int_equal(h1->event, HANDLE_EVENT_REMOVED);
	assert_int_equal(h2->event, HANDLE_EVENT_REMOVED);
	struct reader *woken = readers_next_woken(rs);
	assert_ptr_equal(woken, r);
	reader_unref(woken);
	reader_unwait(&w);
	handle_free(h1);
	handle_free(h2);
}

static void test_reader_removed_with_handles_and_waiters(void **state)
{
	struct readers *rs = *state;
	struct reader *r = add(rs, "Gone", 0);
	struct reader *other = add(rs, "Stays", 0);
	struct handle_list one = { 0 }, two = { 0 };
	struct reader_waiter w = { 0 };

	reader_card_inserted(r, atr, sizeof(atr), true);
	struct handle *h1 = handle_new(&one, r, SCARD_SHARE_SHARED);
	struct handle *h2 = handle_new(&two, r, SCARD_SHARE_SHARED);
	struct handle *h3 = handle_new(&two, other, SCARD_SHARE_SHARED);
	assert_true(handle_lock(h1));
	reader_wait_lock(r, &w);
	(void)readers_take_changed(rs);

	readers_remove(rs, r);
	assert_true(r->removed); /* still readable: handles hold it */
	assert_null(readers_find(rs, "Gone 00 00"));
	assert_int_equal(rs->count, 1);
	assert_true(readers_take_changed(rs));
	assert_null(r->lock_holder);
	assert_int_equal(h1->event, HANDLE_EVENT_REMOVED);
	assert_int_equal(h2->event, HANDLE_EVENT_REMOVED);
	assert_int_equal(h3->event, HANDLE_EVENT_NONE);

	struct wire_reader_state st[16];
	assert_int_equal(readers_snapshot(rs, st, 16, NULL), 1);
	assert_string_equal(st[0].name, "Stays 00 00");

	/* the waiter is woken to fail; the last holder frees the reader */
	struct reader *woken = readers_next_woken(rs);
	assert_ptr_equal(woken, r);
	reader_unref(woken);
	handle_free(h1);
	reader_unwait(&w);
	handle_free(h2);
	handle_free(h3);
	assert_int_equal(two.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_names_and_positions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filtered_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capacity_only_grows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sharing_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested_transactions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_card_removed_during_transaction, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reader_removed_with_handles_and_waiters, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
