/*
 * How scardd reaches systemd: two small back-ends behind one interface,
 * meson builds one of them (-Dlibsystemd):
 * - systemd_libsystemd.c: sd_listen_fds_with_names(3) and sd_notify(3);
 * - systemd_native.c: the same two protocols by hand, for a build without
 *   libsystemd (both are documented and stable).
 * systemd.c does the rest (which descriptors are usable, --socket matching,
 * what the notifications say) the same way for both.
 */
#ifndef SCARDD_SYSTEMD_PROTO_H
#define SCARDD_SYSTEMD_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "systemd.h"

/* sd_listen_fds(3): the first passed descriptor */
#define SYSTEMD_FIRST_FD 3

/* "libsystemd" or "built-in", for the log */
extern const char systemd_proto_name[];

/*
 * The number of descriptors systemd passed from SYSTEMD_FIRST_FD on: 0 when
 * there are none or they are another process's (LISTEN_PID), -1 when
 * LISTEN_FDS cannot be read (logged). Fills fd and name ("" when unnamed) of
 * the first cap entries of out. LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES
 * are unset either way.
 */
int systemd_proto_listen_fds(struct inherited_socket *out, size_t cap);

/* Reads $NOTIFY_SOCKET (false, logged, when it names nothing reachable). */
bool systemd_proto_notify_init(void);

/*
 * Sends msg (newline-separated VAR=value lines) to $NOTIFY_SOCKET: 0 when
 * sent or when there is no $NOTIFY_SOCKET, else a negative errno. last: no
 * message follows (libsystemd may then drop the variable).
 */
int systemd_proto_notify(const char *msg, bool last);

#endif
