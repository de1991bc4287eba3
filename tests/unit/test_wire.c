/*
 * Unit tests for the wire codec: framing, every 4:4 command in both byte
 * orders, byte layouts at the documented offsets, bounds and the
 * differences between protocol versions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

#define BUF_CAP 512

static const uint32_t cmds_4_4[] = {
	WIRE_ESTABLISH_CONTEXT,
	WIRE_RELEASE_CONTEXT,
	WIRE_CONNECT,
	WIRE_RECONNECT,
	WIRE_DISCONNECT,
	WIRE_BEGIN_TRANSACTION,
	WIRE_END_TRANSACTION,
	WIRE_TRANSMIT,
	WIRE_CONTROL,
	WIRE_STATUS,
	WIRE_CANCEL,
	WIRE_GET_ATTRIB,
	WIRE_SET_ATTRIB,
	WIRE_VERSION,
	WIRE_GET_READERS_STATE,
	WIRE_WAIT_READER_STATE_CHANGE,
	WIRE_STOP_WAITING_READER_STATE_CHANGE,
};
#define N_CMDS_4_4 (sizeof(cmds_4_4) / sizeof(cmds_4_4[0]))

static const enum wire_byte_order orders[] = { WIRE_LITTLE_ENDIAN, WIRE_BIG_ENDIAN };

static struct wire_params params_for(int32_t minor, enum wire_byte_order order)
{
	struct wire_params p;

	wire_params_init(&p);
	p.proto = wire_proto_find(4, minor);
	p.order = order;
	assert_non_null(p.proto);
	return p;
}

/* Distinct values in every byte, so a swapped or shifted field shows. */
static void sample_msg(uint32_t cmd, struct wire_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->cmd = cmd;
	switch (cmd) {
	case WIRE_ESTABLISH_CONTEXT:
		m->u.establish = (struct wire_establish){ 2, 0x11223344, 0x80100011 };
		break;
	case WIRE_RELEASE_CONTEXT:
		m->u.release = (struct wire_release){ 0x01020304, 0x8010001E };
		break;
	case WIRE_CONNECT:
		m->u.connect.context = 0x0A0B0C0D;
		strcpy(m->u.connect.reader, "Virtual Reader 00 00");
		m->u.connect.share_mode = 2;
		m->u.connect.preferred_protocols = 3;
		m->u.connect.card = 0x12345678;
		m->u.connect.active_protocol = 2;
		m->u.connect.rv = 0x8010000B;
		break;
	case WIRE_RECONNECT:
		m->u.reconnect = (struct wire_reconnect){ 0x21222324, 1, 2, 3, 4, 0x80100068 };
		break;
	case WIRE_DISCONNECT:
		m->u.disconnect = (struct wire_disconnect){ 0x31323334, 1, 0x80100003 };
		break;
	case WIRE_BEGIN_TRANSACTION:
		m->u.begin = (struct wire_begin){ 0x41424344, 0x8010000B };
		break;
	case WIRE_END_TRANSACTION: m->u.end = (struct wire_end){ 0x51525354, 2, 0x80100016 }; break;
	case WIRE_TRANSMIT:
		m->u.transmit = (struct wire_transmit){ 0x61626364, 2, 16,      0x1234,
							1,          8, 0x10203, 0x80100008 };
		break;
	case WIRE_CONTROL:
		m->u.control = (struct wire_control){ 0x71727374, 0x42000D48, 0x0FEDC,
						      0x10000,    0x0ABC,     0x80100022 };
		break;
	case WIRE_STATUS: m->u.status = (struct wire_status){ 0x01030507, 0x80100069 }; break;
	case WIRE_CANCEL: m->u.cancel = (struct wire_cancel){ 0x02040608, 0x80100002 }; break;
	case WIRE_GET_ATTRIB:
	case WIRE_SET_ATTRIB:
		m->u.getset.card = 0x13579BDF;
		m->u.getset.attr_id = 0x7FFF0003;
		for (size_t i = 0; i < sizeof(m->u.getset.attr); i++)
			m->u.getset.attr[i] = (uint8_t)(i * 7 + 1);
		m->u.getset.attr_len = 0x0102;
		m->u.getset.rv = 0x80100016;
		break;
	case WIRE_VERSION: m->u.version = (struct wire_version_msg){ 4, 4, 0x8010001E }; break;
	case WIRE_WAIT_READER_STATE_CHANGE:
	case WIRE_STOP_WAITING_READER_STATE_CHANGE:
		m->u.wait = (struct wire_wait){ 0x00C0FFEE, 0x80100002 };
		break;
	case WIRE_GET_READER_EVENTS:
		m->u.events = (struct wire_reader_events){ 0x7FFE, 0x80100001 };
		break;
	case WIRE_GET_READERS_STATE_SIZE: m->u.count = 0x01020304; break;
	default: break;
	}
}

static void expect_word(const uint8_t *buf, size_t off, enum wire_byte_order order, uint32_t v)
{
	uint8_t want[4];

	if (order == WIRE_BIG_ENDIAN) {
		want[0] = (uint8_t)(v >> 24);
		want[1] = (uint8_t)(v >> 16);
		want[2] = (uint8_t)(v >> 8);
		want[3] = (uint8_t)v;
	} else {
		want[0] = (uint8_t)v;
		want[1] = (uint8_t)(v >> 8);
		want[2] = (uint8_t)(v >> 16);
		want[3] = (uint8_t)(v >> 24);
	}
	assert_memory_equal(buf + off, want, 4);
}

/* ---- round trips of every 4:4 command ---- */

static void roundtrip_request(const struct wire_params *p, uint32_t cmd)
{
	uint8_t buf[BUF_CAP];
	struct wire_msg in;

	sample_msg(cmd, &in);
	size_t n = wire_encode_request(p, &in, buf, sizeof(buf));
	assert_true(n >= WIRE_HEADER_SIZE);
	struct wire_header hdr;
	const struct wire_cmd_spec *spec = NULL;
	assert_int_equal(wire_decode_header(p, buf, n, &hdr), WIRE_OK);
	assert_int_equal(hdr.cmd, cmd);
	assert_int_equal(wire_check_request(p, &hdr, &spec), WIRE_OK);
	assert_non_null(spec);
	assert_int_equal(spec->cmd, cmd);
	struct wire_msg out;
	if (spec->body == WIRE_BODY_NONE) {
		/* Bare requests: header only, size 0, decodes to an empty msg. */
		assert_int_equal(n, WIRE_HEADER_SIZE);
		assert_int_equal(hdr.size, 0);
		assert_int_equal(wire_decode_body(p, cmd, buf + n, 0, &out), WIRE_OK);
		struct wire_msg empty;
		memset(&empty, 0, sizeof(empty));
		empty.cmd = cmd;
		assert_memory_equal(&out, &empty, sizeof(out));
		return;
	}
	assert_int_equal(hdr.size, spec->body_size);
	assert_int_equal(n, WIRE_HEADER_SIZE + spec->body_size);
	assert_int_equal(wire_decode_body(p, cmd, buf + WIRE_HEADER_SIZE, n - WIRE_HEADER_SIZE,
					  &out),
			 WIRE_OK);
	assert_memory_equal(&out, &in, sizeof(in));
}

