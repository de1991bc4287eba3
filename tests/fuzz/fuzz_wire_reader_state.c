/*
 * libFuzzer target: arbitrary bytes as a reader-state array, for every
 * record layout, both byte orders and several array lengths. Decoded
 * records must encode back to the same bytes (names normalised past their
 * NUL, padding zeroed) and decode again to the same values. The same bytes
 * as a 4:6 answer read while registered: a signal taken out of an array
 * leaves the rest in order, and the count decoder asks for no more than
 * its bound.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define CHECK(cond) \
	do { \
		if (!(cond)) \
			abort(); \
	} while (0)

#define MAX_RECORDS 64

static const uint8_t zeros[MAX_RECORDS * WIRE_READER_RECORD_SIZE];

/* What encode must produce from one input record. */
static void normalise(const struct wire_params *p, const uint8_t *in, uint8_t *want)
{
	size_t name_len = p->proto->reader_name_len;
	size_t record = wire_reader_record_size(p);
	const uint8_t *nul = memchr(in, 0, name_len - 1);
	size_t kept = nul ? (size_t)(nul - in) : name_len - 1;
	size_t pad = name_len + 12 + WIRE_MAX_ATR_SIZE;

	memcpy(want, in, record);
	memset(want + kept, 0, name_len - kept);
	memset(want + pad, 0, name_len + 48 - pad);
}

static void check_layout(const struct wire_params *base, const uint8_t *data, size_t size,
			 uint32_t slots)
{
	static struct wire_reader_state states[MAX_RECORDS], again[MAX_RECORDS];
	static uint8_t buf[MAX_RECORDS * WIRE_READER_RECORD_SIZE], want[WIRE_READER_RECORD_SIZE];
	struct wire_params p = *base;
	size_t record = wire_reader_record_size(&p);

	p.reader_slots = slots;
	size_t n = wire_decode_reader_states(&p, data, size, states, MAX_RECORDS);
	CHECK(n == (size / record < MAX_RECORDS ? size / record : MAX_RECORDS));
	size_t total = wire_encode_reader_states(&p, states, n, buf, sizeof(buf));
	CHECK(total == wire_reader_array_size(&p));
	if (total == 0)
		return;
	size_t kept = n < slots ? n : slots;
	for (size_t i = 0; i < kept; i++) {
		normalise(&p, data + i * record, want);
		CHECK(memcmp(buf + i * record, want, record) == 0);
		CHECK(states[i].name[sizeof(states[i].name) - 1] == 0);
	}
	/* (memcmp, not a loop: the harness's own compares are traced per byte) */
	CHECK(memcmp(buf + kept * record, zeros, total - kept * record) == 0);
	CHECK(wire_decode_reader_states(&p, buf, total, again, MAX_RECORDS) == slots);
	CHECK(memcmp(again, states, kept * sizeof(states[0])) == 0);
}

/* States straight from the input bytes (names without NUL, any values):
 * encoding must still give terminated names and decode to the same fields. */
static void check_encode_raw(const struct wire_params *base, const uint8_t *data, size_t size)
{
	static struct wire_reader_state states[4], out[4];
	static uint8_t buf[4 * WIRE_READER_RECORD_SIZE];
	struct wire_params p = *base;
	size_t name_len = p.proto->reader_name_len;
	size_t record = wire_reader_record_size(&p);
	size_t n = size / sizeof(states[0]);

	if (n > 4)
		n = 4;
	p.reader_slots = 4;
	memcpy(states, data, n * sizeof(states[0]));
	CHECK(wire_encode_reader_states(&p, states, n, buf, sizeof(buf)) == 4 * record);
	CHECK(wire_decode_reader_states(&p, buf, 4 * record, out, 4) == 4);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *rec = buf + i * record;
		const char *nul = memchr(states[i].name, 0, name_len - 1);
		size_t kept = nul ? (size_t)(nul - states[i].name) : name_len - 1;

		CHECK(rec[name_len - 1] == 0);
		CHECK(strlen(out[i].name) == kept);
		CHECK(memcmp(out[i].name, states[i].name, kept) == 0);
		CHECK(out[i].event_counter == states[i].event_counter);
		CHECK(out[i].state == states[i].state);
		CHECK(out[i].sharing == states[i].sharing);
		CHECK(memcmp(out[i].atr, states[i].atr, WIRE_MAX_ATR_SIZE) == 0);
		CHECK(out[i].atr_len == states[i].atr_len);
		CHECK(out[i].protocol == states[i].protocol);
	}
}

/* wire_take_array_signal moves bytes up by the signal's size, or leaves them. */
static void check_take_signal(const struct wire_params *p, const uint8_t *data, size_t size)
{
	static uint8_t buf[MAX_RECORDS * WIRE_READER_RECORD_SIZE];
	size_t record = wire_reader_record_size(p);
	size_t len = size < sizeof(buf) ? size : sizeof(buf);
	uint32_t rv = 0xdeadbeef;

	memcpy(buf, data, len);
	size_t missing = wire_take_array_signal(p, buf, len, &rv);
	if (missing == 0) {
		CHECK(memcmp(buf, data, len) == 0 && rv == 0xdeadbeef);
		return;
	}
	CHECK(missing == WIRE_EVENT_SIGNAL_SIZE);
	CHECK(rv == 0 || rv == 0x80100002u); /* SCARD_E_CANCELLED */
	len -= len % record;
	/* a prefix of whole records stayed, the rest moved up by the signal */
	size_t at = 0;
	while (at < len && memcmp(buf + at, data + at, record) == 0)
		at += record;
	CHECK(at < len); /* the signal's record changed: its name byte was not a zero word's */
	CHECK(memcmp(buf + at, data + at + missing, len - at - missing) == 0);
}

/* The count decoder fed as a client reads: exactly what it asks for. */
static void check_count(const struct wire_params *p, const uint8_t *data, size_t size)
{
	struct wire_count_answer a;
	size_t have = 0, need = 0;
	int rc;

	while ((rc = wire_decode_count_after_wait(p, data, have, &need, &a)) == WIRE_NEED_MORE) {
		CHECK(need > have && need <= WIRE_COUNT_AFTER_WAIT_MAX);
		if (need > size)
			return;
		have = need;
	}
	CHECK(rc == WIRE_OK || rc == WIRE_E_UNKNOWN_CMD);
	if (rc == WIRE_OK)
		CHECK(have == (a.signalled ? WIRE_EVENT_SIGNAL_SIZE + 4u : 4u));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct wire_proto *protos[] = {
		wire_proto_find(4, 2)->older_layout,
		wire_proto_find(4, 4),
		wire_proto_find(4, 6),
	};
	/* Fewer slots than records, the legacy 16, and a few odd sizes. */
	const uint32_t slot_counts[] = { 1, 2, 3, 16, MAX_RECORDS };

	for (size_t v = 0; v < sizeof(protos) / sizeof(protos[0]); v++) {
		for (int order = WIRE_LITTLE_ENDIAN; order <= WIRE_BIG_ENDIAN; order++) {
			struct wire_params p;

			wire_params_init(&p);
			p.proto = protos[v];
			p.order = (enum wire_byte_order)order;
			for (size_t s = 0; s < sizeof(slot_counts) / sizeof(slot_counts[0]); s++)
				check_layout(&p, data, size, slot_counts[s]);
			check_encode_raw(&p, data, size);
			check_take_signal(&p, data, size);
			check_count(&p, data, size);
		}
	}
	return 0;
}
