/*
 * Unit tests for reader-state records and arrays: sizes per version, byte
 * layout at the documented offsets, round trips in both byte orders, name
 * truncation and zero padding.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

static const enum wire_byte_order orders[] = { WIRE_LITTLE_ENDIAN, WIRE_BIG_ENDIAN };

static struct wire_params params_for(int32_t minor, enum wire_byte_order order, uint32_t slots)
{
	struct wire_params p;

	wire_params_init(&p);
	p.proto = wire_proto_find(4, minor);
	p.order = order;
	p.reader_slots = slots;
	assert_non_null(p.proto);
	return p;
}

static struct wire_params short_params(enum wire_byte_order order)
{
	struct wire_params p = params_for(2, order, WIRE_LEGACY_READER_SLOTS);

	p.proto = wire_proto_find(4, 2)->older_layout;
	return p;
}

static void sample_state(struct wire_reader_state *st, unsigned i)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->name, sizeof(st->name), "Virtual Reader %02X 00", i);
	st->event_counter = 0x00010203u + i;
	st->state = 0x34;
	st->sharing = (int32_t)i - 1;
	for (unsigned k = 0; k < WIRE_MAX_ATR_SIZE; k++)
		st->atr[k] = (uint8_t)(0xA0 + k + i);
	st->atr_len = 20 + i;
	st->protocol = 2;
}

static void expect_word(const uint8_t *buf, size_t off, enum wire_byte_order order, uint32_t v)
{
	assert_int_equal(wire_get_u32(order, buf + off), v);
	if (order == WIRE_LITTLE_ENDIAN)
		assert_int_equal(buf[off], (uint8_t)v);
	else
		assert_int_equal(buf[off + 3], (uint8_t)v);
}

static void test_sizes(void **state)
{
	struct wire_params p;

	(void)state;
	for (int32_t minor = 2; minor <= 6; minor++) {
		p = params_for(minor, WIRE_LITTLE_ENDIAN, 16);
		assert_int_equal(wire_reader_record_size(&p), 184);
		assert_int_equal(wire_reader_array_size(&p), 2944);
	}
	p = short_params(WIRE_LITTLE_ENDIAN);
	assert_int_equal(wire_reader_record_size(&p), 156);
	assert_int_equal(wire_reader_array_size(&p), 2496);

	/* 4:6: whatever capacity the daemon announced. */
	static const uint32_t slots[] = { 0, 1, 2, 18, 48, 1000 };
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
		p = params_for(6, WIRE_BIG_ENDIAN, slots[i]);
		assert_int_equal(wire_reader_array_size(&p), (size_t)slots[i] * 184);
	}
	wire_params_init(&p);
	assert_int_equal(wire_reader_array_size(&p), 2944);
	assert_int_equal(wire_reader_record_size(NULL), 0);
	assert_int_equal(wire_reader_array_size(NULL), 0);
}

static void check_layout(struct wire_params p, size_t n)
{
	struct wire_reader_state st;
	uint8_t buf[4096];

	sample_state(&st, 3);
	st.sharing = -1;
	assert_int_equal(wire_encode_reader_states(&p, &st, 1, buf, sizeof(buf)),
			 wire_reader_array_size(&p));
	assert_string_equal((const char *)buf, "Virtual Reader 03 00");
	for (size_t i = strlen(st.name); i < n; i++)
		assert_int_equal(buf[i], 0);
	expect_word(buf, n, p.order, 0x00010206);
	expect_word(buf, n + 4, p.order, 0x34);
	expect_word(buf, n + 8, p.order, 0xFFFFFFFF);
	assert_memory_equal(buf + n + 12, st.atr, WIRE_MAX_ATR_SIZE);
	for (size_t i = n + 12 + WIRE_MAX_ATR_SIZE; i < n + 48; i++)
		assert_int_equal(buf[i], 0); /* padding */
	expect_word(buf, n + 48, p.order, 23);
	expect_word(buf, n + 52, p.order, 2);
}

/* 184-byte record: counter 128, state 132, sharing 136, ATR 140, length 176,
 * protocol 180; 156-byte record: the same shifted by 28. */
static void test_layout(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		check_layout(params_for(4, orders[o], 16), 128);
		check_layout(params_for(6, orders[o], 2), 128);
		check_layout(short_params(orders[o]), 100);
	}
}

