/*
 * The CMD_VERSION handshake, driven by one table.
 *
 * `offers` lists the versions this library speaks, best first. A daemon never
 * closes the connection over a refused version, so the next candidate is
 * simply sent again on the same socket. A refusal that names a version we
 * also speak makes that version the next candidate (what pcsc-lite 2.4.1+
 * clients do against older daemons); otherwise we walk down the table. An
 * acceptance that names a lower version we speak means the daemon runs that
 * one (2.4.1 accepts 4:6 but answers 4:5), so the connection uses it.
 *
 * The result lives in the connection's wire_params, i.e. per context: two
 * contexts may talk to different daemons, or to one daemon before and after
 * an upgrade, without disturbing each other.
 *
 * Speaking more versions is a matter of adding rows: the rest of the library
 * asks the wire table (wire_cmd_lookup) what each command looks like.
 *
 * "4:2" names two layouts (100-byte reader names up to pcsc-lite 1.8.3,
 * 128 after); a 4:2 daemon is asked for its reader array once, and the
 * array's length tells which.
 */
#include "client.h"

struct version_offer {
	int32_t major;
	int32_t minor;
};

static const struct version_offer offers[] = {
	{ 4, 6 }, { 4, 5 }, { 4, 4 }, { 4, 3 }, { 4, 2 },
};

#define N_OFFERS (sizeof(offers) / sizeof(offers[0]))

/* Index of major:minor in offers[], or -1. */
static int offer_index(int32_t major, int32_t minor)
{
	for (size_t i = 0; i < N_OFFERS; i++) {
		if (offers[i].major == major && offers[i].minor == minor)
			return (int)i;
	}
	return -1;
}

static LONG send_version(struct client_conn *c, int32_t major, int32_t minor,
			 struct wire_version_msg *reply)
{
	struct wire_msg msg = { .cmd = WIRE_VERSION };
	LONG rv;

	msg.u.version.major = major;
	msg.u.version.minor = minor;
	rv = conn_call(c, &msg);
	if (rv == SCARD_S_SUCCESS)
		*reply = msg.u.version;
	return rv;
}

/*
 * A 4:2 daemon of pcsc-lite <= 1.8.3 sends 16 records of 156 bytes, a later
 * one 16 of 184. Both come in one write, so what is left after the shorter
 * length (waiting a moment for it) tells them apart.
 */
static LONG probe_4_2_layout(struct client_conn *c)
{
	struct wire_params short_params = c->params;
	struct wire_msg msg = { .cmd = WIRE_GET_READERS_STATE };
	size_t short_len, long_len;
	uint8_t buf[16 * 184];
	LONG rv;

	short_params.proto = wire_proto_4_2_short_names();
	short_params.reader_slots = WIRE_LEGACY_READER_SLOTS;
	c->params.reader_slots = WIRE_LEGACY_READER_SLOTS;
	short_len = wire_reader_array_size(&short_params);
	long_len = wire_reader_array_size(&c->params);
	if (long_len > sizeof(buf) || short_len >= long_len)
		return SCARD_F_INTERNAL_ERROR;
	rv = conn_send(c, &msg, NULL, 0);
	if (rv == SCARD_S_SUCCESS)
		rv = conn_recv_raw(c, buf, short_len);
	if (rv != SCARD_S_SUCCESS)
		return rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv;
	if (conn_wait_readable(c, 200) == 1 && conn_pending(c) >= long_len - short_len) {
		rv = conn_recv_raw(c, buf + short_len, long_len - short_len);
		return rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv;
	}
	c->params.proto = short_params.proto;
	return SCARD_S_SUCCESS;
}

LONG negotiate_version(struct client_conn *c)
{
	bool tried[N_OFFERS] = { false };
	int next = 0;
	LONG last_rv = SCARD_E_NO_SERVICE;

	while (next >= 0) {
		const struct wire_proto *proto = wire_proto_find(offers[next].major, offers[next].minor);
		struct wire_version_msg reply;
		int named;
		LONG rv;

		tried[next] = true;
		if (proto == NULL)
			return SCARD_F_INTERNAL_ERROR; /* a row the codec does not know */
		c->params.proto = proto;
		rv = send_version(c, offers[next].major, offers[next].minor, &reply);
		if (rv != SCARD_S_SUCCESS)
			return rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv;
		named = offer_index(reply.major, reply.minor);
		if (reply.rv == SCARD_S_SUCCESS) {
			if (named > next)
				c->params.proto = wire_proto_find(offers[named].major, offers[named].minor);
			if (c->params.proto == wire_proto_find(4, 2))
				return probe_4_2_layout(c);
			return SCARD_S_SUCCESS;
		}
		last_rv = (LONG)reply.rv;
		if (named >= 0 && !tried[named]) {
			next = named;
			continue;
		}
		next = -1;
		for (size_t i = 0; i < N_OFFERS; i++) {
			if (!tried[i]) {
				next = (int)i;
				break;
			}
		}
	}
	return last_rv;
}
