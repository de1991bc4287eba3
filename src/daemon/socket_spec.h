/*
 * One listening socket as given on the command line:
 *   PATH[:OPTION[,OPTION...]]
 * with OPTIONs
 *   readers=N|auto  records in the reader-state array sent to clients that
 *                   speak 4:2 to 4:5 (16 upstream, 48 in Fedora's patched
 *                   builds); auto (the default) decides per client
 *   names=100|128   reader-name field of 4:2 clients (100 before pcsc-lite
 *                   1.8.4); default 128, and a 124-byte CONNECT switches
 *   prefer=GLOB     readers whose names match come first in those arrays,
 *                   so an array too short for all readers holds these
 *   mode=OCTAL      the socket file's permissions (default 0666, pcscd's:
 *                   every user may connect)
 *   group=NAME|GID  the socket file's group, set when it is bound; with
 *                   mode=0660 only that group's members (and root) connect
 * Protocol 4:6 clients ask for the array's length and see every reader.
 */
#ifndef SCARDD_SOCKET_SPEC_H
#define SCARDD_SOCKET_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#define SOCKET_SPEC_PATH_MAX 108u /* sizeof(sun_path) */
#define SOCKET_SPEC_PREFER_MAX 128u
#define SOCKET_SPEC_READERS_MAX 4096u
#define SOCKET_SPEC_GROUP_MAX 64u
#define SOCKET_SPEC_MODE_DEFAULT 0666u

struct socket_spec {
	char path[SOCKET_SPEC_PATH_MAX];
	unsigned readers;                    /* 0 = auto */
	unsigned name_len;                   /* 100 or 128 */
	char prefer[SOCKET_SPEC_PREFER_MAX]; /* "" = configuration order */
	unsigned mode;                       /* permissions of the socket file */
	char group[SOCKET_SPEC_GROUP_MAX];   /* "" = the binding process's group */
};

/* spec for path with every option at its default; false if path is too long. */
bool socket_spec_default(struct socket_spec *spec, const char *path);

/*
 * Parses text into spec. On error returns false with a one-line reason in
 * err (err_cap bytes).
 */
bool socket_spec_parse(const char *text, struct socket_spec *spec, char *err, size_t err_cap);

/* "path (readers=48, prefer=SIM*, mode=0660, group=scard)" for logs. */
void socket_spec_describe(const struct socket_spec *spec, char *buf, size_t cap);

#endif
