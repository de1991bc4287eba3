/*
 * The control channel: a unix stream socket on which one line is one command
 * ("insert 0 /path/card", "remove 1", ...). Each answer is zero or more
 * information lines followed by one line starting with "ok" or "error".
 * A thread owned by the driver instance serves clients one at a time.
 */
#ifndef IFD_VIRTUAL_VCONTROL_H
#define IFD_VIRTUAL_VCONTROL_H

#include <stddef.h>

#define VCONTROL_MAX_LINE 4096
#define VCONTROL_MAX_REPLY 8192

/* Writes the full answer (ending in "ok ..." or "error ...\n") into reply. */
typedef void vcontrol_handler(void *ctx, const char *line, char *reply, size_t cap);

struct vcontrol;

/*
 * Binds path (refusing if another live server answers there, replacing a
 * stale socket file), chmods it to mode and starts serving. NULL with a
 * reason in err on failure.
 */
struct vcontrol *vcontrol_start(const char *path, unsigned mode, vcontrol_handler *handler,
				void *ctx, char *err, size_t errlen);
/* Stops the thread, closes and unlinks the socket. */
void vcontrol_stop(struct vcontrol *ctl);

#endif
