/*
 * Framing and the fixed request/reply structs.
 *
 * Each struct is described once as a list of fields (a 32-bit word, the
 * reader-name field or the 264-byte attribute buffer); one loop decodes and
 * one encodes, so the two directions cannot disagree about an offset. Words
 * are read and written one byte at a time in the connection's byte order.
 */
#include "wire.h"

#include <string.h>

uint32_t wire_get_u32(enum wire_byte_order order, const uint8_t *p)
{
	if (order == WIRE_BIG_ENDIAN)
		return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

void wire_put_u32(enum wire_byte_order order, uint8_t *p, uint32_t v)
{
	if (order == WIRE_BIG_ENDIAN) {
		p[0] = (uint8_t)(v >> 24);
		p[1] = (uint8_t)(v >> 16);
		p[2] = (uint8_t)(v >> 8);
		p[3] = (uint8_t)v;
		return;
	}
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* ---- struct layouts ---- */

enum field_kind {
	F_WORD, /* 32-bit integer (signed fields share the unsigned bits) */
	F_NAME, /* reader name, proto->reader_name_len bytes on the wire */
	F_ATTR, /* attribute buffer, WIRE_MAX_BUFFER_SIZE bytes */
};

struct field {
	enum field_kind kind;
	size_t offset; /* within struct wire_msg */
};

struct layout {
	const struct field *fields;
	size_t n_fields;
};

/* The layouts read as tables: the formatter leaves them alone. */
/* clang-format off */
#define WORD(member) { F_WORD, offsetof(struct wire_msg, u.member) }
#define NAME(member) { F_NAME, offsetof(struct wire_msg, u.member) }
#define ATTR(member) { F_ATTR, offsetof(struct wire_msg, u.member) }

static const struct field version_fields[] = {
	WORD(version.major), WORD(version.minor), WORD(version.rv),
};
static const struct field establish_fields[] = {
	WORD(establish.scope), WORD(establish.context), WORD(establish.rv),
};
static const struct field release_fields[] = {
	WORD(release.context), WORD(release.rv),
};
static const struct field connect_fields[] = {
	WORD(connect.context), NAME(connect.reader), WORD(connect.share_mode),
	WORD(connect.preferred_protocols), WORD(connect.card),
	WORD(connect.active_protocol), WORD(connect.rv),
};
static const struct field reconnect_fields[] = {
	WORD(reconnect.card), WORD(reconnect.share_mode),
	WORD(reconnect.preferred_protocols), WORD(reconnect.initialization),
	WORD(reconnect.active_protocol), WORD(reconnect.rv),
};
static const struct field disconnect_fields[] = {
	WORD(disconnect.card), WORD(disconnect.disposition), WORD(disconnect.rv),
};
static const struct field begin_fields[] = {
	WORD(begin.card), WORD(begin.rv),
};
static const struct field end_fields[] = {
	WORD(end.card), WORD(end.disposition), WORD(end.rv),
};
static const struct field cancel_fields[] = {
	WORD(cancel.context), WORD(cancel.rv),
};
static const struct field status_fields[] = {
	WORD(status.card), WORD(status.rv),
};
static const struct field transmit_fields[] = {
	WORD(transmit.card), WORD(transmit.send_pci_protocol),
	WORD(transmit.send_pci_length), WORD(transmit.send_length),
	WORD(transmit.recv_pci_protocol), WORD(transmit.recv_pci_length),
	WORD(transmit.recv_length), WORD(transmit.rv),
};
static const struct field control_fields[] = {
	WORD(control.card), WORD(control.control_code), WORD(control.send_length),
	WORD(control.recv_length), WORD(control.bytes_returned), WORD(control.rv),
};
static const struct field getset_fields[] = {
	WORD(getset.card), WORD(getset.attr_id), ATTR(getset.attr),
	WORD(getset.attr_len), WORD(getset.rv),
};
static const struct field wait_fields[] = {
	WORD(wait.timeout), WORD(wait.rv),
};
static const struct field events_fields[] = {
	WORD(events.events), WORD(events.rv),
};
static const struct field count_fields[] = {
	WORD(count),
};

#define LAYOUT(f) { (f), sizeof(f) / sizeof((f)[0]) }

/* Indexed by command code; 0x12, 0x17 and unserved codes have no struct. */
static const struct layout layouts[] = {
	[WIRE_ESTABLISH_CONTEXT] = LAYOUT(establish_fields),
	[WIRE_RELEASE_CONTEXT] = LAYOUT(release_fields),
	[WIRE_CONNECT] = LAYOUT(connect_fields),
	[WIRE_RECONNECT] = LAYOUT(reconnect_fields),
	[WIRE_DISCONNECT] = LAYOUT(disconnect_fields),
	[WIRE_BEGIN_TRANSACTION] = LAYOUT(begin_fields),
	[WIRE_END_TRANSACTION] = LAYOUT(end_fields),
	[WIRE_TRANSMIT] = LAYOUT(transmit_fields),
	[WIRE_CONTROL] = LAYOUT(control_fields),
	[WIRE_STATUS] = LAYOUT(status_fields),
	[WIRE_CANCEL] = LAYOUT(cancel_fields),
	[WIRE_GET_ATTRIB] = LAYOUT(getset_fields),
	[WIRE_SET_ATTRIB] = LAYOUT(getset_fields),
	[WIRE_VERSION] = LAYOUT(version_fields),
	[WIRE_WAIT_READER_STATE_CHANGE] = LAYOUT(wait_fields),
	[WIRE_STOP_WAITING_READER_STATE_CHANGE] = LAYOUT(wait_fields),
	[WIRE_GET_READER_EVENTS] = LAYOUT(events_fields),
	[WIRE_GET_READERS_STATE_SIZE] = LAYOUT(count_fields),
};
/* clang-format on */

static const struct layout *layout_of(uint32_t cmd)
{
	if (cmd >= sizeof(layouts) / sizeof(layouts[0]))
		return NULL;
	return layouts[cmd].n_fields ? &layouts[cmd] : NULL;
}

/* Where cmd's struct keeps its rv in struct wire_msg; 0 if it has none. */
static size_t rv_offset(uint32_t cmd)
{
	const struct layout *layout = layout_of(cmd);

	/* every struct but 4:6's bare count ends with its rv */
	if (!layout || cmd == WIRE_GET_READERS_STATE_SIZE)
		return 0;
	return layout->fields[layout->n_fields - 1].offset;
}

bool wire_msg_get_rv(const struct wire_msg *msg, uint32_t *rv)
{
	size_t at = rv_offset(msg->cmd);

	if (at == 0)
		return false;
	memcpy(rv, (const uint8_t *)msg + at, sizeof(*rv));
	return true;
}

bool wire_msg_set_rv(struct wire_msg *msg, uint32_t rv)
{
	size_t at = rv_offset(msg->cmd);

	if (at == 0)
		return false;
	memcpy((uint8_t *)msg + at, &rv, sizeof(rv));
	return true;
}

static size_t field_size(const struct wire_params *params, enum field_kind kind)
{
	switch (kind) {
	case F_NAME: return params->proto->reader_name_len;
	case F_ATTR: return WIRE_MAX_BUFFER_SIZE;
	case F_WORD: break;
	}
	return 4;
}

static size_t layout_size(const struct wire_params *params, const struct layout *layout)
{
	size_t size = 0;

	for (size_t i = 0; i < layout->n_fields; i++)
		size += field_size(params, layout->fields[i].kind);
	return size;
}

static bool params_usable(const struct wire_params *params)
{
	if (!params || !params->proto)
		return false;
	/* A name field must hold at least the NUL and fit struct wire_connect. */
	return params->proto->reader_name_len >= 1 &&
	       params->proto->reader_name_len <= WIRE_MAX_READERNAME;
}

/* Copies a name up to its first NUL, at most field_len - 1 bytes, and
 * zero-fills the rest: bytes after the terminator carry no value. */
static void copy_name(char *dst, size_t dst_len, const char *src, size_t field_len)
{
	const char *nul = memchr(src, '\0', field_len - 1);
	size_t n = nul ? (size_t)(nul - src) : field_len - 1;

	memset(dst, 0, dst_len);
	memcpy(dst, src, n);
}

static void decode_field(const struct wire_params *params, const struct field *f, const uint8_t *p,
			 struct wire_msg *out)
{
	uint8_t *dst = (uint8_t *)out + f->offset;
	uint32_t word;

	switch (f->kind) {
	case F_WORD:
		word = wire_get_u32(params->order, p);
		memcpy(dst, &word, sizeof(word));
		return;
	case F_NAME:
		copy_name((char *)dst, WIRE_MAX_READERNAME, (const char *)p,
			  params->proto->reader_name_len);
		return;
	case F_ATTR: memcpy(dst, p, WIRE_MAX_BUFFER_SIZE); return;
	}
}

static void encode_field(const struct wire_params *params, const struct field *f,
			 const struct wire_msg *msg, uint8_t *p)
{
	const uint8_t *src = (const uint8_t *)msg + f->offset;
	uint32_t word;

	switch (f->kind) {
	case F_WORD:
		memcpy(&word, src, sizeof(word));
		wire_put_u32(params->order, p, word);
		return;
	case F_NAME:
		/* The source array may lack a NUL; never read past it. */
		copy_name((char *)p, params->proto->reader_name_len, (const char *)src,
			  params->proto->reader_name_len);
		return;
	case F_ATTR: memcpy(p, src, WIRE_MAX_BUFFER_SIZE); return;
	}
}

/* Lengths that announce more data than the protocol allows. */
/*
 * Lengths that say how many bytes follow, or how many of a fixed field are
 * used. A GET_ATTRIB reply is the exception: its length may exceed the
 * field, telling the client the size it would need (pcscd passes the
 * driver's on); the client compares it with its buffer.
 */
static bool lengths_in_bounds(const struct wire_msg *msg, bool reply)
{
	switch (msg->cmd) {
	case WIRE_TRANSMIT: return msg->u.transmit.send_length <= WIRE_MAX_BUFFER_SIZE_EXTENDED;
	case WIRE_CONTROL: return msg->u.control.send_length <= WIRE_MAX_BUFFER_SIZE_EXTENDED;
	case WIRE_GET_ATTRIB: return reply || msg->u.getset.attr_len <= WIRE_MAX_BUFFER_SIZE;
	case WIRE_SET_ATTRIB: return msg->u.getset.attr_len <= WIRE_MAX_BUFFER_SIZE;
	default: return true;
	}
}

/* ---- framing ---- */

int wire_decode_header(const struct wire_params *params, const uint8_t *buf, size_t len,
		       struct wire_header *out)
{
	if (!params || !out || (!buf && len > 0))
		return WIRE_E_INVALID;
	if (len < WIRE_HEADER_SIZE)
		return WIRE_NEED_MORE;
	out->size = wire_get_u32(params->order, buf);
	out->cmd = wire_get_u32(params->order, buf + 4);
	return WIRE_OK;
}

size_t wire_encode_header(const struct wire_params *params, const struct wire_header *hdr,
			  uint8_t *buf, size_t cap)
{
	if (!params || !hdr || !buf || cap < WIRE_HEADER_SIZE)
		return 0;
	wire_put_u32(params->order, buf, hdr->size);
	wire_put_u32(params->order, buf + 4, hdr->cmd);
	return WIRE_HEADER_SIZE;
}

int wire_check_request(const struct wire_params *params, const struct wire_header *hdr,
		       const struct wire_cmd_spec **spec)
{
	if (!params || !params->proto || !hdr)
		return WIRE_E_INVALID;
	const struct wire_cmd_spec *found = wire_cmd_lookup(params->proto, hdr->cmd);
	if (!found)
		return WIRE_E_UNKNOWN_CMD;
	if (found->body == WIRE_BODY_STRUCT && hdr->size != found->body_size)
		return WIRE_E_BAD_SIZE;
	if (spec)
		*spec = found;
	return WIRE_OK;
}

/* Reads `size` bytes of cmd's struct; size 0 gives the zeroed msg. */
static int decode_struct(const struct wire_params *params, uint32_t cmd, size_t size,
			 const uint8_t *buf, size_t len, bool reply, struct wire_msg *out)
{
	const struct layout *layout = layout_of(cmd);

	memset(out, 0, sizeof(*out));
	out->cmd = cmd;
	if (size == 0)
		return WIRE_OK;
	if (!layout || layout_size(params, layout) != size)
		return WIRE_E_INVALID; /* table and layout disagree: a bug, not input */
	if (len < size)
		return WIRE_NEED_MORE;
	for (size_t i = 0; i < layout->n_fields; i++) {
		decode_field(params, &layout->fields[i], buf, out);
		buf += field_size(params, layout->fields[i].kind);
	}
	return lengths_in_bounds(out, reply) ? WIRE_OK : WIRE_E_BAD_LENGTH;
}

int wire_decode_body(const struct wire_params *params, uint32_t cmd, const uint8_t *buf, size_t len,
		     struct wire_msg *out)
{
	if (!params_usable(params) || !out || (!buf && len > 0))
		return WIRE_E_INVALID;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(params->proto, cmd);
	if (!spec)
		return WIRE_E_UNKNOWN_CMD;
	if (spec->body == WIRE_BODY_NONE) {
		/* Nothing to read for the request itself; a whole reply struct
		 * is decoded for clients that read bare commands' replies here. */
		size_t size = len >= spec->reply_size ? spec->reply_size : 0;

		return decode_struct(params, cmd, size, buf, len, false, out);
	}
	return decode_struct(params, cmd, spec->body_size, buf, len, false, out);
}

int wire_decode_reply(const struct wire_params *params, uint32_t cmd, const uint8_t *buf,
		      size_t len, struct wire_msg *out)
{
	if (!params_usable(params) || !out || (!buf && len > 0))
		return WIRE_E_INVALID;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(params->proto, cmd);
	if (!spec)
		return WIRE_E_UNKNOWN_CMD;
	return decode_struct(params, cmd, spec->reply_size, buf, len, true, out);
}

size_t wire_encode_body(const struct wire_params *params, const struct wire_msg *msg, uint8_t *buf,
			size_t cap)
{
	if (!params_usable(params) || !msg || !buf)
		return 0;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(params->proto, msg->cmd);
	const struct layout *layout = layout_of(msg->cmd);
	/* A GET_ATTRIB reply may carry a length beyond the field (see above): the
	 * daemon passes on what a driver says, and only the field is written. */
	if (!spec || !layout || !lengths_in_bounds(msg, msg->cmd == WIRE_GET_ATTRIB))
		return 0;
	/* Struct commands reply with their request struct; bare ones with
	 * their own small reply, the only struct they have. */
	size_t size = spec->reply_size;
	if (size == 0 || size > cap || layout_size(params, layout) != size)
		return 0;
	for (size_t i = 0; i < layout->n_fields; i++) {
		encode_field(params, &layout->fields[i], msg, buf);
		buf += field_size(params, layout->fields[i].kind);
	}
	return size;
}

size_t wire_encode_request(const struct wire_params *params, const struct wire_msg *msg,
			   uint8_t *buf, size_t cap)
{
	if (!params_usable(params) || !msg || !buf)
		return 0;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(params->proto, msg->cmd);
	if (!spec)
		return 0;
	struct wire_header hdr;
	hdr.cmd = msg->cmd;
	hdr.size = spec->body == WIRE_BODY_STRUCT ? spec->body_size : 0;
	if (cap < WIRE_HEADER_SIZE + (size_t)hdr.size)
		return 0;
	wire_encode_header(params, &hdr, buf, cap);
	if (hdr.size == 0)
		return WIRE_HEADER_SIZE;
	size_t body = wire_encode_body(params, msg, buf + WIRE_HEADER_SIZE, cap - WIRE_HEADER_SIZE);
	return body == 0 ? 0 : WIRE_HEADER_SIZE + body;
}

uint32_t wire_request_trailer_len(const struct wire_msg *msg)
{
	if (!msg)
		return 0;
	if (msg->cmd == WIRE_TRANSMIT)
		return msg->u.transmit.send_length;
	if (msg->cmd == WIRE_CONTROL)
		return msg->u.control.send_length;
	return 0;
}

/* ---- byte order ---- */

/* A header is plausible if its command exists and its size could be a
 * struct (the largest is 280 bytes; allow generous slack). */
static bool header_plausible(uint32_t size, uint32_t cmd)
{
	return cmd >= WIRE_ESTABLISH_CONTEXT && cmd <= WIRE_GET_READERS_STATE_ARRAY &&
	       size <= 65536;
}

static uint32_t larger(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

enum wire_byte_order wire_detect_byte_order(const uint8_t header[WIRE_HEADER_SIZE])
{
	if (!header)
		return WIRE_LITTLE_ENDIAN;
	uint32_t le_size = wire_get_u32(WIRE_LITTLE_ENDIAN, header);
	uint32_t le_cmd = wire_get_u32(WIRE_LITTLE_ENDIAN, header + 4);
	uint32_t be_size = wire_get_u32(WIRE_BIG_ENDIAN, header);
	uint32_t be_cmd = wire_get_u32(WIRE_BIG_ENDIAN, header + 4);
	bool le_ok = header_plausible(le_size, le_cmd);
	bool be_ok = header_plausible(be_size, be_cmd);
	if (le_ok != be_ok)
		return le_ok ? WIRE_LITTLE_ENDIAN : WIRE_BIG_ENDIAN;
	/* Both or neither plausible: smaller numbers win, ties stay little. */
	if (larger(be_size, be_cmd) < larger(le_size, le_cmd))
		return WIRE_BIG_ENDIAN;
	return WIRE_LITTLE_ENDIAN;
}
