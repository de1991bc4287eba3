/*
 * libFuzzer: Info.plist parsing never crashes or leaks, a success is
 * consistent, and every device it lists is found again by the USB matcher
 * (bundle_find_driver) under its own ids.
 */
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
	struct bundle_list list = { &b, 1 };
	for (size_t i = 0; i < b.n_devices; i++) {
		const struct bundle_device *d = &b.devices[i];
		if (!d->friendly_name)
			__builtin_trap();
		const struct bundle_device *e;
		const struct bundle *cls;
		if (bundle_find_driver(&list, d->vendor_id, d->product_id, &e, &cls) != &b || !e ||
		    e->vendor_id != d->vendor_id || e->product_id != d->product_id ||
		    (cls && (cls != &b || !b.class_driver)) || (b.class_driver && cls != &b))
			__builtin_trap();
	}
	bundle_clear(&b);
	return 0;
}
