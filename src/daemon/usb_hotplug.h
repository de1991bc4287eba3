/*
 * USB readers through libudev, as pcscd 1.9.9 finds them: every USB
 * interface whose device's vendor and product ids a driver bundle lists
 * (ifdVendorID/ifdProductID) becomes a device (device.h) named from the
 * bundle's ifdFriendlyName, the interface string and the serial number
 * (reader_names.h), driven by the bundle's library with pcscd's device
 * string, "usb:vvvv/pppp:libudev:IF:/dev/bus/usb/BBB/DDD". A driver that
 * answers IFD_NO_SUCH_DEVICE does not serve that interface (a composite
 * device's HID part, say): nothing is logged but at debug level, as in
 * pcscd. When a vendor's driver fails otherwise and the class driver
 * (CFBundleName CCIDCLASSDRIVER, libccid) lists the device too, the class
 * driver is tried.
 *
 * Devices present at start are added in udev's order before clients are
 * served; then the udev monitor's socket is watched from the event loop (no
 * thread): "add" adds, "remove" unplugs (devices_unplug), "change" (what
 * `udevadm trigger` sends after a new udev rule) retries an interface that
 * is not a reader yet. A rescan (SIGUSR1, --hotplug) retries every
 * interface and takes away readers whose interface is gone.
 *
 * A device that cannot be opened is logged once per device and cause, with
 * what to do (a node the daemon may not open: a udev rule), and retried on
 * its next event or rescan.
 *
 * Owned by the loop's thread.
 */
#ifndef SCARDD_USB_HOTPLUG_H
#define SCARDD_USB_HOTPLUG_H

#include <stdbool.h>

struct bundle_list;
struct devices;
struct event_loop;
struct usb_hotplug;

struct usb_hotplug_config {
	struct event_loop *loop;
	struct devices *devices;
	const struct bundle_list *bundles; /* must outlive the hotplug */
	const char *drivers_dir;           /* for log lines */
	bool name_interface;               /* not -I */
	bool name_serial;                  /* not -S */
};

/*
 * Adds the readers present now and starts watching. NULL, with the reason
 * logged, when there is no USB support: built without libudev, no driver
 * bundle, or udev cannot be used.
 */
struct usb_hotplug *usb_hotplug_start(const struct usb_hotplug_config *cfg);

/* SIGUSR1 / --hotplug: looks at every USB interface again. */
void usb_hotplug_rescan(struct usb_hotplug *hp);

/* Stops watching; the devices stay (devices_stop_all takes them). */
void usb_hotplug_free(struct usb_hotplug *hp);

#endif
