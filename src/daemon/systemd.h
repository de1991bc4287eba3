/*
 * scardd under systemd (the two protocols are spoken by libsystemd or by
 * hand, see systemd_proto.h; what scardd does with them is here):
 *
 * - Socket activation: systemd binds the sockets (scardd.socket) and starts
 *   scardd on the first connection with them open from fd 3 on, their count
 *   in LISTEN_FDS, scardd's pid in LISTEN_PID and their names (the socket
 *   unit's FileDescriptorName=, by default its unit name) in LISTEN_FDNAMES.
 *   scardd serves them instead of binding its own, and never unlinks them:
 *   the socket stays with systemd, which starts scardd again on the next
 *   connection after --auto-exit.
 * - Notifications: datagrams to $NOTIFY_SOCKET (a path, or @ for an abstract
 *   name): READY=1 once the readers are loaded and the sockets watched,
 *   STOPPING=1 at shutdown, STATUS= lines saying what scardd is doing, and
 *   MAINPID= when scardd detached (scardd.service runs it in the foreground,
 *   as Type=notify wants).
 */
#ifndef SCARDD_SYSTEMD_H
#define SCARDD_SYSTEMD_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"

#define SYSTEMD_NAME_MAX 256u

/* A listening socket systemd passed. */
struct inherited_socket {
	int fd;
	char path[SOCKET_SPEC_PATH_MAX];
	char name[SYSTEMD_NAME_MAX]; /* from LISTEN_FDNAMES; "" if none */
};

/*
 * Takes the sockets systemd passed to this process into out (cap entries):
 * their count, 0 if there are none (or they were meant for another process:
 * LISTEN_PID is not ours), or -1 with the reason logged (a descriptor that
 * is not a listening Unix stream socket on a path, more than cap). Each is
 * made close-on-exec and non-blocking. The LISTEN_* variables are unset
 * either way, so that nothing scardd starts takes them for its own.
 */
int systemd_take_sockets(struct inherited_socket *out, size_t cap);

/*
 * Pairs opts->sockets with the n inherited sockets, by path (the same
 * string, or the same file):
 * - without --socket, opts->sockets becomes the inherited sockets, in their
 *   order, with default options ($PCSCLITE_CSOCK_NAME and the default path
 *   do not apply: systemd chose the sockets);
 * - a --socket that matches one is served on it with the --socket's options;
 * - a --socket that matches none is bound by scardd as without systemd;
 * - an inherited socket no --socket names is served with default options
 *   (appended, one log line), rather than leaving its clients unanswered.
 * fd_of[i] is the inherited descriptor for opts->sockets[i], or -1. false,
 * logged, if that makes more than OPTIONS_MAX_SOCKETS sockets.
 */
bool systemd_match_sockets(struct options *opts, const struct inherited_socket *inh, size_t n,
			   int fd_of[OPTIONS_MAX_SOCKETS]);

/*
 * Reads $NOTIFY_SOCKET. The built-in back-end unsets it at once (drivers and
 * what they start do not see it); libsystemd reads it at each message, so it
 * stays until STOPPING=1 (systemd takes messages from the main pid only:
 * NotifyAccess=main).
 */
void systemd_notify_init(void);
/* READY=1 with a STATUS line; MAINPID too when scardd detached. */
void systemd_notify_ready(size_t readers, size_t sockets, bool detached);
/* STOPPING=1, at the start of the shutdown. */
void systemd_notify_stopping(void);

#endif
