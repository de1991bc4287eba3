/* Reader names as pcscd 1.9.9 makes them (reader_names.h). */
#include "reader_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void reader_name_build(char *out, size_t cap, const char *base, const char *extend, unsigned index,
		       unsigned slot)
{
	if (!cap)
		return;
	int n = snprintf(out, cap, "%.*s%s %02X 00", READER_NAME_BASE_MAX, base,
			 extend ? extend : "", index & 0xFFu);
	size_t len = n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
	/* Further slots take the first one's name with its last two characters
	 * replaced, also when the cut took " XX YY" away. */
	if (slot && len >= 2) {
		char yy[3];
		snprintf(yy, sizeof(yy), "%02X", slot & 0xFFu);
		memcpy(out + len - 2, yy, 2);
	}
}

bool reader_name_ignored(const char *name, const char *filters, char *pattern, size_t cap)
{
	if (!filters)
		return false;
	for (const char *p = filters; *p;) {
		size_t len = strcspn(p, ":");
		if (len) {
			/* the name must contain p[0..len) */
			for (const char *s = name; *s; s++) {
				if (strncmp(s, p, len) == 0) {
					if (cap)
						snprintf(pattern, cap, "%.*s", (int)len, p);
					return true;
				}
			}
		}
		p += len;
		if (*p == ':')
			p++;
	}
	return false;
}

char *reader_name_usb(const char *friendly, const char *interface, const char *serial)
{
	char *iface = interface ? strdup(interface) : NULL;
	if (interface && !iface)
		return NULL;
	for (char *c = iface; c && *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '.';
	/* a serial number the interface string already shows is not repeated */
	bool with_serial = serial && !(interface && strstr(interface, serial));
	char *name = NULL;
	if (asprintf(&name, "%s%s%s%s%s%s%s", friendly, iface ? " [" : "", iface ? iface : "",
		     iface ? "]" : "", with_serial ? " (" : "", with_serial ? serial : "",
		     with_serial ? ")" : "") < 0)
		name = NULL;
	free(iface);
	return name;
}
