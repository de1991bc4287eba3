/*
 * The version table: what every command looks like in every protocol
 * version pcsc-lite has shipped. This is the only place that knows how the
 * versions differ; everything else asks wire_cmd_lookup().
 *
 * Commands 0x03, 0x0C and 0x0E appear in no row: pcscd never implemented
 * them and closes the connection when they arrive, and so do we.
 */
#include "wire.h"

#include <stddef.h>

/* The version table reads as a table: the formatter leaves it alone. */
/* clang-format off */

/* Struct sizes that depend on the reader-name field length. */
#define CONNECT_SIZE(name_len) (4u + (name_len) + 5u * 4u)
#define SHORT_READER_NAME 100u /* MAX_READERNAME up to pcsc-lite 1.8.3 */

#define WAIT_SIGNAL_SIZE WIRE_EVENT_SIGNAL_SIZE

/* A command whose request and reply are the same fixed struct. */
#define STRUCT_CMD(code, label, size)                                            \
	{ .cmd = (code), .name = (label), .body = WIRE_BODY_STRUCT, .body_size = (size), \
	  .reply = WIRE_REPLY_STRUCT, .trailer = WIRE_TRAILER_NONE, .reply_size = (size) }

#define DATA_CMD(code, label, size)                                              \
	{ .cmd = (code), .name = (label), .body = WIRE_BODY_STRUCT, .body_size = (size), \
	  .reply = WIRE_REPLY_STRUCT, .trailer = WIRE_TRAILER_SEND_DATA, .reply_size = (size) }

/* A command sent as a bare header (size 0). */
#define BARE_CMD(code, label, reply_kind, rsize)                                 \
	{ .cmd = (code), .name = (label), .body = WIRE_BODY_NONE, .body_size = 0,     \
	  .reply = (reply_kind), .trailer = WIRE_TRAILER_NONE, .reply_size = (rsize) }

/* 4:2/4:3 WAIT and STOP carry the 8-byte wait struct as a request body. */
#define WAIT_BODY_CMD(code, label, reply_kind)                                   \
	{ .cmd = (code), .name = (label), .body = WIRE_BODY_STRUCT,                  \
	  .body_size = WAIT_SIGNAL_SIZE, .reply = (reply_kind),                      \
	  .trailer = WIRE_TRAILER_NONE, .reply_size = WAIT_SIGNAL_SIZE }

/* Commands identical in every version, given the reader-name length. */
#define COMMON_CMDS(name_len)                                                    \
	STRUCT_CMD(WIRE_ESTABLISH_CONTEXT, "SCARD_ESTABLISH_CONTEXT", 12),       \
	STRUCT_CMD(WIRE_RELEASE_CONTEXT, "SCARD_RELEASE_CONTEXT", 8),            \
	STRUCT_CMD(WIRE_CONNECT, "SCARD_CONNECT", CONNECT_SIZE(name_len)),       \
	STRUCT_CMD(WIRE_RECONNECT, "SCARD_RECONNECT", 24),                       \
	STRUCT_CMD(WIRE_DISCONNECT, "SCARD_DISCONNECT", 12),                     \
	STRUCT_CMD(WIRE_BEGIN_TRANSACTION, "SCARD_BEGIN_TRANSACTION", 8),        \
	STRUCT_CMD(WIRE_END_TRANSACTION, "SCARD_END_TRANSACTION", 12),           \
	DATA_CMD(WIRE_TRANSMIT, "SCARD_TRANSMIT", 32),                           \
	DATA_CMD(WIRE_CONTROL, "SCARD_CONTROL", 24),                             \
	STRUCT_CMD(WIRE_STATUS, "SCARD_STATUS", 8),                              \
	STRUCT_CMD(WIRE_CANCEL, "SCARD_CANCEL", 8),                              \
	STRUCT_CMD(WIRE_GET_ATTRIB, "SCARD_GET_ATTRIB", 280),                    \
	STRUCT_CMD(WIRE_SET_ATTRIB, "SCARD_SET_ATTRIB", 280),                    \
	STRUCT_CMD(WIRE_VERSION, "CMD_VERSION", 12),                             \
	BARE_CMD(WIRE_GET_READERS_STATE, "CMD_GET_READERS_STATE",                \
		 WIRE_REPLY_STATE_ARRAY, 0)

#define WAIT_NAME "CMD_WAIT_READER_STATE_CHANGE"
#define STOP_NAME "CMD_STOP_WAITING_READER_STATE_CHANGE"
#define EVENTS_CMD                                                               \
	BARE_CMD(WIRE_GET_READER_EVENTS, "CMD_GET_READER_EVENTS", WIRE_REPLY_STRUCT, 8)

