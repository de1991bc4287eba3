/* See unit_support.h. */
#include "unit_support.h"

#include <stdarg.h>
#include <stdio.h>

__attribute__((constructor)) static void stdout_line_buffered(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

void unit_skip_reason(const char *fmt, ...)
{
	va_list ap;

	printf("# skip: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}
