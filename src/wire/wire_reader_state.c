/*
 * The reader-state record (pcsc-lite's READER_STATE) and the array of them
 * that CMD_GET_READERS_STATE, CMD_WAIT_READER_STATE_CHANGE (4:4/4:5) and
 * CMD_GET_READERS_STATE_ARRAY send; and a 4:6 event signal found in front
 * of the array's length or inside the array.
 *
 * Record layout, n = reader-name length of the version (128, or 100 before
 * pcsc-lite 1.8.4):
 *   0      name[n]
 *   n      event counter
 *   n+4    reader state
 *   n+8    sharing
 *   n+12   ATR[33], then padding to a 4-byte boundary
 *   ...    ATR length, protocol
 * giving 184 bytes for n = 128 and 156 for n = 100.
 */
#include "wire.h"

#include <stdint.h>
#include <string.h>

#include <pcsclite.h>

#define ALIGN4(x) (((x) + 3u) & ~(size_t)3u)

struct record_offsets {
	size_t name, event_counter, state, sharing, atr, atr_len, protocol, size;
};

static bool params_usable(const struct wire_params *params)
{
	return params && params->proto && params->proto->reader_name_len >= 1 &&
	       params->proto->reader_name_len <= WIRE_MAX_READERNAME;
}

/* Every offset follows from the name length; nothing else is hard-coded. */
static struct record_offsets offsets_for(size_t name_len)
{
	struct record_offsets o;

	o.name = 0;
	o.event_counter = o.name + name_len;
	o.state = o.event_counter + 4;
	o.sharing = o.state + 4;
	o.atr = o.sharing + 4;
	o.atr_len = ALIGN4(o.atr + WIRE_MAX_ATR_SIZE);
	o.protocol = o.atr_len + 4;
	o.size = o.protocol + 4;
	return o;
}

size_t wire_reader_record_size(const struct wire_params *params)
{
	if (!params_usable(params))
		return 0;
	return offsets_for(params->proto->reader_name_len).size;
}

size_t wire_reader_array_size(const struct wire_params *params)
{
	size_t record = wire_reader_record_size(params);

	if (record == 0 || params->reader_slots > SIZE_MAX / record)
		return 0;
	return record * params->reader_slots;
}

/* Name bytes up to the first NUL, keeping room for the terminator. */
static size_t bounded_name_len(const char *name, size_t field_len)
{
	const char *nul = memchr(name, '\0', field_len - 1);

	return nul ? (size_t)(nul - name) : field_len - 1;
}

/* rec is already zeroed, so padding and the name's tail stay 0. */
static void encode_record(const struct wire_params *params, const struct wire_reader_state *st,
			  uint8_t *rec)
{
	size_t name_len = params->proto->reader_name_len;
	struct record_offsets o = offsets_for(name_len);
	enum wire_byte_order order = params->order;

	memcpy(rec + o.name, st->name, bounded_name_len(st->name, name_len));
	wire_put_u32(order, rec + o.event_counter, st->event_counter);
	wire_put_u32(order, rec + o.state, st->state);
	wire_put_u32(order, rec + o.sharing, (uint32_t)st->sharing);
	memcpy(rec + o.atr, st->atr, WIRE_MAX_ATR_SIZE);
	wire_put_u32(order, rec + o.atr_len, st->atr_len);
	wire_put_u32(order, rec + o.protocol, st->protocol);
}

static void decode_record(const struct wire_params *params, const uint8_t *rec,
			  struct wire_reader_state *st)
{
	size_t name_len = params->proto->reader_name_len;
	struct record_offsets o = offsets_for(name_len);
	enum wire_byte_order order = params->order;

	memset(st, 0, sizeof(*st));
	/* The peer's name may lack its NUL; the last byte is forced to 0. */
	memcpy(st->name, rec + o.name, bounded_name_len((const char *)rec + o.name, name_len));
	st->event_counter = wire_get_u32(order, rec + o.event_counter);
	st->state = wire_get_u32(order, rec + o.state);
	st->sharing = (int32_t)wire_get_u32(order, rec + o.sharing);
	memcpy(st->atr, rec + o.atr, WIRE_MAX_ATR_SIZE);
	st->atr_len = wire_get_u32(order, rec + o.atr_len);
	st->protocol = wire_get_u32(order, rec + o.protocol);
}

