/*
 * Who a client is, for the log lines that matter to whoever runs the
 * daemon (a refused protocol version, say): pid, uid, executable and, if it
 * runs in one, its sandbox or container. Reads /proc only.
 */
#ifndef SCARDD_PEER_INFO_H
#define SCARDD_PEER_INFO_H

#include <stddef.h>
#include <sys/types.h>

/* "pid 42 uid 1000 exe /usr/bin/app, flatpak app org.example.App" */
void peer_describe(pid_t pid, uid_t uid, char *buf, size_t cap);

/*
 * The sandbox named by a /proc/PID/cgroup text, or NULL: "flatpak app ID",
 * "snap NAME", "docker container", "podman container", "lxc container",
 * "kubernetes pod". name gets the ID/NAME part when there is one.
 */
const char *peer_sandbox_from_cgroup(const char *cgroup, char *name, size_t cap);

#endif