static void roundtrip_reply(const struct wire_params *p, uint32_t cmd)
{
	uint8_t buf[BUF_CAP];
	struct wire_msg in;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(p->proto, cmd);

	assert_non_null(spec);
	sample_msg(cmd, &in);
	size_t n = wire_encode_body(p, &in, buf, sizeof(buf));
	assert_int_equal(n, spec->reply_size);
	if (n == 0) {
		/* Reader-state arrays have no fixed struct. */
		assert_int_equal(spec->reply, WIRE_REPLY_STATE_ARRAY);
		return;
	}
	struct wire_msg out;
	assert_int_equal(wire_decode_reply(p, cmd, buf, n, &out), WIRE_OK);
	assert_memory_equal(&out, &in, sizeof(in));
	/* Struct commands: same struct both ways. Bare commands: a whole reply
	 * handed to wire_decode_body decodes too (the client relies on it). */
	assert_int_equal(wire_decode_body(p, cmd, buf, n, &out), WIRE_OK);
	assert_memory_equal(&out, &in, sizeof(in));
}

static void test_roundtrip_all_4_4(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params p = params_for(4, orders[o]);

		for (size_t i = 0; i < N_CMDS_4_4; i++) {
			roundtrip_request(&p, cmds_4_4[i]);
			roundtrip_reply(&p, cmds_4_4[i]);
		}
	}
}

/* The same for every other version's full command list. */
static void test_roundtrip_all_versions(void **state)
{
	const struct wire_proto *protos[] = {
		wire_proto_find(4, 2)->older_layout,
		wire_proto_find(4, 2),
		wire_proto_find(4, 3),
		wire_proto_find(4, 5),
		wire_proto_find(4, 6),
	};

	(void)state;
	for (size_t v = 0; v < sizeof(protos) / sizeof(protos[0]); v++) {
		for (size_t o = 0; o < 2; o++) {
			struct wire_params p = params_for(4, orders[o]);

			p.proto = protos[v];
			for (size_t i = 0; i < p.proto->n_cmds; i++) {
				roundtrip_request(&p, p.proto->cmds[i].cmd);
				roundtrip_reply(&p, p.proto->cmds[i].cmd);
			}
		}
	}
}

/* ---- byte layouts at the documented offsets ---- */

static void test_layout_version(void **state)
{
	static const uint8_t le[] = {
		0x0c, 0, 0, 0, 0x11, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
	};
	static const uint8_t be[] = {
		0, 0, 0, 0x0c, 0, 0, 0, 0x11, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0,
	};
	struct wire_msg m = { .cmd = WIRE_VERSION, .u.version = { 4, 4, 0 } };
	uint8_t buf[BUF_CAP];

	(void)state;
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);
	assert_int_equal(wire_encode_request(&p, &m, buf, sizeof(buf)), sizeof(le));
	assert_memory_equal(buf, le, sizeof(le));
	p = params_for(4, WIRE_BIG_ENDIAN);
	assert_int_equal(wire_encode_request(&p, &m, buf, sizeof(buf)), sizeof(be));
	assert_memory_equal(buf, be, sizeof(be));
}

static void check_connect_layout(enum wire_byte_order order)
{
	struct wire_params p = params_for(4, order);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	sample_msg(WIRE_CONNECT, &m);
	assert_int_equal(wire_encode_request(&p, &m, buf, sizeof(buf)), 8 + 152);
	expect_word(buf, 0, order, 152);
	expect_word(buf, 4, order, WIRE_CONNECT);
	const uint8_t *b = buf + 8;
	expect_word(b, 0, order, 0x0A0B0C0D);
	assert_memory_equal(b + 4, "Virtual Reader 00 00", 21);
	for (size_t i = 4 + 21; i < 132; i++)
		assert_int_equal(b[i], 0);
	expect_word(b, 132, order, 2);
	expect_word(b, 136, order, 3);
	expect_word(b, 140, order, 0x12345678);
	expect_word(b, 144, order, 2);
	expect_word(b, 148, order, 0x8010000B);
}

static void test_layout_connect(void **state)
{
	(void)state;
	check_connect_layout(WIRE_LITTLE_ENDIAN);
	check_connect_layout(WIRE_BIG_ENDIAN);
}

static void test_layout_connect_short_names(void **state)
{
	struct wire_params p = params_for(2, WIRE_LITTLE_ENDIAN);
	struct wire_msg m;

	(void)state;
	p.proto = wire_proto_find(4, 2)->older_layout;
	assert_int_equal(p.proto->reader_name_len, 100);
	sample_msg(WIRE_CONNECT, &m);
	uint8_t buf[BUF_CAP];
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 124);
	expect_word(buf, 0, p.order, 0x0A0B0C0D);
	assert_memory_equal(buf + 4, "Virtual Reader 00 00", 21);
	expect_word(buf, 104, p.order, 2);
	expect_word(buf, 108, p.order, 3);
	expect_word(buf, 112, p.order, 0x12345678);
	expect_word(buf, 116, p.order, 2);
	expect_word(buf, 120, p.order, 0x8010000B);
	struct wire_msg out;
	assert_int_equal(wire_decode_body(&p, WIRE_CONNECT, buf, 124, &out), WIRE_OK);
	assert_memory_equal(&out, &m, sizeof(m));
}

static void check_transmit_layout(enum wire_byte_order order)
{
	struct wire_params p = params_for(4, order);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	sample_msg(WIRE_TRANSMIT, &m);
	assert_int_equal(wire_encode_request(&p, &m, buf, sizeof(buf)), 8 + 32);
	expect_word(buf, 0, order, 32);
	expect_word(buf, 4, order, WIRE_TRANSMIT);
	expect_word(buf + 8, 0, order, 0x61626364);
	expect_word(buf + 8, 4, order, 2);
	expect_word(buf + 8, 8, order, 16);
	expect_word(buf + 8, 12, order, 0x1234);
	expect_word(buf + 8, 16, order, 1);
	expect_word(buf + 8, 20, order, 8);
	expect_word(buf + 8, 24, order, 0x10203);
	expect_word(buf + 8, 28, order, 0x80100008);
}

static void test_layout_transmit(void **state)
{
	(void)state;
	check_transmit_layout(WIRE_LITTLE_ENDIAN);
	check_transmit_layout(WIRE_BIG_ENDIAN);
}

static void check_control_layout(enum wire_byte_order order)
{
	struct wire_params p = params_for(4, order);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	sample_msg(WIRE_CONTROL, &m);
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 24);
	expect_word(buf, 0, order, 0x71727374);
	expect_word(buf, 4, order, 0x42000D48);
	expect_word(buf, 8, order, 0x0FEDC);
	expect_word(buf, 12, order, 0x10000);
	expect_word(buf, 16, order, 0x0ABC);
	expect_word(buf, 20, order, 0x80100022);
}

static void test_layout_control(void **state)
{
	(void)state;
	check_control_layout(WIRE_LITTLE_ENDIAN);
	check_control_layout(WIRE_BIG_ENDIAN);
}

