/* libFuzzer: Info.plist parsing never crashes or leaks, and a success is consistent. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bundle b;
	char err[256];
	err[0] = '\0';
	if (bundle_parse_plist((const char *)data, size, "/fuzz.bundle", &b, err, sizeof err) !=
	    0) {
		if (!err[0])
			__builtin_trap(); /* every failure says why */
		return 0;
	}
	if (!b.path || !b.lib_path || strncmp(b.lib_path, "/fuzz.bundle/Contents/Linux/", 28) != 0)
		__builtin_trap();
	if (strchr(b.lib_path + 28, '/'))
		__builtin_trap();
	if (b.n_devices && !b.devices)
		__builtin_trap();
	for (size_t i = 0; i < b.n_devices; i++)
		if (!b.devices[i].friendly_name)
			__builtin_trap();
	bundle_clear(&b);
	return 0;
}
