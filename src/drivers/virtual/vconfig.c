/* ifd-virtual's configuration file: "key = value" lines, '#' comments. */
#include "vconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define MAX_LINE 4096

static int fail(char *err, size_t errlen, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, unsigned line, const char *fmt, ...)
{
	if (err && errlen) {
		int n = line ? snprintf(err, errlen, "line %u: ", line) : 0;
		if (n >= 0 && (size_t)n < errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -1;
}

void vconfig_defaults(struct vconfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->readers = 2;
	cfg->control_mode = 0600;
	cfg->reader[0].card = strdup("builtin");
}

void vconfig_clear(struct vconfig *cfg)
{
	free(cfg->control);
	for (unsigned i = 0; i < VCONFIG_MAX_READERS; i++)
		free(cfg->reader[i].card);
	memset(cfg, 0, sizeof(*cfg));
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = 0;
	return s;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
		*out = false;
	else
		return -1;
	return 0;
}

/* Milliseconds, 0 to VCONFIG_MAX_DELAY_MS. */
static int parse_delay(const char *v, unsigned *out)
{
	char *end;
	errno = 0;
	long ms = strtol(v, &end, 10);
	if (errno || *end || !v[0] || ms < 0 || ms > VCONFIG_MAX_DELAY_MS)
		return -1;
	*out = (unsigned)ms;
	return 0;
}

/* "card.3" -> 3; -1 if the suffix is not a reader index. */
static int reader_index(const char *key, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(key, prefix, n) != 0 || !key[n])
		return -1;
	char *end;
	errno = 0;
	long v = strtol(key + n, &end, 10);
	if (errno || *end || v < 0 || v >= VCONFIG_MAX_READERS || key[n] == '+' || key[n] == '-')
		return -1;
	return (int)v;
}

static char *resolve_path(const char *base_dir, const char *v)
{
	if (v[0] == '/' || !base_dir || !base_dir[0])
		return strdup(v);
	size_t n = strlen(base_dir) + 1 + strlen(v) + 1;
	if (n > VCONFIG_PATH_MAX)
		return NULL;
	char *p = malloc(n);
	if (p) {
		size_t d = strlen(base_dir);
		memcpy(p, base_dir, d);
		p[d] = '/';
		memcpy(p + d + 1, v, strlen(v) + 1);
	}
	return p;
}

static int set_line(struct vconfig *cfg, char *key, char *val, const char *base_dir, unsigned line,
		    char *err, size_t errlen)
{
	int idx;
	bool b;
	if (!strcmp(key, "readers")) {
		char *end;
		errno = 0;
		long v = strtol(val, &end, 10);
		if (errno || *end || v < 1 || v > VCONFIG_MAX_READERS)
			return fail(err, errlen, line, "readers must be 1 to %d",
				    VCONFIG_MAX_READERS);
		cfg->readers = (unsigned)v;
	} else if (!strcmp(key, "control")) {
		if (!val[0] || !strcmp(val, "none")) {
			free(cfg->control);
			cfg->control = NULL;
			return 0;
		}
		if (val[0] != '/')
			return fail(err, errlen, line, "control must be an absolute socket path");
		if (strlen(val) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return fail(err, errlen, line, "control path longer than %zu bytes",
				    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		free(cfg->control);
		cfg->control = strdup(val);
		if (!cfg->control)
			return fail(err, errlen, line, "out of memory");
	} else if (!strcmp(key, "events") || !strcmp(key, "presence_anytime")) {
		bool b;
		if (parse_bool(val, &b))
			return fail(err, errlen, line, "%s must be yes or no", key);
		if (!strcmp(key, "events"))
			cfg->no_events = !b;
		else
			cfg->no_presence_anytime = !b;
	} else if (!strcmp(key, "control_mode")) {
		char *end;
		errno = 0;
		long v = strtol(val, &end, 8);
		if (errno || *end || !val[0] || v < 0 || v > 0777)
			return fail(err, errlen, line, "control_mode must be octal, e.g. 0600");
		cfg->control_mode = (unsigned)v;
	} else if (!strcmp(key, "fast")) {
		if (parse_bool(val, &b))
			return fail(err, errlen, line, "fast must be yes or no");
		for (unsigned i = 0; i < VCONFIG_MAX_READERS; i++)
			cfg->reader[i].fast = b;
	} else if ((idx = reader_index(key, "fast.")) >= 0) {
		if (parse_bool(val, &cfg->reader[idx].fast))
			return fail(err, errlen, line, "%s must be yes or no", key);
	} else if ((idx = reader_index(key, "mute.")) >= 0) {
		if (parse_bool(val, &cfg->reader[idx].mute))
			return fail(err, errlen, line, "%s must be yes or no", key);
	} else if ((idx = reader_index(key, "delay.")) >= 0) {
		if (parse_delay(val, &cfg->reader[idx].delay_ms))
			return fail(err, errlen, line, "%s must be 0 to %d (milliseconds)", key,
				    VCONFIG_MAX_DELAY_MS);
	} else if ((idx = reader_index(key, "atr_delay.")) >= 0) {
		if (parse_delay(val, &cfg->reader[idx].atr_delay_ms))
			return fail(err, errlen, line, "%s must be 0 to %d (milliseconds)", key,
				    VCONFIG_MAX_DELAY_MS);
	} else if ((idx = reader_index(key, "card.")) >= 0) {
		free(cfg->reader[idx].card);
		cfg->reader[idx].card = NULL;
		if (!val[0] || !strcmp(val, "none"))
			return 0;
		cfg->reader[idx].card = !strcmp(val, "builtin") ? strdup(val)
								: resolve_path(base_dir, val);
		if (!cfg->reader[idx].card)
			return fail(err, errlen, line, "card path too long");
	} else {
		return fail(
			err, errlen, line,
			"unknown key '%.40s' (expected readers, control, control_mode, fast, events, presence_anytime, "
			"card.N, fast.N, mute.N, delay.N, atr_delay.N)",
			key);
	}
	return 0;
}

int vconfig_parse(struct vconfig *cfg, const char *text, size_t len, const char *base_dir,
		  char *err, size_t errlen)
{
	if (len > VCONFIG_MAX_TEXT)
		return fail(err, errlen, 0, "configuration larger than %d bytes", VCONFIG_MAX_TEXT);
	/* a file that names cards replaces the default card list */
	free(cfg->reader[0].card);
	cfg->reader[0].card = NULL;
	char buf[MAX_LINE + 1];
	unsigned line = 0;
	size_t pos = 0;
	while (pos < len) {
		line++;
		size_t end = pos;
		while (end < len && text[end] != '\n')
			end++;
		size_t n = end - pos;
		if (n > MAX_LINE)
			return fail(err, errlen, line, "line too long");
		memcpy(buf, text + pos, n);
		buf[n] = 0;
		pos = end + 1;
		if (strlen(buf) != n)
			return fail(err, errlen, line, "NUL byte in the text");
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = 0;
		char *s = trim(buf);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq)
			return fail(err, errlen, line, "expected key = value");
		*eq = 0;
		char *key = trim(s), *val = trim(eq + 1);
		if (set_line(cfg, key, val, base_dir, line, err, errlen))
			return -1;
	}
	return 0;
}

int vconfig_load(struct vconfig *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(err, errlen, 0, "cannot open %s: %s", path, strerror(errno));
	char *text = malloc(VCONFIG_MAX_TEXT + 1);
	if (!text) {
		fclose(f);
		return fail(err, errlen, 0, "out of memory");
	}
	size_t len = fread(text, 1, VCONFIG_MAX_TEXT + 1, f);
	fclose(f);
	char dir[VCONFIG_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	if (slash == dir)
		snprintf(dir, sizeof(dir), "/");
	char why[256];
	int rc = vconfig_parse(cfg, text, len, dir, why, sizeof(why));
	free(text);
	if (rc)
		return fail(err, errlen, 0, "%s: %s", path, why);
	return 0;
}