static void check_getset_layout(enum wire_byte_order order)
{
	struct wire_params p = params_for(4, order);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	sample_msg(WIRE_GET_ATTRIB, &m);
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 280);
	expect_word(buf, 0, order, 0x13579BDF);
	expect_word(buf, 4, order, 0x7FFF0003);
	assert_memory_equal(buf + 8, m.u.getset.attr, 264);
	expect_word(buf, 272, order, 0x0102);
	expect_word(buf, 276, order, 0x80100016);
}

static void test_layout_getset(void **state)
{
	(void)state;
	check_getset_layout(WIRE_LITTLE_ENDIAN);
	check_getset_layout(WIRE_BIG_ENDIAN);
}

static void test_layout_reconnect_establish(void **state)
{
	struct wire_params p = params_for(4, WIRE_BIG_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	(void)state;
	sample_msg(WIRE_RECONNECT, &m);
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 24);
	expect_word(buf, 0, p.order, 0x21222324);
	expect_word(buf, 4, p.order, 1);
	expect_word(buf, 8, p.order, 2);
	expect_word(buf, 12, p.order, 3);
	expect_word(buf, 16, p.order, 4);
	expect_word(buf, 20, p.order, 0x80100068);
	sample_msg(WIRE_ESTABLISH_CONTEXT, &m);
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 12);
	expect_word(buf, 0, p.order, 2);
	expect_word(buf, 4, p.order, 0x11223344);
	expect_word(buf, 8, p.order, 0x80100011);
}

/* Signed fields cross the wire as their two's complement bits. */
static void test_negative_handles(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	(void)state;
	sample_msg(WIRE_CONNECT, &m);
	m.u.connect.card = -1;
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 152);
	expect_word(buf, 140, p.order, 0xFFFFFFFF);
	struct wire_msg out;
	assert_int_equal(wire_decode_body(&p, WIRE_CONNECT, buf, 152, &out), WIRE_OK);
	assert_int_equal(out.u.connect.card, -1);
}

/* ---- truncated input ---- */

static void test_truncated(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params p = params_for(4, orders[o]);
		uint8_t buf[BUF_CAP];
		struct wire_header hdr;

		memset(buf, 0, sizeof(buf));
		for (size_t len = 0; len < WIRE_HEADER_SIZE; len++)
			assert_int_equal(wire_decode_header(&p, buf, len, &hdr), WIRE_NEED_MORE);
		for (size_t i = 0; i < N_CMDS_4_4; i++) {
			const struct wire_cmd_spec *spec = wire_cmd_lookup(p.proto, cmds_4_4[i]);
			struct wire_msg m, out;

			sample_msg(cmds_4_4[i], &m);
			if (wire_encode_body(&p, &m, buf, sizeof(buf)) == 0)
				continue;
			for (size_t len = 0; len < spec->reply_size; len++) {
				assert_int_equal(wire_decode_reply(&p, cmds_4_4[i], buf, len, &out),
						 WIRE_NEED_MORE);
				if (spec->body == WIRE_BODY_STRUCT)
					assert_int_equal(wire_decode_body(&p, cmds_4_4[i], buf, len,
									  &out),
							 WIRE_NEED_MORE);
			}
		}
	}
}

/* ---- header.size ---- */

static void test_bad_size(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);

	(void)state;
	for (size_t i = 0; i < N_CMDS_4_4; i++) {
		const struct wire_cmd_spec *want = wire_cmd_lookup(p.proto, cmds_4_4[i]);
		const uint32_t sizes[] = { 0,
					   want->body_size - 1,
					   want->body_size + 1,
					   want->body_size + 4,
					   0xFFFFFFFF,
					   65548 };

		if (want->body != WIRE_BODY_STRUCT)
			continue;
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			struct wire_header hdr = { sizes[s], cmds_4_4[i] };
			const struct wire_cmd_spec *spec = NULL;

			assert_int_equal(wire_check_request(&p, &hdr, &spec), WIRE_E_BAD_SIZE);
		}
	}
}

static void test_no_body_ignores_size(void **state)
{
	static const uint32_t sizes[] = { 0, 1, 8, 2944, 0xFFFFFFFF };
	struct wire_params p = params_for(6, WIRE_LITTLE_ENDIAN);

	(void)state;
	for (size_t i = 0; i < p.proto->n_cmds; i++) {
		const struct wire_cmd_spec *want = &p.proto->cmds[i];

		if (want->body != WIRE_BODY_NONE)
			continue;
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			struct wire_header hdr = { sizes[s], want->cmd };
			const struct wire_cmd_spec *spec = NULL;

			assert_int_equal(wire_check_request(&p, &hdr, &spec), WIRE_OK);
			assert_ptr_equal(spec, want);
		}
	}
}

/* ---- length bounds ---- */

static int decode_with_word(uint32_t cmd, size_t off, uint32_t value)
{
	struct wire_params p = params_for(4, WIRE_BIG_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	sample_msg(cmd, &m);
	size_t n = wire_encode_body(&p, &m, buf, sizeof(buf));
	assert_true(n > off + 3);
	wire_put_u32(p.order, buf + off, value);
	struct wire_msg out;
	return wire_decode_body(&p, cmd, buf, n, &out);
}

static void test_length_bounds(void **state)
{
	(void)state;
	assert_int_equal(decode_with_word(WIRE_TRANSMIT, 12, 65548), WIRE_OK);
	assert_int_equal(decode_with_word(WIRE_TRANSMIT, 12, 65549), WIRE_E_BAD_LENGTH);
	assert_int_equal(decode_with_word(WIRE_TRANSMIT, 12, 0xFFFFFFFF), WIRE_E_BAD_LENGTH);
	assert_int_equal(decode_with_word(WIRE_CONTROL, 8, 65548), WIRE_OK);
	assert_int_equal(decode_with_word(WIRE_CONTROL, 8, 65549), WIRE_E_BAD_LENGTH);
	assert_int_equal(decode_with_word(WIRE_CONTROL, 8, 0x80000000), WIRE_E_BAD_LENGTH);
	assert_int_equal(decode_with_word(WIRE_GET_ATTRIB, 272, 264), WIRE_OK);
	assert_int_equal(decode_with_word(WIRE_GET_ATTRIB, 272, 265), WIRE_E_BAD_LENGTH);
	assert_int_equal(decode_with_word(WIRE_SET_ATTRIB, 272, 265), WIRE_E_BAD_LENGTH);
	assert_int_equal(decode_with_word(WIRE_SET_ATTRIB, 272, 0xFFFFFFFF), WIRE_E_BAD_LENGTH);
	/* Receive sizes are the client's buffer size, not a promise of data. */
	assert_int_equal(decode_with_word(WIRE_TRANSMIT, 24, 0xFFFFFFFF), WIRE_OK);
	assert_int_equal(decode_with_word(WIRE_CONTROL, 12, 0xFFFFFFFF), WIRE_OK);
}

static void test_encode_refuses_bad_lengths(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	(void)state;
	sample_msg(WIRE_TRANSMIT, &m);
	m.u.transmit.send_length = 65549;
	assert_int_equal(wire_encode_request(&p, &m, buf, sizeof(buf)), 0);
	sample_msg(WIRE_CONTROL, &m);
	m.u.control.send_length = 65549;
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 0);
	sample_msg(WIRE_SET_ATTRIB, &m);
	m.u.getset.attr_len = 265;
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 0);
}

