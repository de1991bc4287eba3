/*
 * The CMD_VERSION handshake, driven by the wire table.
 *
 * This library offers every version in the table, highest first. A daemon
 * never closes the connection over a refused version, so the next candidate
 * is simply sent again on the same socket. A refusal that names a version we
 * also speak makes that version the next candidate (what pcsc-lite 2.4.1+
 * clients do against older daemons); otherwise we walk down the table. An
 * acceptance that names a lower version we speak means the daemon runs that
 * one (2.4.1 accepts 4:6 but answers 4:5), so the connection uses it.
 *
 * The result lives in the connection's wire_params, i.e. per context: two
 * contexts may talk to different daemons, or to one daemon before and after
 * an upgrade, without disturbing each other.
 *
 * Speaking more versions is a matter of adding rows to the table: the rest
 * of the library asks it (wire_cmd_lookup) what each command looks like.
 *
 * A version may have an older layout under the same number (4:2 had
 * 100-byte reader names up to pcsc-lite 1.8.3); such a daemon is asked for
 * its reader array once, and the array's length tells which.
 */
#include "client.h"

/* Position of proto in the table (lowest first), or -1. */
static int table_index(const struct wire_proto *proto)
{
	for (size_t i = 0; i < wire_proto_count(); i++) {
		if (wire_proto_at(i) == proto)
			return (int)i;
	}
	return -1;
}

static LONG send_version(struct client_conn *c, const struct wire_proto *proto,
			 struct wire_version_msg *reply)
{
	struct wire_msg msg = { .cmd = WIRE_VERSION };

	msg.u.version.major = proto->major;
	msg.u.version.minor = proto->minor;
	LONG rv = conn_call(c, &msg);
	if (rv == SCARD_S_SUCCESS)
		*reply = msg.u.version;
	return rv;
}

/*
 * The daemon sends its whole fixed array in one write, in one of the two
 * layouts; the older one is the shorter. What is left after the shorter
 * length (waiting a moment for it) tells them apart.
 */
static LONG probe_layout(struct client_conn *c)
{
	struct wire_params older = c->params;

	older.proto = c->params.proto->older_layout;
	older.reader_slots = WIRE_LEGACY_READER_SLOTS;
	c->params.reader_slots = WIRE_LEGACY_READER_SLOTS;
	size_t short_len = wire_reader_array_size(&older);
	size_t long_len = wire_reader_array_size(&c->params);
	if (short_len == 0 || short_len >= long_len)
		return SCARD_F_INTERNAL_ERROR;
	struct wire_msg msg = { .cmd = WIRE_GET_READERS_STATE };
	LONG rv = conn_send(c, &msg, NULL, 0);
	if (rv == SCARD_S_SUCCESS)
		rv = conn_discard(c, short_len);
	if (rv != SCARD_S_SUCCESS)
		return rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv;
	if (conn_wait_readable(c, 200) == 1 && conn_pending(c) >= long_len - short_len) {
		rv = conn_discard(c, long_len - short_len);
		return rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv;
	}
	c->params.proto = older.proto;
	return SCARD_S_SUCCESS;
}

LONG negotiate_version(struct client_conn *c)
{
	size_t n = wire_proto_count();
	bool tried[32] = { false };
	int next = (int)n - 1; /* the highest first */
	LONG last_rv = SCARD_E_NO_SERVICE;

	if (n == 0 || n > sizeof(tried) / sizeof(tried[0]))
		return SCARD_F_INTERNAL_ERROR;
	while (next >= 0) {
		const struct wire_proto *proto = wire_proto_at((size_t)next);

		tried[next] = true;
		c->params.proto = proto;
		struct wire_version_msg reply;
		LONG rv = send_version(c, proto, &reply);
		if (rv != SCARD_S_SUCCESS)
			return rv == CLIENT_CONN_LOST ? SCARD_E_NO_SERVICE : rv;
		int named = table_index(wire_proto_find(reply.major, reply.minor));
		if (reply.rv == SCARD_S_SUCCESS) {
			if (named >= 0 && named < next)
				c->params.proto = wire_proto_at((size_t)named);
			if (c->params.proto->older_layout)
				return probe_layout(c);
			return SCARD_S_SUCCESS;
		}
		last_rv = (LONG)reply.rv;
		if (named >= 0 && !tried[named]) {
			next = named;
			continue;
		}
		/* the highest version not yet offered */
		for (next = (int)n - 1; next >= 0 && tried[next]; next--)
			;
	}
	return last_rv;
}
