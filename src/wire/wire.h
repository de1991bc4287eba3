/*
 * The pcsc-lite client/daemon wire protocol as pure data.
 *
 * Outside bytes become typed values here and nowhere else. Every function is
 * pure: it works on caller-owned buffers, allocates nothing, does no I/O and
 * keeps no global state, so it can be fuzzed in isolation and shared by the
 * daemon and the client library.
 *
 * What each command looks like in each protocol version lives in one table
 * (wire_tables.c); the rest of the code asks the table instead of branching on
 * version numbers. Byte order and the reader-array length are per-connection
 * parameters (struct wire_params).
 */
#ifndef SCARDD_WIRE_H
#define SCARDD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Command codes carried in the 8-byte request header. */
enum wire_cmd {
	WIRE_ESTABLISH_CONTEXT = 0x01,
	WIRE_RELEASE_CONTEXT = 0x02,
	WIRE_LIST_READERS = 0x03,
	WIRE_CONNECT = 0x04,
	WIRE_RECONNECT = 0x05,
	WIRE_DISCONNECT = 0x06,
	WIRE_BEGIN_TRANSACTION = 0x07,
	WIRE_END_TRANSACTION = 0x08,
	WIRE_TRANSMIT = 0x09,
	WIRE_CONTROL = 0x0A,
	WIRE_STATUS = 0x0B,
	WIRE_GET_STATUS_CHANGE = 0x0C,
	WIRE_CANCEL = 0x0D,
	WIRE_CANCEL_TRANSACTION = 0x0E,
	WIRE_GET_ATTRIB = 0x0F,
	WIRE_SET_ATTRIB = 0x10,
	WIRE_VERSION = 0x11,
	WIRE_GET_READERS_STATE = 0x12,
	WIRE_WAIT_READER_STATE_CHANGE = 0x13,
	WIRE_STOP_WAITING_READER_STATE_CHANGE = 0x14,
	WIRE_GET_READER_EVENTS = 0x15,
	WIRE_GET_READERS_STATE_SIZE = 0x16,
	WIRE_GET_READERS_STATE_ARRAY = 0x17,
};

#define WIRE_HEADER_SIZE 8u
#define WIRE_MAX_BUFFER_SIZE 264u
#define WIRE_MAX_BUFFER_SIZE_EXTENDED 65548u /* 4+3+65536+3+2 */
#define WIRE_MAX_ATR_SIZE 33u
#define WIRE_MAX_READERNAME 128u     /* longest layout; 4:2 before 1.8.4 used 100 */
#define WIRE_LEGACY_READER_SLOTS 16u /* array entries for 4:2 .. 4:5 clients */
/* The largest fixed struct of any command in any version (SCARD_GET_ATTRIB,
 * SCARD_SET_ATTRIB): a header plus this holds every fixed message. */
#define WIRE_MAX_STRUCT_SIZE 280u
/* The event signal a registered client is sent (struct wire_wait). */
#define WIRE_EVENT_SIGNAL_SIZE 8u
/* One reader-state record with 128-byte names, as every version since
 * pcsc-lite 1.8.4 sends it (and as those libraries hold READER_STATE in
 * memory); wire_reader_record_size() gives any layout's. */
#define WIRE_READER_RECORD_SIZE 184u

/* Results of codec functions (never SCARD_* codes). */
enum wire_result {
	WIRE_OK = 0,
	WIRE_NEED_MORE = 1,      /* buffer too short: read more bytes */
	WIRE_E_UNKNOWN_CMD = -1, /* command not defined in this version */
	WIRE_E_BAD_SIZE = -2,    /* header.size differs from the struct size */
	WIRE_E_BAD_LENGTH = -3,  /* a length field exceeds its bound */
	WIRE_E_NO_SPACE = -4,    /* output buffer too small */
	WIRE_E_INVALID = -5,     /* argument not usable (e.g. NULL) */
};

