/* reader.conf.d files: one stanza per reader (FRIENDLYNAME, DEVICENAME, LIBPATH, CHANNELID). */
#ifndef SCARDD_READER_CONF_H
#define SCARDD_READER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reader_conf_entry {
	char *friendly_name; /* without the quotes */
	char *device_name;   /* NULL if absent */
	char *lib_path;
	uint32_t channel_id; /* 0 if absent */
	bool has_channel_id;
	char *source; /* file the stanza came from, for logs */
	int line;     /* line of its FRIENDLYNAME */
};

struct reader_conf {
	struct reader_conf_entry *entries;
	size_t n;
};

/*
 * Parses one file's text and appends its complete stanzas to conf. A stanza
 * is complete with FRIENDLYNAME, LIBPATH and DEVICENAME or CHANNELID; a key
 * the current stanza already has (normally the next FRIENDLYNAME) starts the
 * next stanza, so the order of keys does not matter. '#' starts a comment.
 * Keys are case-insensitive; values are one word or "quoted text", at most
 * 4096 bytes. Incomplete stanzas, unknown keys and bad values are reported
 * through warn (may be NULL); a stanza with a bad value is skipped whole.
 * Returns the number of stanzas appended, -1 on allocation failure.
 */
typedef void reader_conf_warn_fn(const char *source, int line, const char *msg);
int reader_conf_parse(const char *text, size_t len, const char *source, struct reader_conf *conf,
		      reader_conf_warn_fn *warn);

/*
 * Reads every regular file of dir in name order (skipping names starting with
 * '.' or ending with '~'), or dir itself if it is a file. Returns the number of
 * stanzas, -1 if dir cannot be read.
 */
int reader_conf_load(const char *dir, struct reader_conf *conf, reader_conf_warn_fn *warn);
void reader_conf_free(struct reader_conf *conf);

#endif