/*
 * A GET_ATTRIB reply's length may exceed its 264-byte field: pcscd passes a
 * driver's length on, and the client answers SCARD_E_INSUFFICIENT_BUFFER.
 * The reply decodes and encodes; the request direction stays bounded.
 */
static void test_get_attrib_reply_length_beyond_the_field(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	(void)state;
	sample_msg(WIRE_GET_ATTRIB, &m);
	m.u.getset.attr_len = 0xFFFFFFFF;
	size_t n = wire_encode_body(&p, &m, buf, sizeof(buf));
	assert_int_equal(n, 280);
	struct wire_msg out;
	assert_int_equal(wire_decode_reply(&p, WIRE_GET_ATTRIB, buf, n, &out), WIRE_OK);
	assert_int_equal(out.u.getset.attr_len, 0xFFFFFFFF);
	assert_memory_equal(out.u.getset.attr, m.u.getset.attr, sizeof(m.u.getset.attr));
	assert_int_equal(wire_decode_body(&p, WIRE_GET_ATTRIB, buf, n, &out), WIRE_E_BAD_LENGTH);
}

static void test_trailer_len(void **state)
{
	struct wire_msg m;

	(void)state;
	sample_msg(WIRE_TRANSMIT, &m);
	assert_int_equal(wire_request_trailer_len(&m), 0x1234);
	sample_msg(WIRE_CONTROL, &m);
	assert_int_equal(wire_request_trailer_len(&m), 0x0FEDC);
	sample_msg(WIRE_GET_ATTRIB, &m);
	assert_int_equal(wire_request_trailer_len(&m), 0);
	sample_msg(WIRE_CONNECT, &m);
	assert_int_equal(wire_request_trailer_len(&m), 0);
	assert_int_equal(wire_request_trailer_len(NULL), 0);
	assert_int_equal(wire_cmd_lookup(wire_proto_default(), WIRE_TRANSMIT)->trailer,
			 WIRE_TRAILER_SEND_DATA);
	assert_int_equal(wire_cmd_lookup(wire_proto_default(), WIRE_CONTROL)->trailer,
			 WIRE_TRAILER_SEND_DATA);
	assert_int_equal(wire_cmd_lookup(wire_proto_default(), WIRE_GET_ATTRIB)->trailer,
			 WIRE_TRAILER_NONE);
}

/* ---- unknown commands ---- */

static void test_unknown_commands(void **state)
{
	static const uint32_t unknown[] = { 0, 0x03, 0x0C, 0x0E, 0x18, 0x99, 0xFFFFFFFF };
	const struct wire_proto *protos[] = {
		wire_proto_find(4, 2)->older_layout,
		wire_proto_find(4, 2),
		wire_proto_find(4, 3),
		wire_proto_find(4, 4),
		wire_proto_find(4, 5),
		wire_proto_find(4, 6),
	};
	uint8_t buf[BUF_CAP] = { 0 };

	(void)state;
	for (size_t v = 0; v < sizeof(protos) / sizeof(protos[0]); v++) {
		struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);

		p.proto = protos[v];
		for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
			struct wire_header hdr = { 0, unknown[i] };
			const struct wire_cmd_spec *spec = NULL;

			assert_int_equal(wire_check_request(&p, &hdr, &spec), WIRE_E_UNKNOWN_CMD);
			assert_null(spec);
			assert_null(wire_cmd_lookup(p.proto, unknown[i]));
			struct wire_msg m;
			assert_int_equal(wire_decode_body(&p, unknown[i], buf, sizeof(buf), &m),
					 WIRE_E_UNKNOWN_CMD);
			memset(&m, 0, sizeof(m));
			m.cmd = unknown[i];
			assert_int_equal(wire_encode_request(&p, &m, buf, sizeof(buf)), 0);
			assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 0);
		}
	}
}

/* ---- version table ---- */

static void test_version_table(void **state)
{
	(void)state;
	assert_null(wire_proto_find(4, 1));
	assert_null(wire_proto_find(4, 7));
	assert_null(wire_proto_find(5, 5));
	assert_null(wire_proto_find(3, 4));
	for (int32_t minor = 2; minor <= 6; minor++) {
		const struct wire_proto *proto = wire_proto_find(4, minor);

		assert_non_null(proto);
		assert_int_equal(proto->major, 4);
		assert_int_equal(proto->minor, minor);
		assert_int_equal(proto->reader_name_len, 128);
	}
	assert_string_equal(wire_proto_find(4, 4)->name, "4:4");
	assert_ptr_equal(wire_proto_default(), wire_proto_find(4, 4));
	assert_ptr_equal(wire_proto_highest(), wire_proto_find(4, 6));
	assert_int_equal(wire_proto_find(4, 2)->older_layout->major, 4);
	assert_int_equal(wire_proto_find(4, 2)->older_layout->minor, 2);
	assert_int_equal(wire_proto_find(4, 2)->older_layout->reader_name_len, 100);
	assert_ptr_not_equal(wire_proto_find(4, 2)->older_layout, wire_proto_find(4, 2));
	assert_null(wire_proto_find(4, 2)->older_layout->older_layout);
	for (int32_t minor = 3; minor <= 6; minor++)
		assert_null(wire_proto_find(4, minor)->older_layout);

	struct wire_params p;
	wire_params_init(&p);
	assert_ptr_equal(p.proto, wire_proto_default());
	assert_int_equal(p.order, WIRE_LITTLE_ENDIAN);
	assert_int_equal(p.reader_slots, 16);
}

/* The rows in order, lowest first, as the client walks them. */
static void test_version_rows(void **state)
{
	(void)state;
	assert_int_equal(wire_proto_count(), 5);
	assert_ptr_equal(wire_proto_at(0), wire_proto_lowest());
	assert_ptr_equal(wire_proto_lowest(), wire_proto_find(4, 2));
	assert_ptr_equal(wire_proto_at(wire_proto_count() - 1), wire_proto_highest());
	assert_null(wire_proto_at(wire_proto_count()));
	for (size_t i = 1; i < wire_proto_count(); i++) {
		const struct wire_proto *lo = wire_proto_at(i - 1), *hi = wire_proto_at(i);

		assert_true(lo->major < hi->major ||
			    (lo->major == hi->major && lo->minor < hi->minor));
		assert_ptr_equal(wire_proto_find(hi->major, hi->minor), hi);
	}
}

/* What a daemon serves to each CMD_VERSION. */
static void test_version_serve(void **state)
{
	(void)state;
	for (int32_t minor = 2; minor <= 6; minor++)
		assert_ptr_equal(wire_proto_serve(4, minor), wire_proto_find(4, minor));
	/* a newer minor of our major: the highest we know */
	assert_ptr_equal(wire_proto_serve(4, 7), wire_proto_highest());
	assert_ptr_equal(wire_proto_serve(4, 99), wire_proto_highest());
	assert_null(wire_proto_serve(4, 1));
	assert_null(wire_proto_serve(4, 0));
	assert_null(wire_proto_serve(5, 0));
	assert_null(wire_proto_serve(3, 9));
	assert_null(wire_proto_serve(4, -1));
}