enum wire_byte_order { WIRE_LITTLE_ENDIAN = 0, WIRE_BIG_ENDIAN = 1 };

/* How a command's request body and reply are shaped in one version. */
enum wire_body_kind {
	WIRE_BODY_NONE,   /* header only; header.size is not looked at */
	WIRE_BODY_STRUCT, /* header.size must equal spec->body_size */
};
enum wire_reply_kind {
	WIRE_REPLY_STRUCT,            /* the same struct as the request, filled */
	WIRE_REPLY_STATE_ARRAY,       /* params->reader_slots reader-state records */
	WIRE_REPLY_ARRAY_AND_WAIT,    /* state array now, 8-byte wait signal later (4:4/4:5 WAIT) */
	WIRE_REPLY_WAIT_LATER,        /* nothing now, 8-byte wait signal later (4:2/4:3/4:6 WAIT) */
	WIRE_REPLY_STRUCT_IF_WAITING, /* STOP_WAITING: reply only if registered */
	WIRE_REPLY_INT32,             /* raw 4-byte count (4:6 0x16) */
};
enum wire_trailer_kind {
	WIRE_TRAILER_NONE,
	WIRE_TRAILER_SEND_DATA, /* request followed by send_length raw bytes; reply by
	                           recv_length / bytes_returned bytes when rv == 0 */
};

struct wire_cmd_spec {
	uint32_t cmd;
	const char *name; /* "SCARD_CONNECT", for logs */
	enum wire_body_kind body;
	uint32_t body_size; /* bytes of the request struct (0 for WIRE_BODY_NONE) */
	enum wire_reply_kind reply;
	enum wire_trailer_kind trailer;
	/* bytes of the fixed reply struct: body_size for struct replies, 8 for
	 * the wait signal and for reader events, 4 for INT32, 0 for bare arrays */
	uint32_t reply_size;
};

/* One protocol version (one row of the version table). */
struct wire_proto {
	int32_t major;
	int32_t minor;
	const char *name;         /* "4:4" */
	uint32_t reader_name_len; /* 128, or 100 for 4:2 before pcsc-lite 1.8.4 */
	const struct wire_cmd_spec *cmds;
	size_t n_cmds;
	/* The same major:minor as older libraries laid it out, or NULL: 4:2 has
	 * 100-byte reader names up to pcsc-lite 1.8.3. Never a row of its own
	 * (wire_proto_find gives the newer layout); a connection moves to it
	 * through wire_proto_with_name_len or wire_proto_adopt_layout, and a
	 * client that finds one probes which layout its daemon uses. */
	const struct wire_proto *older_layout;
};

/* Per-connection parameters: everything the codec needs to know about a peer. */
struct wire_params {
	const struct wire_proto *proto;
	enum wire_byte_order order;
	uint32_t reader_slots; /* records in a reader-state array for this peer */
};

/* Version table access. */
struct wire_header;
const struct wire_proto *wire_proto_find(int32_t major, int32_t minor);
const struct wire_proto *wire_proto_default(void); /* 4:4: used before CMD_VERSION */
const struct wire_proto *wire_proto_highest(void);
const struct wire_proto *wire_proto_lowest(void);
/* The rows, lowest version first: i < wire_proto_count(), else NULL. */
size_t wire_proto_count(void);
const struct wire_proto *wire_proto_at(size_t i);

/*
 * The row a daemon serves a client that asks for major:minor: that version,
 * the highest one for a newer minor of the highest major (minors only ever
 * added commands), or NULL (refuse).
 */
const struct wire_proto *wire_proto_serve(int32_t major, int32_t minor);

/*
 * proto's version with name_len-byte reader names (a socket's names=100),
 * or proto itself when the version has no such layout.
 */
const struct wire_proto *wire_proto_with_name_len(const struct wire_proto *proto,
						  uint32_t name_len);

