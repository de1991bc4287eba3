/*
 * The client socket: directory creation, stale-socket replacement, refusal
 * when a live daemon already answers, adoption of a socket systemd bound,
 * accept with peer credentials.
 */
#ifndef SCARDD_LISTENER_H
#define SCARDD_LISTENER_H

#include <sys/types.h>

struct event_loop;
struct socket_spec;

struct peer {
	int fd;
	pid_t pid;
	uid_t uid;
	gid_t gid;
};

typedef void listener_accept_fn(void *data, const struct peer *peer);

struct listener;

/* 1: a daemon answers on path; 0: nothing there or a stale file; -1: not a socket (logged). */
int listener_probe(const char *path);
/*
 * Binds spec's path with its mode (0666 unless mode=) and group (group=),
 * both set before the socket listens. NULL with a message logged on failure.
 */
struct listener *listener_open(const struct socket_spec *spec);
/*
 * Serves fd, a listening socket on path that systemd bound and passed (see
 * systemd.h). Its file is systemd's: listener_close leaves it in place.
 */
struct listener *listener_adopt(int fd, const char *path);
int listener_start(struct listener *l, struct event_loop *loop, listener_accept_fn *fn, void *data);
/* Stops listening and removes the socket file if it is still ours (bound, not adopted). */
void listener_close(struct listener *l, struct event_loop *loop);

#endif