/* names=100 on a socket: only 4:2 has such a layout. */
static void test_version_name_len(void **state)
{
	const struct wire_proto *p42 = wire_proto_find(4, 2);

	(void)state;
	assert_ptr_equal(wire_proto_with_name_len(p42, 100), p42->older_layout);
	assert_int_equal(wire_proto_with_name_len(p42, 100)->reader_name_len, 100);
	assert_ptr_equal(wire_proto_with_name_len(p42, 128), p42);
	assert_ptr_equal(wire_proto_with_name_len(p42, 77), p42);
	for (int32_t minor = 3; minor <= 6; minor++) {
		const struct wire_proto *p = wire_proto_find(4, minor);

		assert_ptr_equal(wire_proto_with_name_len(p, 100), p);
		assert_ptr_equal(wire_proto_with_name_len(p, 128), p);
	}
	assert_null(wire_proto_with_name_len(NULL, 100));
}

/* A 4:2 connection moves to 100-byte names on a 124-byte CONNECT, and on nothing else. */
static void test_version_adopt_layout(void **state)
{
	const struct wire_proto *p42 = wire_proto_find(4, 2);
	struct wire_header connect_short = { .size = 124, .cmd = WIRE_CONNECT };
	struct wire_header connect_long = { .size = 152, .cmd = WIRE_CONNECT };
	struct wire_header connect_odd = { .size = 130, .cmd = WIRE_CONNECT };
	struct wire_header transmit_bad = { .size = 31, .cmd = WIRE_TRANSMIT };
	struct wire_header unknown = { .size = 0, .cmd = 0x42 };

	(void)state;
	assert_ptr_equal(wire_proto_adopt_layout(p42, &connect_short), p42->older_layout);
	assert_null(wire_proto_adopt_layout(p42, &connect_long));
	assert_null(wire_proto_adopt_layout(p42, &connect_odd));
	assert_null(wire_proto_adopt_layout(p42, &transmit_bad));
	assert_null(wire_proto_adopt_layout(p42, &unknown));
	/* already there, or no older layout: nothing to adopt */
	assert_null(wire_proto_adopt_layout(p42->older_layout, &connect_long));
	for (int32_t minor = 3; minor <= 6; minor++)
		assert_null(wire_proto_adopt_layout(wire_proto_find(4, minor), &connect_short));
	assert_null(wire_proto_adopt_layout(NULL, &connect_short));
	assert_null(wire_proto_adopt_layout(p42, NULL));
}

/* The constants callers size buffers with agree with the table. */
static void test_size_constants(void **state)
{
	size_t largest = 0;

	(void)state;
	for (size_t v = 0; v <= wire_proto_count(); v++) {
		const struct wire_proto *proto = v < wire_proto_count()
							 ? wire_proto_at(v)
							 : wire_proto_find(4, 2)->older_layout;

		for (size_t i = 0; i < proto->n_cmds; i++) {
			const struct wire_cmd_spec *spec = &proto->cmds[i];

			assert_true(spec->body_size <= WIRE_MAX_STRUCT_SIZE);
			assert_true(spec->reply_size <= WIRE_MAX_STRUCT_SIZE);
			if (spec->body_size > largest)
				largest = spec->body_size;
		}
		assert_int_equal(wire_cmd_lookup(proto, WIRE_WAIT_READER_STATE_CHANGE)->reply_size,
				 WIRE_EVENT_SIGNAL_SIZE);
		struct wire_params p;
		wire_params_init(&p);
		p.proto = proto;
		if (proto->reader_name_len == WIRE_MAX_READERNAME)
			assert_int_equal(wire_reader_record_size(&p), WIRE_READER_RECORD_SIZE);
		else
			assert_true(wire_reader_record_size(&p) < WIRE_READER_RECORD_SIZE);
	}
	assert_int_equal(largest, WIRE_MAX_STRUCT_SIZE);
}

/* Every row agrees with itself and with the names list. */
static void test_table_consistency(void **state)
{
	const struct wire_proto *protos[] = {
		wire_proto_find(4, 2)->older_layout,
		wire_proto_find(4, 2),
		wire_proto_find(4, 3),
		wire_proto_find(4, 4),
		wire_proto_find(4, 5),
		wire_proto_find(4, 6),
	};

	(void)state;
	for (size_t v = 0; v < sizeof(protos) / sizeof(protos[0]); v++) {
		const struct wire_proto *proto = protos[v];

		for (size_t i = 0; i < proto->n_cmds; i++) {
			const struct wire_cmd_spec *s = &proto->cmds[i];

			assert_ptr_equal(wire_cmd_lookup(proto, s->cmd), s);
			assert_string_equal(wire_cmd_name(s->cmd), s->name);
			if (s->body == WIRE_BODY_STRUCT)
				assert_true(s->body_size > 0);
			else
				assert_int_equal(s->body_size, 0);
			if (s->reply == WIRE_REPLY_STRUCT && s->body == WIRE_BODY_STRUCT)
				assert_int_equal(s->reply_size, s->body_size);
			if (s->reply == WIRE_REPLY_STATE_ARRAY)
				assert_int_equal(s->reply_size, 0);
		}
	}
}

static void test_cmd_names(void **state)
{
	(void)state;
	assert_string_equal(wire_cmd_name(WIRE_CONNECT), "SCARD_CONNECT");
	assert_string_equal(wire_cmd_name(WIRE_VERSION), "CMD_VERSION");
	assert_string_equal(wire_cmd_name(WIRE_GET_READERS_STATE_ARRAY),
			    "CMD_GET_READERS_STATE_ARRAY");
	assert_string_equal(wire_cmd_name(WIRE_LIST_READERS), "SCARD_LIST_READERS");
	assert_string_equal(wire_cmd_name(WIRE_GET_STATUS_CHANGE), "SCARD_GET_STATUS_CHANGE");
	assert_string_equal(wire_cmd_name(WIRE_CANCEL_TRANSACTION), "SCARD_CANCEL_TRANSACTION");
	assert_string_equal(wire_cmd_name(0x99), "UNKNOWN");
	assert_string_equal(wire_cmd_name(0), "UNKNOWN");
}

static const struct wire_cmd_spec *spec_of(int32_t minor, uint32_t cmd)
{
	return wire_cmd_lookup(wire_proto_find(4, minor), cmd);
}