/*
 * A request that does not fit proto may show that the client uses the
 * version's older layout (a 124-byte SCARD_CONNECT on a 4:2 connection is
 * pcsc-lite <= 1.8.3's): returns that layout when hdr fits it and not proto,
 * else NULL. The connection then stays in that layout.
 */
const struct wire_proto *wire_proto_adopt_layout(const struct wire_proto *proto,
						 const struct wire_header *hdr);

const struct wire_cmd_spec *wire_cmd_lookup(const struct wire_proto *proto, uint32_t cmd);
const char *wire_cmd_name(uint32_t cmd); /* any version; "UNKNOWN" if none */

/* Fills params for a fresh connection: default proto, little endian, 16 slots. */
void wire_params_init(struct wire_params *params);

/* ---- decoded structs (request and reply share one struct, as on the wire) ---- */

struct wire_header {
	uint32_t size;
	uint32_t cmd;
};

struct wire_version_msg {
	int32_t major, minor;
	uint32_t rv;
};
struct wire_establish {
	uint32_t scope;
	uint32_t context;
	uint32_t rv;
};
struct wire_release {
	uint32_t context;
	uint32_t rv;
};
struct wire_connect {
	uint32_t context;
	char reader[WIRE_MAX_READERNAME]; /* always NUL-terminated after decode */
	uint32_t share_mode;
	uint32_t preferred_protocols;
	int32_t card;
	uint32_t active_protocol;
	uint32_t rv;
};
struct wire_reconnect {
	int32_t card;
	uint32_t share_mode, preferred_protocols, initialization, active_protocol;
	uint32_t rv;
};
struct wire_disconnect {
	int32_t card;
	uint32_t disposition;
	uint32_t rv;
};
struct wire_begin {
	int32_t card;
	uint32_t rv;
};
struct wire_end {
	int32_t card;
	uint32_t disposition;
	uint32_t rv;
};
struct wire_cancel {
	int32_t context;
	uint32_t rv;
};
struct wire_status {
	int32_t card;
	uint32_t rv;
};
struct wire_transmit {
	int32_t card;
	uint32_t send_pci_protocol, send_pci_length;
	uint32_t send_length; /* bytes following the struct (<= 65548) */
	uint32_t recv_pci_protocol, recv_pci_length;
	uint32_t recv_length; /* in: client buffer size; out: answer length */
	uint32_t rv;
};
struct wire_control {
	int32_t card;
	uint32_t control_code;
	uint32_t send_length; /* bytes following the struct (<= 65548) */
	uint32_t recv_length; /* client buffer size */
	uint32_t bytes_returned;
	uint32_t rv;
};
struct wire_getset {
	int32_t card;
	uint32_t attr_id;
	uint8_t attr[WIRE_MAX_BUFFER_SIZE];
	uint32_t attr_len; /* <= 264 */
	uint32_t rv;
};
struct wire_wait {
	uint32_t timeout;
	uint32_t rv;
}; /* also the event signal */
struct wire_reader_events {
	uint32_t events;
	uint32_t rv;
};

struct wire_msg {
	uint32_t cmd;
	union {
		struct wire_version_msg version;
		struct wire_establish establish;
		struct wire_release release;
		struct wire_connect connect;
		struct wire_reconnect reconnect;
		struct wire_disconnect disconnect;
		struct wire_begin begin;
		struct wire_end end;
		struct wire_cancel cancel;
		struct wire_status status;
		struct wire_transmit transmit;
		struct wire_control control;
		struct wire_getset getset;
		struct wire_wait wait;
		struct wire_reader_events events;
		int32_t count; /* WIRE_REPLY_INT32 */
	} u;
};

/* ---- framing ---- */

/* Decodes the 8-byte header. WIRE_NEED_MORE if len < 8. */
int wire_decode_header(const struct wire_params *params, const uint8_t *buf, size_t len,
		       struct wire_header *out);
size_t wire_encode_header(const struct wire_params *params, const struct wire_header *hdr,
			  uint8_t *buf, size_t cap);