size_t wire_encode_reader_states(const struct wire_params *params,
				 const struct wire_reader_state *states, size_t n, uint8_t *buf,
				 size_t cap)
{
	size_t total = wire_reader_array_size(params);

	if (total == 0 || !buf || cap < total || (!states && n > 0))
		return 0;
	size_t record = wire_reader_record_size(params);
	memset(buf, 0, total);
	if (n > params->reader_slots)
		n = params->reader_slots;
	for (size_t i = 0; i < n; i++)
		encode_record(params, &states[i], buf + i * record);
	return total;
}

size_t wire_decode_reader_states(const struct wire_params *params, const uint8_t *buf, size_t len,
				 struct wire_reader_state *out, size_t max)
{
	size_t record = wire_reader_record_size(params);

	if (record == 0 || !buf || !out)
		return 0;
	size_t n = len / record;
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		decode_record(params, buf + i * record, &out[i]);
	return n;
}

/* ---- an event signal inside another answer ---- */

/* The 8 bytes at p as an event signal: *rv its rv; false if they are not one. */
static bool decode_signal(const struct wire_params *params, const uint8_t *p, uint32_t *rv)
{
	struct wire_msg msg;

	if (wire_decode_reply(params, WIRE_WAIT_READER_STATE_CHANGE, p, WIRE_EVENT_SIGNAL_SIZE,
			      &msg) != WIRE_OK ||
	    msg.u.wait.timeout != 0)
		return false;
	*rv = msg.u.wait.rv;
	return true;
}

int wire_decode_count_after_wait(const struct wire_params *params, const uint8_t *buf, size_t len,
				 size_t *need, struct wire_count_answer *out)
{
	if (!params || !need || !out || (!buf && len > 0))
		return WIRE_E_INVALID;
	const struct wire_cmd_spec *spec = wire_cmd_lookup(params->proto,
							   WIRE_GET_READERS_STATE_SIZE);
	if (!spec || spec->reply != WIRE_REPLY_INT32)
		return WIRE_E_UNKNOWN_CMD;
	memset(out, 0, sizeof(*out));
	struct wire_msg msg;
	size_t count_at = 0;
	for (;;) {
		*need = count_at + spec->reply_size;
		if (len < *need)
			return WIRE_NEED_MORE;
		if (wire_decode_reply(params, WIRE_GET_READERS_STATE_SIZE, buf + count_at,
				      spec->reply_size, &msg) != WIRE_OK)
			return WIRE_E_INVALID;
		if (msg.u.count != 0 || out->signalled)
			break;
		/* a zero first word: a signal, whose rv comes before the count */
		*need = WIRE_EVENT_SIGNAL_SIZE;
		if (len < *need)
			return WIRE_NEED_MORE;
		if (!decode_signal(params, buf, &out->signal_rv))
			return WIRE_E_INVALID;
		out->signalled = true;
		count_at = WIRE_EVENT_SIGNAL_SIZE;
	}
	out->count = (uint32_t)msg.u.count;
	return WIRE_OK;
}

/* A signal in front of rec, then the first byte of a name pushed back behind it. */
static bool signal_in_front(const struct wire_params *params, const uint8_t *rec, size_t name,
			    uint32_t *rv)
{
	uint8_t first = rec[WIRE_EVENT_SIGNAL_SIZE + name];

	return decode_signal(params, rec, rv) &&
	       (*rv == SCARD_S_SUCCESS || *rv == (uint32_t)SCARD_E_CANCELLED) && first >= 0x20 &&
	       first != 0x7F;
}

size_t wire_take_array_signal(const struct wire_params *params, uint8_t *buf, size_t len,
			      uint32_t *signal_rv)
{
	size_t record = wire_reader_record_size(params);

	if (record == 0 || !buf || !signal_rv)
		return 0;
	size_t name = offsets_for(params->proto->reader_name_len).name;
	if (record <= WIRE_EVENT_SIGNAL_SIZE + name)
		return 0;
	len -= len % record;
	for (size_t at = 0; at < len; at += record) {
		uint32_t rv;
		if (!signal_in_front(params, buf + at, name, &rv))
			continue;
		*signal_rv = rv;
		memmove(buf + at, buf + at + WIRE_EVENT_SIGNAL_SIZE,
			len - at - WIRE_EVENT_SIGNAL_SIZE);
		return WIRE_EVENT_SIGNAL_SIZE;
	}
	return 0;
}
