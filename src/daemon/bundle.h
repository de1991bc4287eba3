/* Driver bundles: <dir>/<name>.bundle/Contents/Info.plist and its library. */
#ifndef SCARDD_BUNDLE_H
#define SCARDD_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bundle_device {
	uint16_t vendor_id;
	uint16_t product_id;
	char *friendly_name;
};

struct bundle {
	char *path;            /* the .bundle directory */
	char *lib_path;        /* Contents/Linux/<CFBundleExecutable> */
	char *name;            /* CFBundleName */
	bool class_driver;     /* CFBundleName == CCIDCLASSDRIVER */
	uint32_t capabilities; /* ifdCapabilities */
	struct bundle_device *devices;
	size_t n_devices;
};

struct bundle_list {
	struct bundle *items;
	size_t n;
};

/*
 * Parses an Info.plist document. The three ifd* arrays are parallel (a single
 * string instead of an array counts as one entry); entries missing from the
 * shorter arrays make the plist invalid. Returns 0, or -1 with err set.
 */
int bundle_parse_plist(const char *xml, size_t len, const char *bundle_path, struct bundle *out,
		       char *err, size_t errlen);
/* Scans drivers_dir for *.bundle; bad bundles are reported through warn and skipped. */
typedef void bundle_warn_fn(const char *path, const char *msg);
int bundle_scan(const char *drivers_dir, struct bundle_list *list, bundle_warn_fn *warn);
/*
 * The driver for a USB device, as pcscd picks it: the last bundle (in name
 * order) that lists vid:pid, not counting the class driver; else the class
 * driver if it lists it. NULL when none does. *entry is the listing (its
 * ifdFriendlyName names the reader); *class_driver the class driver's
 * bundle if it lists the device too (tried when the vendor's driver fails),
 * else NULL.
 */
const struct bundle *bundle_find_driver(const struct bundle_list *list, uint16_t vid, uint16_t pid,
					const struct bundle_device **entry,
					const struct bundle **class_driver);
void bundle_clear(struct bundle *b);
void bundle_list_free(struct bundle_list *list);

#endif
