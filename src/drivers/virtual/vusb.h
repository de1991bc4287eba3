/*
 * ifd-virtual as a USB driver: the device string a daemon's libudev hotplug
 * gives a bundle's driver, "usb:VVVV/PPPP:libudev:IF:/dev/bus/usb/BBB/DDD",
 * and the configuration file that stands for that interface.
 *
 * A bundle of ifd-virtual keeps its USB configurations in
 * <bundle>/Contents/usb/: "BBB-DDD-IF.conf" for one plugged device (bus and
 * device number), else "vvvv-pppp-IF.conf" for every device of that model.
 * An interface without a file is not a reader, as libccid answers for a
 * device's interfaces that are not CCID.
 */
#ifndef IFD_VIRTUAL_VUSB_H
#define IFD_VIRTUAL_VUSB_H

#include <stdbool.h>
#include <stddef.h>

#define VUSB_PATH_MAX 4096

struct vusb_device {
	unsigned vendor, product; /* 0..0xFFFF */
	unsigned interface;       /* bInterfaceNumber */
	unsigned bus, address;    /* from the device node's path */
	char node[VUSB_PATH_MAX]; /* /dev/bus/usb/BBB/DDD */
};

/* Whether name is a USB device string at all ("usb:..."). */
bool vusb_is_usb(const char *name);

/* Parses a libudev device string; false when it is not one. */
bool vusb_parse(const char *name, struct vusb_device *out);

/*
 * The configuration files for dev under usb_dir, in the order they are
 * tried: [0] this plugged device, [1] its model. false if a path does not
 * fit.
 */
bool vusb_config_paths(const char *usb_dir, const struct vusb_device *dev,
		       char out[2][VUSB_PATH_MAX]);

/* The bundle's Contents/usb directory, given the driver library's path. */
bool vusb_dir_from_library(const char *lib_path, char *out, size_t cap);

#endif