/* pcsc-lite <= 1.8.3: 100-byte names. Every 4:2 daemon answered STOP
 * whether or not the connection was waiting. */
static const struct wire_cmd_spec cmds_4_2_short[] = {
	COMMON_CMDS(SHORT_READER_NAME),
	WAIT_BODY_CMD(WIRE_WAIT_READER_STATE_CHANGE, WAIT_NAME, WIRE_REPLY_WAIT_LATER),
	WAIT_BODY_CMD(WIRE_STOP_WAITING_READER_STATE_CHANGE, STOP_NAME, WIRE_REPLY_STRUCT),
};

/* pcsc-lite 1.8.4 - 1.8.8. */
static const struct wire_cmd_spec cmds_4_2[] = {
	COMMON_CMDS(WIRE_MAX_READERNAME),
	WAIT_BODY_CMD(WIRE_WAIT_READER_STATE_CHANGE, WAIT_NAME, WIRE_REPLY_WAIT_LATER),
	WAIT_BODY_CMD(WIRE_STOP_WAITING_READER_STATE_CHANGE, STOP_NAME, WIRE_REPLY_STRUCT),
};

/* pcsc-lite 1.8.9 - 1.8.23. STOP answers only a registered connection
 * (1.8.20 on); a racing event signal stands in for the answer otherwise. */
static const struct wire_cmd_spec cmds_4_3[] = {
	COMMON_CMDS(WIRE_MAX_READERNAME),
	WAIT_BODY_CMD(WIRE_WAIT_READER_STATE_CHANGE, WAIT_NAME, WIRE_REPLY_WAIT_LATER),
	WAIT_BODY_CMD(WIRE_STOP_WAITING_READER_STATE_CHANGE, STOP_NAME,
		      WIRE_REPLY_STRUCT_IF_WAITING),
};

/* 4:4 and 4:5: WAIT and STOP lose their body; WAIT answers the array at once
 * so that registering and taking the snapshot are one step. */
#define WAIT_STOP_4_4                                                            \
	BARE_CMD(WIRE_WAIT_READER_STATE_CHANGE, WAIT_NAME, WIRE_REPLY_ARRAY_AND_WAIT, \
		 WAIT_SIGNAL_SIZE),                                               \
	BARE_CMD(WIRE_STOP_WAITING_READER_STATE_CHANGE, STOP_NAME,               \
		 WIRE_REPLY_STRUCT_IF_WAITING, WAIT_SIGNAL_SIZE)

static const struct wire_cmd_spec cmds_4_4[] = {
	COMMON_CMDS(WIRE_MAX_READERNAME),
	WAIT_STOP_4_4,
};

static const struct wire_cmd_spec cmds_4_5[] = {
	COMMON_CMDS(WIRE_MAX_READERNAME),
	WAIT_STOP_4_4,
	EVENTS_CMD,
};

/* 4:6: variable array; WAIT only registers, the client fetches the array
 * with 0x16 then 0x17. */