static void test_version_differences(void **state)
{
	(void)state;
	/* 0x15 appears in 4:5. */
	for (int32_t minor = 2; minor <= 4; minor++)
		assert_null(spec_of(minor, WIRE_GET_READER_EVENTS));
	assert_null(wire_cmd_lookup(wire_proto_find(4, 2)->older_layout, WIRE_GET_READER_EVENTS));
	for (int32_t minor = 5; minor <= 6; minor++) {
		const struct wire_cmd_spec *s = spec_of(minor, WIRE_GET_READER_EVENTS);

		assert_non_null(s);
		assert_int_equal(s->body, WIRE_BODY_NONE);
		assert_int_equal(s->reply, WIRE_REPLY_STRUCT);
		assert_int_equal(s->reply_size, 8);
	}
	/* 0x16 and 0x17 only in 4:6. */
	for (int32_t minor = 2; minor <= 5; minor++) {
		assert_null(spec_of(minor, WIRE_GET_READERS_STATE_SIZE));
		assert_null(spec_of(minor, WIRE_GET_READERS_STATE_ARRAY));
	}
	assert_int_equal(spec_of(6, WIRE_GET_READERS_STATE_SIZE)->reply, WIRE_REPLY_INT32);
	assert_int_equal(spec_of(6, WIRE_GET_READERS_STATE_SIZE)->reply_size, 4);
	assert_int_equal(spec_of(6, WIRE_GET_READERS_STATE_ARRAY)->reply, WIRE_REPLY_STATE_ARRAY);

	/* WAIT / STOP: 8-byte body up to 4:3, bare from 4:4. */
	for (int32_t minor = 2; minor <= 3; minor++) {
		const struct wire_cmd_spec *w = spec_of(minor, WIRE_WAIT_READER_STATE_CHANGE);
		const struct wire_cmd_spec *s = spec_of(minor,
							WIRE_STOP_WAITING_READER_STATE_CHANGE);

		assert_int_equal(w->body, WIRE_BODY_STRUCT);
		assert_int_equal(w->body_size, 8);
		assert_int_equal(w->reply, WIRE_REPLY_WAIT_LATER);
		assert_int_equal(s->body, WIRE_BODY_STRUCT);
		assert_int_equal(s->body_size, 8);
	}
	assert_int_equal(spec_of(2, WIRE_STOP_WAITING_READER_STATE_CHANGE)->reply,
			 WIRE_REPLY_STRUCT);
	assert_int_equal(spec_of(3, WIRE_STOP_WAITING_READER_STATE_CHANGE)->reply,
			 WIRE_REPLY_STRUCT_IF_WAITING);
	for (int32_t minor = 4; minor <= 6; minor++) {
		const struct wire_cmd_spec *w = spec_of(minor, WIRE_WAIT_READER_STATE_CHANGE);
		const struct wire_cmd_spec *s = spec_of(minor,
							WIRE_STOP_WAITING_READER_STATE_CHANGE);

		assert_int_equal(w->body, WIRE_BODY_NONE);
		assert_int_equal(w->reply_size, 8);
		assert_int_equal(s->body, WIRE_BODY_NONE);
		assert_int_equal(s->reply, WIRE_REPLY_STRUCT_IF_WAITING);
		assert_int_equal(s->reply_size, 8);
	}
	assert_int_equal(spec_of(4, WIRE_WAIT_READER_STATE_CHANGE)->reply,
			 WIRE_REPLY_ARRAY_AND_WAIT);
	assert_int_equal(spec_of(5, WIRE_WAIT_READER_STATE_CHANGE)->reply,
			 WIRE_REPLY_ARRAY_AND_WAIT);
	assert_int_equal(spec_of(6, WIRE_WAIT_READER_STATE_CHANGE)->reply, WIRE_REPLY_WAIT_LATER);

	/* Connect follows the reader-name length. */
	assert_int_equal(spec_of(2, WIRE_CONNECT)->body_size, 152);
	assert_int_equal(
		wire_cmd_lookup(wire_proto_find(4, 2)->older_layout, WIRE_CONNECT)->body_size, 124);
	for (int32_t minor = 2; minor <= 6; minor++)
		assert_int_equal(spec_of(minor, WIRE_GET_READERS_STATE)->reply,
				 WIRE_REPLY_STATE_ARRAY);
}

/* 4:3 WAIT sends an 8-byte body; 4:4 sends a bare header. */
static void test_wait_request_bytes(void **state)
{
	struct wire_params p3 = params_for(3, WIRE_LITTLE_ENDIAN);
	struct wire_params p4 = params_for(4, WIRE_LITTLE_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	(void)state;
	sample_msg(WIRE_WAIT_READER_STATE_CHANGE, &m);
	assert_int_equal(wire_encode_request(&p3, &m, buf, sizeof(buf)), 16);
	expect_word(buf, 0, p3.order, 8);
	expect_word(buf, 4, p3.order, WIRE_WAIT_READER_STATE_CHANGE);
	expect_word(buf, 8, p3.order, 0x00C0FFEE);
	struct wire_header hdr = { 0, WIRE_WAIT_READER_STATE_CHANGE };
	assert_int_equal(wire_check_request(&p3, &hdr, NULL), WIRE_E_BAD_SIZE);
	assert_int_equal(wire_check_request(&p4, &hdr, NULL), WIRE_OK);
	assert_int_equal(wire_encode_request(&p4, &m, buf, sizeof(buf)), 8);
	expect_word(buf, 0, p4.order, 0);
}

/* ---- connect reader name ---- */

static void test_connect_name_forced_nul(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);
	struct wire_msg out;
	uint8_t buf[BUF_CAP];

	(void)state;
	memset(buf, 'A', 152);
	assert_int_equal(wire_decode_body(&p, WIRE_CONNECT, buf, 152, &out), WIRE_OK);
	assert_int_equal(strlen(out.u.connect.reader), 127);

	p.proto = wire_proto_find(4, 2)->older_layout;
	assert_int_equal(wire_decode_body(&p, WIRE_CONNECT, buf, 124, &out), WIRE_OK);
	assert_int_equal(strlen(out.u.connect.reader), 99);
	for (size_t i = 99; i < sizeof(out.u.connect.reader); i++)
		assert_int_equal(out.u.connect.reader[i], 0);

	/* Bytes after the terminator are not part of the value. */
	p = params_for(4, WIRE_LITTLE_ENDIAN);
	memset(buf, 0, 152);
	memcpy(buf + 4, "ab\0garbage", 10);
	assert_int_equal(wire_decode_body(&p, WIRE_CONNECT, buf, 152, &out), WIRE_OK);
	assert_string_equal(out.u.connect.reader, "ab");
	for (size_t i = 2; i < sizeof(out.u.connect.reader); i++)
		assert_int_equal(out.u.connect.reader[i], 0);
}

static void test_connect_name_truncated_on_encode(void **state)
{
	struct wire_params p = params_for(4, WIRE_BIG_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	(void)state;
	sample_msg(WIRE_CONNECT, &m);
	memset(m.u.connect.reader, 'Z', sizeof(m.u.connect.reader)); /* no NUL at all */
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 152);
	assert_int_equal(buf[4 + 126], 'Z');
	assert_int_equal(buf[4 + 127], 0);
	expect_word(buf, 132, p.order, 2);

	p.proto = wire_proto_find(4, 2)->older_layout;
	assert_int_equal(wire_encode_body(&p, &m, buf, sizeof(buf)), 124);
	assert_int_equal(buf[4 + 98], 'Z');
	assert_int_equal(buf[4 + 99], 0);
	expect_word(buf, 104, p.order, 2);
	struct wire_msg out;
	assert_int_equal(wire_decode_body(&p, WIRE_CONNECT, buf, 124, &out), WIRE_OK);
	assert_int_equal(strlen(out.u.connect.reader), 99);
}

/* ---- byte order detection ---- */

static void test_detect_version_header(void **state)
{
	static const uint8_t le[8] = { 0x0c, 0, 0, 0, 0x11, 0, 0, 0 };
	static const uint8_t be[8] = { 0, 0, 0, 0x0c, 0, 0, 0, 0x11 };

	(void)state;
	assert_int_equal(wire_detect_byte_order(le), WIRE_LITTLE_ENDIAN);
	assert_int_equal(wire_detect_byte_order(be), WIRE_BIG_ENDIAN);
}

