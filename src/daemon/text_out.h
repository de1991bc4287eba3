/*
 * A line built piece by piece into a fixed buffer, snprintf's way: what does
 * not fit is cut, and len counts what was wanted. Audit and identity lines.
 */
#ifndef SCARDD_TEXT_OUT_H
#define SCARDD_TEXT_OUT_H

#include <stddef.h>

struct text_out {
	char *buf;
	size_t cap, len; /* len: what was wanted, as snprintf counts */
};

void text_put(struct text_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
