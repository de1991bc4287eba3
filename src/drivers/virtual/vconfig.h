/*
 * ifd-virtual's configuration file, named by DEVICENAME in reader.conf.d:
 *
 *   readers = 2                      # slots of this reader, 1..128
 *   control = /run/pcscd/ifd-virtual.sock
 *   control_mode = 0600              # octal permissions of the control socket
 *   fast = no                        # every reader answers 90 00 at once
 *   card.0 = builtin                 # card present at start: builtin, a card file,
 *   card.1 = cards/other.card        #   or none; relative to this file's directory
 *   fast.1 = yes                     # per-reader override
 *   mute.1 = no                      # the card in this reader does not answer
 *   events = yes                     # offer the event wait (no: the daemon polls)
 *   presence_anytime = yes           # presence may be asked during any call
 *   delay.1 = 0                      # ms every transmit on this reader takes
 *   atr_delay.1 = 0                  # ms the card takes to answer a power-up or reset
 */
#ifndef IFD_VIRTUAL_VCONFIG_H
#define IFD_VIRTUAL_VCONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define VCONFIG_MAX_READERS 128
#define VCONFIG_MAX_TEXT 65536
#define VCONFIG_PATH_MAX 4096

#define VCONFIG_MAX_DELAY_MS 60000

struct vconfig_reader {
	char *card; /* NULL = empty, "builtin", or an absolute path */
	bool fast;
	bool mute;
	unsigned delay_ms;     /* every transmit takes this long (a slow card) */
	unsigned atr_delay_ms; /* every power-up or reset takes this long */
};

struct vconfig {
	unsigned readers;
	char *control; /* unix socket path, NULL = no control channel */
	unsigned control_mode;
	bool no_events;           /* events = no: no TAG_IFD_POLLING_THREAD_WITH_TIMEOUT */
	bool no_presence_anytime; /* presence_anytime = no: scardd's tag answered 0 */
	struct vconfig_reader reader[VCONFIG_MAX_READERS];
};

/* Defaults: 2 readers, the built-in card in reader 0, no control channel. */
void vconfig_defaults(struct vconfig *cfg);
/*
 * Parses the text of a configuration file; base_dir resolves relative card
 * paths. 0 on success, -1 with "line N: ..." in err.
 */
int vconfig_parse(struct vconfig *cfg, const char *text, size_t len, const char *base_dir,
		  char *err, size_t errlen);
int vconfig_load(struct vconfig *cfg, const char *path, char *err, size_t errlen);
void vconfig_clear(struct vconfig *cfg);

#endif
