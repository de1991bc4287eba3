/* systemd's socket-activation and notification protocols through libsystemd. */
#include "systemd_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

const char systemd_proto_name[] = "libsystemd";

int systemd_proto_listen_fds(struct inherited_socket *out, size_t cap)
{
	char **names = NULL;
	/* 1: LISTEN_* unset; 0 when LISTEN_PID is another process's */
	int n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		log_crit("cannot read the sockets systemd passed (LISTEN_FDS): %s; not starting",
			 strerror(-n));
		return -1;
	}
	for (size_t i = 0; i < (size_t)n; i++) {
		if (i < cap) {
			out[i].fd = SD_LISTEN_FDS_START + (int)i;
			/* libsystemd says "unknown" when LISTEN_FDNAMES was not set */
			bool named = names && names[i] && strcmp(names[i], "unknown");
			snprintf(out[i].name, sizeof(out[i].name), "%s", named ? names[i] : "");
		}
		if (names)
			free(names[i]);
	}
	free(names);
	return n;
}

bool systemd_proto_notify_init(void)
{
	/* sd_notify reads $NOTIFY_SOCKET on each call: it stays until the last one */
	return true;
}

int systemd_proto_notify(const char *msg, bool last)
{
	int r = sd_notify(last, msg);
	return r < 0 ? r : 0;
}