static void test_detect_every_command(void **state)
{
	const struct wire_proto *p6 = wire_proto_find(4, 6);
	const struct wire_proto *p3 = wire_proto_find(4, 3);

	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params p = params_for(6, orders[o]);
		const struct wire_proto *protos[] = { p3, p6 };

		for (size_t v = 0; v < 2; v++) {
			p.proto = protos[v];
			for (size_t i = 0; i < p.proto->n_cmds; i++) {
				struct wire_msg m;
				uint8_t buf[BUF_CAP];

				sample_msg(p.proto->cmds[i].cmd, &m);
				assert_true(wire_encode_request(&p, &m, buf, sizeof(buf)) >= 8);
				assert_int_equal(wire_detect_byte_order(buf), orders[o]);
			}
		}
	}
}

static void test_detect_undecidable(void **state)
{
	static const uint8_t zero[8] = { 0 };
	static const uint8_t ones[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t symmetric[8] = { 1, 0, 0, 1, 1, 0, 0, 1 };
	/* Neither order plausible: the smaller numbers win. */
	static const uint8_t be_smaller[8] = { 0, 0, 0x10, 0, 0, 0, 0x20, 0x01 };

	(void)state;
	assert_int_equal(wire_detect_byte_order(zero), WIRE_LITTLE_ENDIAN);
	assert_int_equal(wire_detect_byte_order(ones), WIRE_LITTLE_ENDIAN);
	assert_int_equal(wire_detect_byte_order(symmetric), WIRE_LITTLE_ENDIAN);
	assert_int_equal(wire_detect_byte_order(be_smaller), WIRE_BIG_ENDIAN);
	assert_int_equal(wire_detect_byte_order(NULL), WIRE_LITTLE_ENDIAN);
}

/* ---- helpers and argument checks ---- */

static void test_u32_helpers(void **state)
{
	uint8_t b[4];

	(void)state;
	wire_put_u32(WIRE_LITTLE_ENDIAN, b, 0x11223344);
	assert_memory_equal(b, "\x44\x33\x22\x11", 4);
	assert_int_equal(wire_get_u32(WIRE_LITTLE_ENDIAN, b), 0x11223344);
	assert_int_equal(wire_get_u32(WIRE_BIG_ENDIAN, b), 0x44332211);
	wire_put_u32(WIRE_BIG_ENDIAN, b, 0x11223344);
	assert_memory_equal(b, "\x11\x22\x33\x44", 4);
}

static void test_header_roundtrip(void **state)
{
	(void)state;
	for (size_t o = 0; o < 2; o++) {
		struct wire_params p = params_for(4, orders[o]);
		struct wire_header in = { 0xA1B2C3D4, 0x01020304 }, out;
		uint8_t buf[8];

		assert_int_equal(wire_encode_header(&p, &in, buf, 7), 0);
		assert_int_equal(wire_encode_header(&p, &in, buf, 8), 8);
		assert_int_equal(wire_decode_header(&p, buf, 8, &out), WIRE_OK);
		assert_int_equal(out.size, in.size);
		assert_int_equal(out.cmd, in.cmd);
		expect_word(buf, 0, orders[o], 0xA1B2C3D4);
	}
}

static void test_small_output(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);
	struct wire_msg m;
	uint8_t buf[BUF_CAP];

	(void)state;
	sample_msg(WIRE_CONNECT, &m);
	assert_int_equal(wire_encode_body(&p, &m, buf, 151), 0);
	assert_int_equal(wire_encode_request(&p, &m, buf, 159), 0);
	assert_int_equal(wire_encode_request(&p, &m, buf, 160), 160);
	sample_msg(WIRE_STATUS, &m);
	assert_int_equal(wire_encode_request(&p, &m, buf, 7), 0);
}

static void test_invalid_args(void **state)
{
	struct wire_params p = params_for(4, WIRE_LITTLE_ENDIAN);
	struct wire_params broken = p;
	struct wire_header hdr = { 12, WIRE_VERSION };
	struct wire_msg m;
	uint8_t buf[BUF_CAP] = { 0 };

	(void)state;
	broken.proto = NULL;
	sample_msg(WIRE_VERSION, &m);
	assert_int_equal(wire_decode_header(NULL, buf, 8, &hdr), WIRE_E_INVALID);
	assert_int_equal(wire_decode_header(&p, buf, 8, NULL), WIRE_E_INVALID);
	assert_int_equal(wire_check_request(&broken, &hdr, NULL), WIRE_E_INVALID);
	assert_int_equal(wire_check_request(&p, NULL, NULL), WIRE_E_INVALID);
	assert_int_equal(wire_decode_body(&broken, WIRE_VERSION, buf, 12, &m), WIRE_E_INVALID);
	assert_int_equal(wire_decode_body(&p, WIRE_VERSION, NULL, 12, &m), WIRE_E_INVALID);
	assert_int_equal(wire_decode_body(&p, WIRE_VERSION, buf, 12, NULL), WIRE_E_INVALID);
	assert_int_equal(wire_encode_body(&broken, &m, buf, sizeof(buf)), 0);
	assert_int_equal(wire_encode_body(&p, NULL, buf, sizeof(buf)), 0);
	assert_int_equal(wire_encode_request(&p, &m, NULL, sizeof(buf)), 0);
	assert_null(wire_cmd_lookup(NULL, WIRE_VERSION));
	wire_params_init(NULL);
}

/* Bare-command replies decode from their fixed struct. */
static void test_bare_command_replies(void **state)
{
	struct wire_params p = params_for(6, WIRE_BIG_ENDIAN);
	struct wire_msg out;
	uint8_t buf[8] = { 0, 0, 0, 0x12, 0x80, 0x10, 0, 0x02 };

	(void)state;
	assert_int_equal(wire_decode_reply(&p, WIRE_GET_READERS_STATE_SIZE, buf, 4, &out), WIRE_OK);
	assert_int_equal(out.u.count, 0x12);
	assert_int_equal(wire_decode_reply(&p, WIRE_GET_READER_EVENTS, buf, 8, &out), WIRE_OK);
	assert_int_equal(out.u.events.events, 0x12);
	assert_int_equal(out.u.events.rv, 0x80100002);
	assert_int_equal(wire_decode_reply(&p, WIRE_WAIT_READER_STATE_CHANGE, buf, 8, &out),
			 WIRE_OK);
	assert_int_equal(out.u.wait.rv, 0x80100002);
	assert_int_equal(wire_decode_reply(&p, WIRE_STOP_WAITING_READER_STATE_CHANGE, buf, 7, &out),
			 WIRE_NEED_MORE);
	assert_int_equal(wire_decode_reply(&p, WIRE_GET_READERS_STATE_ARRAY, buf, 8, &out),
			 WIRE_OK);
	assert_int_equal(out.cmd, WIRE_GET_READERS_STATE_ARRAY);
	assert_int_equal(out.u.count, 0);
	assert_int_equal(wire_decode_reply(&p, 0x03, buf, 8, &out), WIRE_E_UNKNOWN_CMD);
	assert_int_equal(wire_decode_reply(&p, WIRE_VERSION, NULL, 8, &out), WIRE_E_INVALID);
}

