/*
 * The pid file, as pcscd keeps one: written next to the first socket once
 * the daemon has detached, removed when it stops, and read by --hotplug to
 * signal the running daemon. It is named after the socket, ".comm" becoming
 * ".pid", so the default socket's is pcscd's own /run/pcscd/pcscd.pid and
 * `pcscd --hotplug` reaches scardd (and `scardd --hotplug` a pcscd).
 */
#ifndef SCARDD_PID_FILE_H
#define SCARDD_PID_FILE_H

#include <stdbool.h>
#include <stddef.h>

/* The pid file of socket_path into buf; false if it does not fit. */
bool pid_file_path(const char *socket_path, char *buf, size_t cap);
/* Writes this process's pid to path; -1, logged, on failure. */
int pid_file_write(const char *path);
/* Removes path if it still names this process (not a later daemon). */
void pid_file_remove(const char *path);
/*
 * --hotplug: SIGUSR1 to the daemon serving socket_path, found through its
 * pid file, if a daemon answers on the socket (so that a stale file never
 * signals a stranger). 0, or -1 with the reason logged.
 */
int pid_file_hotplug(const char *socket_path);

#endif
