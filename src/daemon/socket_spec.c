#include "socket_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool fail(char *err, size_t cap, const char *what, const char *value)
{
	snprintf(err, cap, "%s: %s", what, value);
	return false;
}

static bool parse_count(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return false;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v < min || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

static bool parse_option(char *opt, struct socket_spec *spec, char *err, size_t cap)
{
	char *eq = strchr(opt, '=');
	const char *value;

	if (!eq)
		return fail(err, cap, "socket option wants KEY=VALUE", opt);
	*eq = '\0';
	value = eq + 1;
	if (!strcmp(opt, "readers")) {
		if (!strcmp(value, "auto")) {
			spec->readers = 0;
			return true;
		}
		if (!parse_count(value, 1, SOCKET_SPEC_READERS_MAX, &spec->readers))
			return fail(err, cap, "readers= wants auto or 1..4096", value);
		return true;
	}
	if (!strcmp(opt, "names")) {
		if (strcmp(value, "100") && strcmp(value, "128"))
			return fail(err, cap, "names= wants 100 or 128", value);
		spec->name_len = (unsigned)atoi(value);
		return true;
	}
	if (!strcmp(opt, "prefer")) {
		if (*value == '\0' || strlen(value) >= sizeof(spec->prefer))
			return fail(err, cap, "prefer= wants a pattern of 1..127 bytes", value);
		strcpy(spec->prefer, value);
		return true;
	}
	if (!strcmp(opt, "mode")) {
		char *end;
		unsigned long mode = strtoul(value, &end, 8);
		if (*value < '0' || *value > '7' || *end || strlen(value) > 4 || mode > 0777)
			return fail(err, cap, "mode= wants octal permissions 0000..0777", value);
		spec->mode = (unsigned)mode;
		return true;
	}
	if (!strcmp(opt, "group")) {
		if (*value == '\0' || strlen(value) >= sizeof(spec->group))
			return fail(err, cap, "group= wants a group name or number of 1..63 bytes",
				    value);
		strcpy(spec->group, value);
		return true;
	}
	return fail(err, cap, "unknown socket option", opt);
}

bool socket_spec_default(struct socket_spec *spec, const char *path)
{
	memset(spec, 0, sizeof(*spec));
	spec->name_len = 128;
	spec->mode = SOCKET_SPEC_MODE_DEFAULT;
	if (strlen(path) >= sizeof(spec->path))
		return false;
	strcpy(spec->path, path);
	return true;
}

bool socket_spec_parse(const char *text, struct socket_spec *spec, char *err, size_t err_cap)
{
	char buf[SOCKET_SPEC_PATH_MAX + 512];
	char *colon, *opts, *save = NULL;

	socket_spec_default(spec, "");
	if (strlen(text) >= sizeof(buf))
		return fail(err, err_cap, "socket argument too long", "");
	strcpy(buf, text);
	/* Options follow the last ':' when it introduces KEY=VALUE pairs, so a
	 * path that merely contains ':' still works. */
	colon = strrchr(buf, ':');
	opts = NULL;
	if (colon && strchr(colon, '=') && !strchr(colon, '/')) {
		*colon = '\0';
		opts = colon + 1;
	}
	if (buf[0] == '\0')
		return fail(err, err_cap, "empty socket path", text);
	if (strlen(buf) >= sizeof(spec->path))
		return fail(err, err_cap, "socket path too long (107 bytes at most)", buf);
	strcpy(spec->path, buf);
	if (!opts)
		return true;
	for (char *opt = strtok_r(opts, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		if (!parse_option(opt, spec, err, err_cap))
			return false;
	}
	return true;
}

void socket_spec_describe(const struct socket_spec *spec, char *buf, size_t cap)
{
	char readers[32] = "auto";
	char mode[16] = "";

	if (spec->readers)
		snprintf(readers, sizeof(readers), "%u", spec->readers);
	if (spec->mode != SOCKET_SPEC_MODE_DEFAULT)
		snprintf(mode, sizeof(mode), ", mode=%04o", spec->mode);
	snprintf(buf, cap, "%s (readers=%s%s%s%s%s%s%s)", spec->path, readers,
		 spec->name_len == 100 ? ", names=100" : "", spec->prefer[0] ? ", prefer=" : "",
		 spec->prefer, mode, spec->group[0] ? ", group=" : "", spec->group);
}
