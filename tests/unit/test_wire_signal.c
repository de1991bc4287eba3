/*
 * Unit tests for an event signal inside another 4:6 answer (pcsc-lite 2.5):
 * in front of the CMD_GET_READERS_STATE_SIZE count
 * (wire_decode_count_after_wait) and in front of a record of the array
 * (wire_take_array_signal). The byte streams are built here the way such a
 * daemon writes them: records encoded by the codec, the signal spliced in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pcsclite.h>

#include "wire.h"

#define SLOTS 4u
#define SIG WIRE_EVENT_SIGNAL_SIZE

static const enum wire_byte_order orders[] = { WIRE_LITTLE_ENDIAN, WIRE_BIG_ENDIAN };

static struct wire_params params_4_6(enum wire_byte_order order)
{
	struct wire_params p;

	wire_params_init(&p);
	p.proto = wire_proto_find(4, 6);
	p.order = order;
	p.reader_slots = SLOTS;
	assert_non_null(p.proto);
	return p;
}

static void put_signal(const struct wire_params *p, uint8_t *at, uint32_t rv)
{
	wire_put_u32(p->order, at, 0);
	wire_put_u32(p->order, at + 4, rv);
}

/* ---- the count ---- */

/* Feeds the stream the way a client reads it: exactly what is asked for. */
static int feed_count(const struct wire_params *p, const uint8_t *stream, size_t stream_len,
		      struct wire_count_answer *out, size_t *consumed)
{
	size_t have = 0, need = 0;
	int rc;

	while ((rc = wire_decode_count_after_wait(p, stream, have, &need, out)) == WIRE_NEED_MORE) {
		assert_true(need > have);
		assert_true(need <= WIRE_COUNT_AFTER_WAIT_MAX);
		assert_true(need <= stream_len);
		have = need;
	}
	*consumed = have;
	return rc;
}

static void test_count_plain(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params p = params_4_6(orders[o]);
		struct wire_count_answer a;
		uint8_t stream[4];
		size_t used;

		wire_put_u32(p.order, stream, 32);
		assert_int_equal(feed_count(&p, stream, sizeof(stream), &a, &used), WIRE_OK);
		assert_int_equal(used, 4);
		assert_int_equal(a.count, 32);
		assert_false(a.signalled);
	}
}

static void test_count_after_signal(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params p = params_4_6(orders[o]);
		struct wire_count_answer a;
		uint8_t stream[SIG + 4];
		size_t used;

		put_signal(&p, stream, (uint32_t)SCARD_E_CANCELLED);
		wire_put_u32(p.order, stream + SIG, 48);
		assert_int_equal(feed_count(&p, stream, sizeof(stream), &a, &used), WIRE_OK);
		assert_int_equal(used, SIG + 4);
		assert_true(a.signalled);
		assert_int_equal(a.signal_rv, (uint32_t)SCARD_E_CANCELLED);
		assert_int_equal(a.count, 48);

		/* A zero after the signal is a count (of nothing), not a second signal. */
		put_signal(&p, stream, SCARD_S_SUCCESS);
		wire_put_u32(p.order, stream + SIG, 0);
		assert_int_equal(feed_count(&p, stream, sizeof(stream), &a, &used), WIRE_OK);
		assert_int_equal(used, SIG + 4);
		assert_true(a.signalled);
		assert_int_equal(a.signal_rv, SCARD_S_SUCCESS);
		assert_int_equal(a.count, 0);
	}
}

static void test_count_refusals(void **state)
{
	struct wire_params p = params_4_6(WIRE_LITTLE_ENDIAN);
	struct wire_params p44 = p;
	struct wire_count_answer a;
	uint8_t stream[SIG + 4] = { 0 };
	size_t need = 0;

	(void)state;
	p44.proto = wire_proto_find(4, 4); /* no CMD_GET_READERS_STATE_SIZE */
	assert_int_equal(wire_decode_count_after_wait(&p44, stream, 4, &need, &a),
			 WIRE_E_UNKNOWN_CMD);
	assert_int_equal(wire_decode_count_after_wait(NULL, stream, 4, &need, &a), WIRE_E_INVALID);
	assert_int_equal(wire_decode_count_after_wait(&p, NULL, 4, &need, &a), WIRE_E_INVALID);
	assert_int_equal(wire_decode_count_after_wait(&p, stream, 4, NULL, &a), WIRE_E_INVALID);
	assert_int_equal(wire_decode_count_after_wait(&p, stream, 4, &need, NULL), WIRE_E_INVALID);
	/* nothing read yet: the count's four bytes first */
	assert_int_equal(wire_decode_count_after_wait(&p, NULL, 0, &need, &a), WIRE_NEED_MORE);
	assert_int_equal(need, 4);
}

/* ---- the array ---- */