static void test_layout_literal_offsets(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN, 1);
	struct wire_reader_state st;
	uint8_t buf[184];

	(void)state;
	sample_state(&st, 0);
	assert_int_equal(wire_encode_reader_states(&p, &st, 1, buf, sizeof(buf)), 184);
	assert_int_equal(buf[128], 0x03);
	assert_int_equal(buf[131], 0x00);
	assert_int_equal(buf[132], 0x34);
	assert_int_equal(buf[136], 0xFF); /* sharing -1 */
	assert_int_equal(buf[140], 0xA0);
	assert_int_equal(buf[172], 0xA0 + 32);
	assert_int_equal(buf[176], 20);
	assert_int_equal(buf[180], 2);
}

static void roundtrip(struct wire_params p, size_t n)
{
	size_t size = wire_reader_array_size(&p);
	uint8_t *buf = malloc(size);
	struct wire_reader_state *in = calloc(p.reader_slots, sizeof(*in));
	struct wire_reader_state *out = calloc(p.reader_slots, sizeof(*out));

	assert_non_null(buf);
	assert_non_null(in);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++)
		sample_state(&in[i], (unsigned)i);
	assert_int_equal(wire_encode_reader_states(&p, in, n, buf, size), size);
	assert_int_equal(wire_decode_reader_states(&p, buf, size, out, p.reader_slots),
			 p.reader_slots);
	struct wire_reader_state empty;
	memset(&empty, 0, sizeof(empty));
	for (size_t i = 0; i < p.reader_slots; i++)
		assert_memory_equal(&out[i], i < n ? &in[i] : &empty, sizeof(empty));
	free(buf);
	free(in);
	free(out);
}

static void test_roundtrip(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		roundtrip(params_for(4, orders[o], 16), 16);
		roundtrip(params_for(4, orders[o], 16), 3);
		roundtrip(params_for(5, orders[o], 16), 0);
		roundtrip(params_for(6, orders[o], 18), 18);
		roundtrip(params_for(6, orders[o], 2), 1);
		roundtrip(params_for(4, orders[o], 48), 17); /* patched 48-slot peers */
		roundtrip(short_params(orders[o]), 16);
	}
}

static void test_zero_padding(void **state)
{
	struct wire_params p = params_for(4, WIRE_BIG_ENDIAN, 16);
	struct wire_reader_state st[2];
	uint8_t buf[2944];

	(void)state;
	memset(buf, 0xEE, sizeof(buf));
	sample_state(&st[0], 0);
	sample_state(&st[1], 1);
	assert_int_equal(wire_encode_reader_states(&p, st, 2, buf, sizeof(buf)), 2944);
	for (size_t i = 2 * 184; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);

	/* No states at all: an all-zero array of the full size. */
	memset(buf, 0xEE, sizeof(buf));
	assert_int_equal(wire_encode_reader_states(&p, NULL, 0, buf, sizeof(buf)), 2944);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
}

/* More states than slots: the extra ones are dropped, size unchanged. */
static void test_extra_states_dropped(void **state)
{
	struct wire_params p = params_for(6, WIRE_LITTLE_ENDIAN, 2);
	struct wire_reader_state st[5];
	uint8_t buf[5 * 184];

	(void)state;
	for (unsigned i = 0; i < 5; i++)
		sample_state(&st[i], i);
	memset(buf, 0xEE, sizeof(buf));
	assert_int_equal(wire_encode_reader_states(&p, st, 5, buf, sizeof(buf)), 2 * 184);
	for (size_t i = 2 * 184; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xEE); /* nothing written past the array */
	struct wire_reader_state out[5];
	assert_int_equal(wire_decode_reader_states(&p, buf, 2 * 184, out, 5), 2);
	assert_string_equal(out[1].name, st[1].name);
}

