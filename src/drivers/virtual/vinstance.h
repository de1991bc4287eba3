/*
 * One ifd-virtual reader as a daemon opens it (one reader.conf.d stanza):
 * its configuration, its slots and its control channel.
 */
#ifndef IFD_VIRTUAL_VINSTANCE_H
#define IFD_VIRTUAL_VINSTANCE_H

#include <stdbool.h>
#include <stddef.h>

#include "vconfig.h"
#include "vcontrol.h"
#include "vslot.h"

#define VIRTUAL_VERSION "0.1.0"

struct vinstance {
	unsigned long key; /* Lun >> 16 */
	bool gone;         /* closed by the daemon: lookups skip it (instance list lock) */
	bool closed;
	bool unplugged;   /* the daemon said its USB device was removed */
	char source[256]; /* the configuration or device it was opened from, for logs */
	char node[256];   /* a USB device's node ("" if none): gone = unplugged */
	struct vconfig cfg;
	unsigned n_slots;
	struct vslot slots[VCONFIG_MAX_READERS];
	struct vcontrol *control;
	struct vinstance *next;
};

/*
 * Builds an instance from cfg (taken over) and puts the configured cards in.
 * NULL with a reason in err if a card file does not load.
 */
struct vinstance *vinstance_new(struct vconfig *cfg, char *err, size_t errlen);
/* Starts the control channel if the configuration names one. */
int vinstance_start_control(struct vinstance *inst, char *err, size_t errlen);
/* Stops the control channel, wakes every event wait for good and drops the
 * cards. The slots stay valid: daemon threads may still be on their way out. */
void vinstance_close(struct vinstance *inst);
/* Frees a closed instance that no thread can be using any more. */
void vinstance_free(struct vinstance *inst);

/* Runs one control command line; the answer ends with an "ok" or "error" line. */
void vinstance_command(struct vinstance *inst, const char *line, char *reply, size_t cap);

#endif