/* SLOTS records: named readers at the positions in `named`, empty slots elsewhere. */
static size_t make_array(const struct wire_params *p, const bool named[SLOTS], uint8_t *buf,
			 size_t cap)
{
	struct wire_reader_state st[SLOTS];

	memset(st, 0, sizeof(st));
	for (unsigned i = 0; i < SLOTS; i++) {
		if (!named[i])
			continue;
		snprintf(st[i].name, sizeof(st[i].name), "Virtual Reader 00 %02u", i);
		st[i].state = 0x34;
		st[i].atr_len = 4;
	}
	return wire_encode_reader_states(p, st, SLOTS, buf, cap);
}

/* The array as a 2.5 daemon writes it with the signal in front of record k,
 * cut to the array's length (the rest is still on the socket). */
static void splice_signal(const struct wire_params *p, const uint8_t *array, size_t total, size_t k,
			  uint32_t rv, uint8_t *out)
{
	size_t record = wire_reader_record_size(p);

	memcpy(out, array, k * record);
	put_signal(p, out + k * record, rv);
	memcpy(out + k * record + SIG, array + k * record, total - k * record - SIG);
}

static void test_array_signal_each_record(void **state)
{
	static const bool named[SLOTS] = { true, true, true, true };

	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params p = params_4_6(orders[o]);
		uint8_t array[SLOTS * 184], got[SLOTS * 184];
		size_t total = make_array(&p, named, array, sizeof(array));
		uint32_t rv = 0xdead;

		assert_int_equal(total, SLOTS * wire_reader_record_size(&p));
		for (size_t k = 0; k < SLOTS; k++) {
			splice_signal(&p, array, total, k, (uint32_t)SCARD_E_CANCELLED, got);
			assert_int_equal(wire_take_array_signal(&p, got, total, &rv), SIG);
			assert_int_equal(rv, (uint32_t)SCARD_E_CANCELLED);
			/* everything but the last SIG bytes is the array again */
			assert_memory_equal(got, array, total - SIG);
		}
	}
}

static void test_array_without_signal(void **state)
{
	static const bool named[SLOTS] = { true, false, true, false };
	struct wire_params p = params_4_6(WIRE_LITTLE_ENDIAN);
	uint8_t array[SLOTS * 184], copy[SLOTS * 184];
	size_t total = make_array(&p, named, array, sizeof(array));
	uint32_t rv = 0xdead;

	(void)state;
	memcpy(copy, array, total);
	/* empty slots start with a zero word too, but no name follows */
	assert_int_equal(wire_take_array_signal(&p, copy, total, &rv), 0);
	assert_memory_equal(copy, array, total);
	assert_int_equal(rv, 0xdead);
}

/* In front of an empty slot the signal shows at the next named record;
 * with none after it, it is left where it is. */
static void test_array_signal_before_empty_slot(void **state)
{
	static const bool named[SLOTS] = { true, false, true, false };
	struct wire_params p = params_4_6(WIRE_LITTLE_ENDIAN);
	uint8_t array[SLOTS * 184], got[SLOTS * 184];
	size_t total = make_array(&p, named, array, sizeof(array));
	uint32_t rv = 0xdead;

	(void)state;
	splice_signal(&p, array, total, 1, SCARD_S_SUCCESS, got);
	assert_int_equal(wire_take_array_signal(&p, got, total, &rv), SIG);
	assert_int_equal(rv, SCARD_S_SUCCESS);
	assert_memory_equal(got, array, total - SIG);

	splice_signal(&p, array, total, 3, SCARD_S_SUCCESS, got);
	assert_int_equal(wire_take_array_signal(&p, got, total, &rv), 0);
	size_t record = wire_reader_record_size(&p);
	assert_memory_equal(got + 3 * record, (uint8_t[SIG]){ 0 }, SIG);
}

/* Only the rv values a signal carries; only whole records. */
static void test_array_signal_refusals(void **state)
{
	static const bool named[SLOTS] = { true, true, true, true };
	struct wire_params p = params_4_6(WIRE_LITTLE_ENDIAN);
	uint8_t array[SLOTS * 184], got[SLOTS * 184];
	size_t total = make_array(&p, named, array, sizeof(array));
	uint32_t rv = 0xdead;

	(void)state;
	splice_signal(&p, array, total, 2, (uint32_t)SCARD_F_INTERNAL_ERROR, got);
	assert_int_equal(wire_take_array_signal(&p, got, total, &rv), 0);
	/* a signal past the whole records given is not looked at */
	splice_signal(&p, array, total, 2, SCARD_S_SUCCESS, got);
	size_t record = wire_reader_record_size(&p);
	assert_int_equal(wire_take_array_signal(&p, got, 2 * record + record / 2, &rv), 0);
	assert_int_equal(wire_take_array_signal(&p, got, total, &rv), SIG);
	assert_int_equal(wire_take_array_signal(NULL, got, total, &rv), 0);
	assert_int_equal(wire_take_array_signal(&p, NULL, total, &rv), 0);
	assert_int_equal(wire_take_array_signal(&p, got, total, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count_plain),
		cmocka_unit_test(test_count_after_signal),
		cmocka_unit_test(test_count_refusals),
		cmocka_unit_test(test_array_signal_each_record),
		cmocka_unit_test(test_array_without_signal),
		cmocka_unit_test(test_array_signal_before_empty_slot),
		cmocka_unit_test(test_array_signal_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
