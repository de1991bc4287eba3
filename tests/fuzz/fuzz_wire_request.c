/*
 * libFuzzer target: arbitrary bytes as a stream of client requests, and as a
 * daemon reply, for every protocol version in both byte orders. Whatever
 * decodes must encode back to the same value, and to the same bytes apart
 * from the reader name's unused tail (a GET_ATTRIB reply's length beyond
 * its field included: it is a number, the field's bytes stay the field's).
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

/* Same bytes, except connect's name field, which decode normalises. */
static void check_body_bytes(const struct wire_params *p, uint32_t cmd, const uint8_t *in,
			     const uint8_t *out, size_t n)
{
	size_t name_len = p->proto->reader_name_len;

	if (cmd != WIRE_CONNECT) {
		CHECK(memcmp(in, out, n) == 0);
		return;
	}
	CHECK(memcmp(in, out, 4) == 0);
	CHECK(memcmp(in + 4 + name_len, out + 4 + name_len, n - 4 - name_len) == 0);
	size_t kept = strlen((const char *)out + 4);
	CHECK(kept < name_len);
	CHECK(memcmp(in + 4, out + 4, kept) == 0);
	for (size_t i = kept; i < name_len; i++)
		CHECK(out[4 + i] == 0);
}

static void check_reencode(const struct wire_params *p, const struct wire_msg *msg,
			   const uint8_t *in, size_t n)
{
	uint8_t buf[512];
	struct wire_msg again;
	size_t written = wire_encode_body(p, msg, buf, sizeof(buf));

	CHECK(written == n);
	check_body_bytes(p, msg->cmd, in, buf, n);
	CHECK(wire_decode_reply(p, msg->cmd, buf, written, &again) == WIRE_OK);
	CHECK(memcmp(&again, msg, sizeof(again)) == 0);
}

/* One request at data[0..len); returns bytes consumed, 0 to stop. */
static size_t one_request(const struct wire_params *p, const uint8_t *data, size_t len)
{
	struct wire_header hdr;
	int rc = wire_decode_header(p, data, len, &hdr);
	if (rc == WIRE_NEED_MORE) {
		CHECK(len < WIRE_HEADER_SIZE);
		return 0;
	}
	CHECK(rc == WIRE_OK);
	const struct wire_cmd_spec *spec = NULL;
	if (wire_check_request(p, &hdr, &spec) != WIRE_OK)
		return 0; /* the daemon would close the connection here */
	CHECK(spec && spec->cmd == hdr.cmd);
	size_t body = spec->body == WIRE_BODY_STRUCT ? spec->body_size : 0;
	CHECK(body == 0 || hdr.size == body);
	struct wire_msg msg;
	uint8_t buf[8 + 512];
	size_t n;
	if (body == 0) {
		/* Bare request: never short of bytes, whatever follows. */
		static const struct wire_msg zero;
		CHECK(wire_decode_body(p, hdr.cmd, data + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE,
				       &msg) == WIRE_OK);
		CHECK(msg.cmd == hdr.cmd);
		msg.cmd = 0;
		if (len - WIRE_HEADER_SIZE < spec->reply_size)
			CHECK(memcmp(&msg, &zero, sizeof(msg)) == 0);
		n = wire_encode_request(p, &(struct wire_msg){ .cmd = hdr.cmd }, buf, sizeof(buf));
		CHECK(n == WIRE_HEADER_SIZE);
		return WIRE_HEADER_SIZE;
	}
	rc = wire_decode_body(p, hdr.cmd, data + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE, &msg);
	if (rc == WIRE_NEED_MORE) {
		CHECK(len - WIRE_HEADER_SIZE < body);
		return 0;
	}
	if (rc != WIRE_OK) {
		CHECK(rc == WIRE_E_BAD_LENGTH);
		return 0;
	}
	n = wire_encode_request(p, &msg, buf, sizeof(buf));
	CHECK(n == WIRE_HEADER_SIZE + body);
	CHECK(memcmp(buf, data, WIRE_HEADER_SIZE) == 0);
	check_reencode(p, &msg, data + WIRE_HEADER_SIZE, body);

	uint32_t trailer = wire_request_trailer_len(&msg);
	CHECK(trailer <= WIRE_MAX_BUFFER_SIZE_EXTENDED);
	if (len - WIRE_HEADER_SIZE - body < trailer)
		return 0;
	return WIRE_HEADER_SIZE + body + trailer;
}

static void as_requests(const struct wire_params *p, const uint8_t *data, size_t size)
{
	size_t used;

	while ((used = one_request(p, data, size)) > 0) {
		CHECK(used <= size);
		data += used;
		size -= used;
	}
}

/* The same bytes read as the fixed reply of each command. */
static void as_replies(const struct wire_params *p, const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < p->proto->n_cmds; i++) {
		const struct wire_cmd_spec *spec = &p->proto->cmds[i];
		struct wire_msg msg;
		int rc = wire_decode_reply(p, spec->cmd, data, size, &msg);

		if (spec->reply_size == 0) {
			CHECK(rc == WIRE_OK);
			continue;
		}
		if (size < spec->reply_size) {
			CHECK(rc == WIRE_NEED_MORE);
			continue;
		}
		if (rc == WIRE_E_BAD_LENGTH)
			continue;
		CHECK(rc == WIRE_OK);
		check_reencode(p, &msg, data, spec->reply_size);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct wire_proto *protos[] = {
		wire_proto_find(4, 2)->older_layout,
		wire_proto_find(4, 2),
		wire_proto_find(4, 3),
		wire_proto_find(4, 4),
		wire_proto_find(4, 5),
		wire_proto_find(4, 6),
	};

	if (size >= WIRE_HEADER_SIZE) {
		enum wire_byte_order o = wire_detect_byte_order(data);
		CHECK(o == WIRE_LITTLE_ENDIAN || o == WIRE_BIG_ENDIAN);
	}
	for (size_t v = 0; v < sizeof(protos) / sizeof(protos[0]); v++) {
		for (int order = WIRE_LITTLE_ENDIAN; order <= WIRE_BIG_ENDIAN; order++) {
			struct wire_params p;

			wire_params_init(&p);
			p.proto = protos[v];
			p.order = (enum wire_byte_order)order;
			as_requests(&p, data, size);
			as_replies(&p, data, size);
		}
	}
	return 0;
}