static void test_name_truncation(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params ps[] = { params_for(4, orders[o], 1), short_params(orders[o]) };

		for (size_t v = 0; v < 2; v++) {
			struct wire_params p = ps[v];
			size_t name_len = p.proto->reader_name_len;
			struct wire_reader_state st;

			p.reader_slots = 1;
			sample_state(&st, 0);
			memset(st.name, 'N', sizeof(st.name)); /* no NUL anywhere */
			uint8_t buf[2944];
			assert_int_equal(wire_encode_reader_states(&p, &st, 1, buf, sizeof(buf)),
					 name_len + 56);
			assert_int_equal(buf[name_len - 2], 'N');
			assert_int_equal(buf[name_len - 1], 0);
			expect_word(buf, name_len, p.order, st.event_counter);
			struct wire_reader_state out;
			assert_int_equal(wire_decode_reader_states(&p, buf, name_len + 56, &out, 1),
					 1);
			assert_int_equal(strlen(out.name), name_len - 1);

			/* A peer's name without NUL is cut at the field's last byte. */
			memset(buf, 'M', name_len);
			assert_int_equal(wire_decode_reader_states(&p, buf, name_len + 56, &out, 1),
					 1);
			assert_int_equal(strlen(out.name), name_len - 1);
			assert_int_equal(out.event_counter, st.event_counter);
		}
	}
}

/* Bytes after a name's NUL are not part of the value. */
static void test_name_garbage_after_nul(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN, 1);
	struct wire_reader_state out;
	uint8_t buf[184] = { 0 };

	(void)state;
	memcpy(buf, "R\0junk", 6);
	assert_int_equal(wire_decode_reader_states(&p, buf, sizeof(buf), &out, 1), 1);
	assert_string_equal(out.name, "R");
	for (size_t i = 1; i < sizeof(out.name); i++)
		assert_int_equal(out.name[i], 0);
}

/* The "not initialised" ATR length (34) and odd values pass through. */
static void test_atr_len_passthrough(void **state)
{
	struct wire_params p = params_for(4, WIRE_BIG_ENDIAN, 1);
	struct wire_reader_state st;
	uint8_t buf[184];

	(void)state;
	sample_state(&st, 0);
	st.atr_len = 34;
	assert_int_equal(wire_encode_reader_states(&p, &st, 1, buf, sizeof(buf)), 184);
	struct wire_reader_state out;
	assert_int_equal(wire_decode_reader_states(&p, buf, sizeof(buf), &out, 1), 1);
	assert_int_equal(out.atr_len, 34);
	assert_int_equal(out.sharing, st.sharing);
}

static void test_short_buffers(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN, 16);
	struct wire_reader_state st[16];
	uint8_t buf[2944];

	(void)state;
	for (unsigned i = 0; i < 16; i++)
		sample_state(&st[i], i);
	assert_int_equal(wire_encode_reader_states(&p, st, 16, buf, 2943), 0);
	assert_int_equal(wire_encode_reader_states(&p, st, 16, NULL, 2944), 0);
	assert_int_equal(wire_encode_reader_states(&p, NULL, 1, buf, 2944), 0);
	assert_int_equal(wire_encode_reader_states(&p, st, 16, buf, 2944), 2944);

	/* Decoding stops at whole records and at max. */
	assert_int_equal(wire_decode_reader_states(&p, buf, 183, st, 16), 0);
	assert_int_equal(wire_decode_reader_states(&p, buf, 184, st, 16), 1);
	assert_int_equal(wire_decode_reader_states(&p, buf, 2943, st, 16), 15);
	assert_int_equal(wire_decode_reader_states(&p, buf, 2944, st, 4), 4);
	assert_int_equal(wire_decode_reader_states(&p, buf, 2944, st, 0), 0);
	assert_int_equal(wire_decode_reader_states(&p, NULL, 2944, st, 16), 0);
	assert_int_equal(wire_decode_reader_states(NULL, buf, 2944, st, 16), 0);

	/* Zero slots: nothing to send. */
	p.reader_slots = 0;
	assert_int_equal(wire_encode_reader_states(&p, st, 16, buf, sizeof(buf)), 0);
}

/* The decoded array from 0x16/0x17 of a 4:6 daemon. */
static void test_4_6_variable_array(void **state)
{
	(void)state;
	for (uint32_t n = 1; n <= 40; n++) {
		struct wire_params p = params_for(6, WIRE_LITTLE_ENDIAN, n);

		assert_int_equal(wire_reader_array_size(&p), n * 184);
		roundtrip(p, n / 2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_layout_literal_offsets),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_zero_padding),
		cmocka_unit_test(test_extra_states_dropped),
		cmocka_unit_test(test_name_truncation),
		cmocka_unit_test(test_name_garbage_after_nul),
		cmocka_unit_test(test_atr_len_passthrough),
		cmocka_unit_test(test_short_buffers),
		cmocka_unit_test(test_4_6_variable_array),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
