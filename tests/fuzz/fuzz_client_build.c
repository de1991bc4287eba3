/*
 * libFuzzer: the client-library inspection of client_build (the ELF .bss
 * decoder and the /proc/PID/maps parser) never crashes, leaks or returns
 * something outside its contract. First byte: 0 = ELF image, 1 = maps text.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "client_build.h"

static void check_slots(uint64_t bss)
{
	uint32_t slots = client_build_slots_from_bss(bss);

	if (slots == 0)
		return;
	if (slots % CLIENT_BUILD_STEP || slots > CLIENT_BUILD_SLOTS_MAX)
		__builtin_trap();
	if ((uint64_t)slots * CLIENT_BUILD_RECORD > bss ||
	    bss - (uint64_t)slots * CLIENT_BUILD_RECORD > CLIENT_BUILD_REST_MAX)
		__builtin_trap();
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void check_map(const struct client_build_map *m)
{
	size_t n = strnlen(m->path, sizeof(m->path));

	if (n < 2 || n >= sizeof(m->path) || m->path[0] != '/')
		__builtin_trap();
	if (m->inode == 0 || m->end <= m->start || m->dev_major > 0xfff || m->dev_minor > 0xfffff)
		__builtin_trap();
}

static void fuzz_maps(const char *text, size_t len)
{
	struct client_build_map m;

	if (client_build_parse_maps_line(text, len, &m))
		check_map(&m);
	if (!client_build_find_lib(text, len, &m))
		return;
	check_map(&m);
	const char *base = strrchr(m.path, '/') + 1;
	if (m.dev_major == 0 || !starts_with(base, "libpcsclite"))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t bss;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		fuzz_maps((const char *)data + 1, size - 1);
	} else if (client_build_bss_from_image(data + 1, size - 1, &bss)) {
		check_slots(bss);
	}
	/* the rule on the input's first eight bytes, whatever they are */
	if (size >= 9) {
		memcpy(&bss, data + 1, sizeof(bss));
		check_slots(bss);
	}
	return 0;
}