static const struct wire_cmd_spec cmds_4_6[] = {
	COMMON_CMDS(WIRE_MAX_READERNAME),
	BARE_CMD(WIRE_WAIT_READER_STATE_CHANGE, WAIT_NAME, WIRE_REPLY_WAIT_LATER,
		 WAIT_SIGNAL_SIZE),
	BARE_CMD(WIRE_STOP_WAITING_READER_STATE_CHANGE, STOP_NAME,
		 WIRE_REPLY_STRUCT_IF_WAITING, WAIT_SIGNAL_SIZE),
	EVENTS_CMD,
	BARE_CMD(WIRE_GET_READERS_STATE_SIZE, "CMD_GET_READERS_STATE_SIZE", WIRE_REPLY_INT32, 4),
	BARE_CMD(WIRE_GET_READERS_STATE_ARRAY, "CMD_GET_READERS_STATE_ARRAY",
		 WIRE_REPLY_STATE_ARRAY, 0),
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define PROTO(maj, min, label, name_len, table, older)                           \
	{ .major = (maj), .minor = (min), .name = (label), .reader_name_len = (name_len), \
	  .cmds = (table), .n_cmds = N_OF(table), .older_layout = (older) }

/* Reached only through 4:2's older_layout. */
static const struct wire_proto proto_4_2_short =
	PROTO(4, 2, "4:2 (100-byte names)", SHORT_READER_NAME, cmds_4_2_short, NULL);

/* Lowest first; wire_proto_find() searches this list. */
static const struct wire_proto protos[] = {
	PROTO(4, 2, "4:2", WIRE_MAX_READERNAME, cmds_4_2, &proto_4_2_short),
	PROTO(4, 3, "4:3", WIRE_MAX_READERNAME, cmds_4_3, NULL),
	PROTO(4, 4, "4:4", WIRE_MAX_READERNAME, cmds_4_4, NULL),
	PROTO(4, 5, "4:5", WIRE_MAX_READERNAME, cmds_4_5, NULL),
	PROTO(4, 6, "4:6", WIRE_MAX_READERNAME, cmds_4_6, NULL),
};

/* clang-format on */

#define PROTO_4_4 (&protos[2])
#define PROTO_LOWEST (&protos[0])
#define PROTO_HIGHEST (&protos[N_OF(protos) - 1])

const struct wire_proto *wire_proto_find(int32_t major, int32_t minor)
{
	for (size_t i = 0; i < N_OF(protos); i++) {
		if (protos[i].major == major && protos[i].minor == minor)
			return &protos[i];
	}
	return NULL;
}

const struct wire_proto *wire_proto_default(void)
{
	return PROTO_4_4;
}

const struct wire_proto *wire_proto_highest(void)
{
	return PROTO_HIGHEST;
}

const struct wire_proto *wire_proto_lowest(void)
{
	return PROTO_LOWEST;
}

size_t wire_proto_count(void)
{
	return N_OF(protos);
}

const struct wire_proto *wire_proto_at(size_t i)
{
	return i < N_OF(protos) ? &protos[i] : NULL;
}

const struct wire_proto *wire_proto_serve(int32_t major, int32_t minor)
{
	const struct wire_proto *proto = wire_proto_find(major, minor);

	if (!proto && major == PROTO_HIGHEST->major && minor > PROTO_HIGHEST->minor)
		proto = PROTO_HIGHEST;
	return proto;
}

const struct wire_proto *wire_proto_with_name_len(const struct wire_proto *proto, uint32_t name_len)
{
	for (const struct wire_proto *p = proto; p; p = p->older_layout) {
		if (p->reader_name_len == name_len)
			return p;
	}
	return proto;
}

/* True if hdr has the size proto gives its command (bare commands: any size). */
static bool fits(const struct wire_proto *proto, const struct wire_header *hdr)
{
	const struct wire_cmd_spec *spec = wire_cmd_lookup(proto, hdr->cmd);

	return spec && (spec->body == WIRE_BODY_NONE || spec->body_size == hdr->size);
}

const struct wire_proto *wire_proto_adopt_layout(const struct wire_proto *proto,
						 const struct wire_header *hdr)
{
	if (!proto || !hdr || !proto->older_layout)
		return NULL;
	if (fits(proto, hdr) || !fits(proto->older_layout, hdr))
		return NULL;
	return proto->older_layout;
}

const struct wire_cmd_spec *wire_cmd_lookup(const struct wire_proto *proto, uint32_t cmd)
{
	if (!proto)
		return NULL;
	for (size_t i = 0; i < proto->n_cmds; i++) {
		if (proto->cmds[i].cmd == cmd)
			return &proto->cmds[i];
	}
	return NULL;
}

/* Names of codes that exist in pcsc-lite's list but in no version's table. */
static const struct {
	uint32_t cmd;
	const char *name;
} unserved_names[] = {
	{ WIRE_LIST_READERS, "SCARD_LIST_READERS" },
	{ WIRE_GET_STATUS_CHANGE, "SCARD_GET_STATUS_CHANGE" },
	{ WIRE_CANCEL_TRANSACTION, "SCARD_CANCEL_TRANSACTION" },
};

const char *wire_cmd_name(uint32_t cmd)
{
	/* The highest version holds every served command. */
	const struct wire_cmd_spec *spec = wire_cmd_lookup(PROTO_HIGHEST, cmd);

	if (spec)
		return spec->name;
	for (size_t i = 0; i < N_OF(unserved_names); i++) {
		if (unserved_names[i].cmd == cmd)
			return unserved_names[i].name;
	}
	return "UNKNOWN";
}

void wire_params_init(struct wire_params *params)
{
	if (!params)
		return;
	params->proto = wire_proto_default();
	params->order = WIRE_LITTLE_ENDIAN;
	params->reader_slots = WIRE_LEGACY_READER_SLOTS;
}