/*
 * Checks a request header against the version table: WIRE_OK with *spec set,
 * WIRE_E_UNKNOWN_CMD, or WIRE_E_BAD_SIZE (body command whose header.size is
 * not the struct size).
 */
int wire_check_request(const struct wire_params *params, const struct wire_header *hdr,
		       const struct wire_cmd_spec **spec);

/*
 * Decodes the fixed struct of cmd (request or reply direction, same layout).
 * Validates bounds: transmit/control send_length <= 65548, getset attr_len <=
 * 264 (WIRE_E_BAD_LENGTH). NUL-terminates connect.reader. WIRE_NEED_MORE if
 * len < body size. Commands without a body never fail with WIRE_NEED_MORE:
 * with fewer than spec->reply_size bytes they decode to a zeroed msg (the
 * daemon's bare request; what follows it is the next request), with a whole
 * reply struct they decode it (wait signal, reader events, int32 count), as a
 * client does. New client code should prefer wire_decode_reply.
 */
int wire_decode_body(const struct wire_params *params, uint32_t cmd, const uint8_t *buf, size_t len,
		     struct wire_msg *out);

/*
 * Decodes the fixed reply of cmd (client side): the same as wire_decode_body
 * for struct commands; for bare commands the spec->reply_size struct they are
 * answered with (wait signal, reader events, int32 count). Commands answered
 * by a bare reader-state array decode to a zeroed msg.
 */
int wire_decode_reply(const struct wire_params *params, uint32_t cmd, const uint8_t *buf,
		      size_t len, struct wire_msg *out);

/*
 * Encodes the fixed struct of msg->cmd (for WIRE_BODY_NONE commands: the reply
 * struct, spec->reply_size bytes); returns bytes written, 0 on error or when
 * the command has no struct at all. Refuses out-of-bound lengths as decode does.
 */
size_t wire_encode_body(const struct wire_params *params, const struct wire_msg *msg, uint8_t *buf,
			size_t cap);

/* Header + body for a request (client side); returns bytes written, 0 on error. */
size_t wire_encode_request(const struct wire_params *params, const struct wire_msg *msg,
			   uint8_t *buf, size_t cap);

/* The rv of msg->cmd's struct; false for a command whose struct has none
 * (0x16's bare count) or that has no struct. */
bool wire_msg_get_rv(const struct wire_msg *msg, uint32_t *rv);
bool wire_msg_set_rv(struct wire_msg *msg, uint32_t rv);

/* Raw bytes that follow a decoded request's struct (transmit/control data). */
uint32_t wire_request_trailer_len(const struct wire_msg *msg);

/* 32-bit field access in an explicit byte order (p needs 4 bytes). */
uint32_t wire_get_u32(enum wire_byte_order order, const uint8_t *p);
void wire_put_u32(enum wire_byte_order order, uint8_t *p, uint32_t v);

/* ---- reader-state records ---- */

struct wire_reader_state {
	char name[WIRE_MAX_READERNAME]; /* "" = unused slot */
	uint32_t event_counter;
	uint32_t state;  /* SCARD_ABSENT, SCARD_PRESENT, ... bits */
	int32_t sharing; /* -1 exclusive, 0 unused, n shared */
	uint8_t atr[WIRE_MAX_ATR_SIZE];
	/* as sent: may exceed 33 (34 = "not initialised yet"); clamp before copying atr */
	uint32_t atr_len;
	uint32_t protocol;
};

/* Bytes of one record / of the whole array for these params. */
size_t wire_reader_record_size(const struct wire_params *params);
size_t wire_reader_array_size(const struct wire_params *params);

/*
 * Encodes exactly params->reader_slots records: states[0..n) then zeroed
 * records; states beyond reader_slots are dropped. Names longer than the
 * version's reader_name_len are truncated (always NUL-terminated). Returns
 * bytes written (wire_reader_array_size), 0 if cap is too small.
 */