/* Each struct's rv is where the codec puts the last word of the reply: the
 * accessors and the layouts agree for every command that has one. */
static void test_msg_rv(void **state)
{
	struct wire_params p = params_for(6, WIRE_LITTLE_ENDIAN);
	uint8_t buf[WIRE_MAX_STRUCT_SIZE];
	int with_rv = 0;

	(void)state;
	for (uint32_t cmd = 0; cmd <= 0x20; cmd++) {
		struct wire_msg m;
		uint32_t rv = 0;

		sample_msg(cmd, &m);
		m.cmd = cmd;
		if (!wire_msg_set_rv(&m, 0x80100000u + cmd)) {
			assert_false(wire_msg_get_rv(&m, &rv));
			continue;
		}
		with_rv++;
		assert_true(wire_msg_get_rv(&m, &rv));
		assert_int_equal(rv, 0x80100000u + cmd);
		size_t n = wire_encode_body(&p, &m, buf, sizeof(buf));
		assert_true(n >= 4);
		assert_int_equal(wire_get_u32(WIRE_LITTLE_ENDIAN, buf + n - 4), 0x80100000u + cmd);
	}
	/* 0x01, 0x02, 0x04-0x0B, 0x0D, 0x0F-0x11, 0x13-0x15; not 0x16's bare count */
	assert_int_equal(with_rv, 17);

	/* and the field it finds is the struct's own rv, named */
	static const struct {
		uint32_t cmd;
		size_t offset;
	} named[] = {
		{ WIRE_ESTABLISH_CONTEXT, offsetof(struct wire_msg, u.establish.rv) },
		{ WIRE_RELEASE_CONTEXT, offsetof(struct wire_msg, u.release.rv) },
		{ WIRE_CONNECT, offsetof(struct wire_msg, u.connect.rv) },
		{ WIRE_RECONNECT, offsetof(struct wire_msg, u.reconnect.rv) },
		{ WIRE_DISCONNECT, offsetof(struct wire_msg, u.disconnect.rv) },
		{ WIRE_BEGIN_TRANSACTION, offsetof(struct wire_msg, u.begin.rv) },
		{ WIRE_END_TRANSACTION, offsetof(struct wire_msg, u.end.rv) },
		{ WIRE_TRANSMIT, offsetof(struct wire_msg, u.transmit.rv) },
		{ WIRE_CONTROL, offsetof(struct wire_msg, u.control.rv) },
		{ WIRE_STATUS, offsetof(struct wire_msg, u.status.rv) },
		{ WIRE_CANCEL, offsetof(struct wire_msg, u.cancel.rv) },
		{ WIRE_GET_ATTRIB, offsetof(struct wire_msg, u.getset.rv) },
		{ WIRE_SET_ATTRIB, offsetof(struct wire_msg, u.getset.rv) },
		{ WIRE_VERSION, offsetof(struct wire_msg, u.version.rv) },
		{ WIRE_WAIT_READER_STATE_CHANGE, offsetof(struct wire_msg, u.wait.rv) },
		{ WIRE_STOP_WAITING_READER_STATE_CHANGE, offsetof(struct wire_msg, u.wait.rv) },
		{ WIRE_GET_READER_EVENTS, offsetof(struct wire_msg, u.events.rv) },
	};
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		struct wire_msg m;
		uint32_t rv = 0, in_field;

		memset(&m, 0, sizeof(m));
		m.cmd = named[i].cmd;
		assert_true(wire_msg_set_rv(&m, 0x8010002Au));
		memcpy(&in_field, (const uint8_t *)&m + named[i].offset, sizeof(in_field));
		assert_int_equal(in_field, 0x8010002Au);
		in_field = 0x80100069u;
		memcpy((uint8_t *)&m + named[i].offset, &in_field, sizeof(in_field));
		assert_true(wire_msg_get_rv(&m, &rv));
		assert_int_equal(rv, 0x80100069u);
	}
}

/* A bare request never fails for lack of bytes, whatever follows it in the
 * input buffer (a partial next request must not look like a short read);
 * a whole reply struct is decoded as wire_decode_reply would. */
static void test_bare_request_ignores_following_bytes(void **state)
{
	uint8_t buf[16];

	(void)state;
	memset(buf, 0xAB, sizeof(buf));
	for (int32_t minor = 4; minor <= 6; minor++) {
		struct wire_params p = params_for(minor, WIRE_LITTLE_ENDIAN);

		for (size_t i = 0; i < p.proto->n_cmds; i++) {
			uint32_t cmd = p.proto->cmds[i].cmd;

			if (p.proto->cmds[i].body != WIRE_BODY_NONE)
				continue;
			struct wire_msg empty;
			memset(&empty, 0, sizeof(empty));
			empty.cmd = cmd;
			struct wire_msg reply;
			assert_int_equal(wire_decode_reply(&p, cmd, buf, sizeof(buf), &reply),
					 WIRE_OK);
			for (size_t len = 0; len <= sizeof(buf); len++) {
				bool whole = len >= p.proto->cmds[i].reply_size;
				struct wire_msg out;

				assert_int_equal(wire_decode_body(&p, cmd, buf, len, &out),
						 WIRE_OK);
				assert_memory_equal(&out, whole ? &reply : &empty, sizeof(out));
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_all_4_4),
		cmocka_unit_test(test_roundtrip_all_versions),
		cmocka_unit_test(test_layout_version),
		cmocka_unit_test(test_layout_connect),
		cmocka_unit_test(test_layout_connect_short_names),
		cmocka_unit_test(test_layout_transmit),
		cmocka_unit_test(test_layout_control),
		cmocka_unit_test(test_layout_getset),
		cmocka_unit_test(test_layout_reconnect_establish),
		cmocka_unit_test(test_negative_handles),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bad_size),
		cmocka_unit_test(test_no_body_ignores_size),
		cmocka_unit_test(test_length_bounds),
		cmocka_unit_test(test_encode_refuses_bad_lengths),
		cmocka_unit_test(test_get_attrib_reply_length_beyond_the_field),
		cmocka_unit_test(test_trailer_len),
		cmocka_unit_test(test_unknown_commands),
		cmocka_unit_test(test_version_table),
		cmocka_unit_test(test_version_rows),
		cmocka_unit_test(test_version_serve),
		cmocka_unit_test(test_version_name_len),
		cmocka_unit_test(test_version_adopt_layout),
		cmocka_unit_test(test_size_constants),
		cmocka_unit_test(test_table_consistency),
		cmocka_unit_test(test_cmd_names),
		cmocka_unit_test(test_version_differences),
		cmocka_unit_test(test_wait_request_bytes),
		cmocka_unit_test(test_connect_name_forced_nul),
		cmocka_unit_test(test_connect_name_truncated_on_encode),
		cmocka_unit_test(test_detect_version_header),
		cmocka_unit_test(test_detect_every_command),
		cmocka_unit_test(test_detect_undecidable),
		cmocka_unit_test(test_u32_helpers),
		cmocka_unit_test(test_header_roundtrip),
		cmocka_unit_test(test_small_output),
		cmocka_unit_test(test_invalid_args),
		cmocka_unit_test(test_bare_command_replies),
		cmocka_unit_test(test_msg_rv),
		cmocka_unit_test(test_bare_request_ignores_following_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
