/* libFuzzer: reader.conf.d text of any bytes yields only complete, clean stanzas. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "reader_conf.h"

static void check_string(const char *s)
{
	if (!s)
		return;
	size_t len = strlen(s);
	if (len == 0 || len > 4096)
		__builtin_trap();
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			__builtin_trap();
}

static void ignore_warning(const char *source, int line, const char *msg)
{
	(void)source;
	(void)line;
	if (!msg || !*msg)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reader_conf conf = { 0 };
	int n = reader_conf_parse((const char *)data, size, "fuzz", &conf, ignore_warning);
	if (n < 0 || (size_t)n != conf.n)
		__builtin_trap();
	for (size_t i = 0; i < conf.n; i++) {
		const struct reader_conf_entry *e = &conf.entries[i];
		if (!e->friendly_name || !e->lib_path || (!e->device_name && !e->has_channel_id))
			__builtin_trap();
		check_string(e->friendly_name);
		check_string(e->device_name);
		check_string(e->lib_path);
	}
	reader_conf_free(&conf);
	return 0;
}