size_t wire_encode_reader_states(const struct wire_params *params,
				 const struct wire_reader_state *states, size_t n, uint8_t *buf,
				 size_t cap);
/* Decodes up to max records from buf; returns the number decoded. */
size_t wire_decode_reader_states(const struct wire_params *params, const uint8_t *buf, size_t len,
				 struct wire_reader_state *out, size_t max);

/* ---- an event signal inside another answer (pcsc-lite 2.5) ---- */

/*
 * pcsc-lite 2.5 writes event signals from one thread and answers from
 * another, so after CMD_WAIT_READER_STATE_CHANGE the signal may land in
 * front of the CMD_GET_READERS_STATE_SIZE answer or inside the array that
 * follows. These two take it out of what a client read.
 */

struct wire_count_answer {
	uint32_t count;     /* the records the daemon announces */
	bool signalled;     /* an event signal came first */
	uint32_t signal_rv; /* its rv: 0, or SCARD_E_CANCELLED */
};
/* The most bytes wire_decode_count_after_wait asks for: a signal and the count. */
#define WIRE_COUNT_AFTER_WAIT_MAX (WIRE_EVENT_SIGNAL_SIZE + 4u)

/*
 * Decodes the CMD_GET_READERS_STATE_SIZE answer read after a WAIT. A signal
 * starts with a zero word and no daemon announces a zero-length array, so a
 * zero first word is a signal: its rv follows, then the count. Give it what
 * has been read so far (len bytes): WIRE_NEED_MORE with *need set to the
 * total to have read (at most WIRE_COUNT_AFTER_WAIT_MAX), or WIRE_OK with
 * *out filled; WIRE_E_UNKNOWN_CMD if the version has no such command.
 */
int wire_decode_count_after_wait(const struct wire_params *params, const uint8_t *buf, size_t len,
				 size_t *need, struct wire_count_answer *out);

/*
 * Looks for an event signal in front of a record of a 4:6 array read while
 * registered (buf: len bytes, whole records). A record boundary holds one
 * when it starts with a zero word and an rv of 0 or SCARD_E_CANCELLED, and
 * a record's name follows (a printable first byte). An unused slot starts
 * with a zero word too, but its name field holds zeros or an old name's
 * tail right after the NUL, never a name 8 bytes in. If found, the signal is
 * taken out (the bytes behind it move up), *signal_rv gets its rv, and the
 * return value is WIRE_EVENT_SIGNAL_SIZE: the bytes now missing at the end
 * of buf, to be read from the stream into its last bytes. Returns 0 if there
 * is none. (A signal in front of an all-zero slot is found at the next named
 * record; with none after it, it stays at the end, where the caller reads
 * it as the signal it is.)
 */
size_t wire_take_array_signal(const struct wire_params *params, uint8_t *buf, size_t len,
			      uint32_t *signal_rv);

/* ---- scardd's own status query (not pcsc-lite's) ---- */

/*
 * A bare header with this command, sent as a connection's first message,
 * asks scardd how it runs (`scard status`). The answer: a 32-bit length in
 * the connection's byte order (wire_get_u32/wire_put_u32), then that many
 * bytes of text, lines of tab-separated key=value fields (status_report.c in
 * the daemon says which). The connection stays open. pcsc-lite's daemons
 * know no such command and close the connection. The number is outside
 * pcsc-lite's range and small, so the header still tells the byte order.
 */
#define WIRE_SCARDD_STATUS 0x5C00u
#define WIRE_SCARDD_STATUS_MAX (1u << 20) /* the longest answer text */

/* ---- byte order ---- */

/*
 * Guesses a peer's byte order from its first header (CMD_VERSION or any other
 * command): the header fields are small numbers, so whichever order gives the
 * smaller values wins. Returns WIRE_LITTLE_ENDIAN when undecidable.
 */
enum wire_byte_order wire_detect_byte_order(const uint8_t header[WIRE_HEADER_SIZE]);

#endif
