/* ifd-virtual as a USB driver: device strings and their configuration files. */
#include "vusb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool vusb_is_usb(const char *name)
{
	return name && strncmp(name, "usb:", 4) == 0;
}

/* Reads min..max digits of base `base` (16 or 10) into *out; NULL if too few. */
static const char *read_number(const char *s, int base, size_t min, size_t max, unsigned *out)
{
	unsigned long v = 0;
	size_t n = 0;
	for (; n < max; n++) {
		int d;
		char c = s[n];
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			break;
		v = v * (unsigned long)base + (unsigned long)d;
	}
	if (n < min)
		return NULL;
	*out = (unsigned)v;
	return s + n;
}

static const char *expect(const char *s, const char *lit)
{
	size_t n = strlen(lit);
	return s && strncmp(s, lit, n) == 0 ? s + n : NULL;
}

bool vusb_parse(const char *name, struct vusb_device *out)
{
	memset(out, 0, sizeof(*out));
	const char *s = expect(name, "usb:");
	if (s)
		s = read_number(s, 16, 1, 4, &out->vendor);
	s = expect(s, "/");
	if (s)
		s = read_number(s, 16, 1, 4, &out->product);
	s = expect(s, ":libudev:");
	if (s)
		s = read_number(s, 10, 1, 3, &out->interface);
	s = expect(s, ":");
	if (!s || strlen(s) >= sizeof(out->node))
		return false;
	snprintf(out->node, sizeof(out->node), "%s", s);
	const char *p = expect(s, "/dev/bus/usb/");
	if (p)
		p = read_number(p, 10, 1, 3, &out->bus);
	p = expect(p, "/");
	if (p)
		p = read_number(p, 10, 1, 3, &out->address);
	return p && *p == '\0' && out->interface <= 255;
}

bool vusb_config_paths(const char *usb_dir, const struct vusb_device *dev,
		       char out[2][VUSB_PATH_MAX])
{
	int a = snprintf(out[0], VUSB_PATH_MAX, "%s/%03u-%03u-%u.conf", usb_dir, dev->bus,
			 dev->address, dev->interface);
	int b = snprintf(out[1], VUSB_PATH_MAX, "%s/%04x-%04x-%u.conf", usb_dir, dev->vendor,
			 dev->product, dev->interface);
	return a > 0 && a < VUSB_PATH_MAX && b > 0 && b < VUSB_PATH_MAX;
}

bool vusb_dir_from_library(const char *lib_path, char *out, size_t cap)
{
	/* <bundle>/Contents/Linux/lib.so -> <bundle>/Contents/usb */
	if (!lib_path || strlen(lib_path) >= cap)
		return false;
	snprintf(out, cap, "%s", lib_path);
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(out, '/');
		if (!slash)
			return false;
		*slash = '\0';
	}
	size_t n = strlen(out);
	if (n + sizeof("/usb") > cap)
		return false;
	memcpy(out + n, "/usb", sizeof("/usb"));
	return true;
}
