/* reader.conf.d: "KEY value" lines grouped into one stanza per serial/virtual reader. */
#include "reader_conf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_VALUE_MAX 4096
/* A config file larger than this is certainly not a reader.conf. */
#define CONF_FILE_MAX (1024 * 1024)

enum conf_key { KEY_FRIENDLYNAME, KEY_DEVICENAME, KEY_LIBPATH, KEY_CHANNELID, KEY_UNKNOWN };

static const char *const key_names[] = { "FRIENDLYNAME", "DEVICENAME", "LIBPATH", "CHANNELID" };

/* The stanza being collected. */
struct stanza {
	char *name, *device, *lib;
	uint32_t channel;
	bool has_channel;
	unsigned seen; /* bit per key, set even when its value was bad */
	bool bad;      /* a key had a bad value: the whole stanza is dropped */
	int line;      /* of FRIENDLYNAME, else of the first key */
};

struct parser {
	const char *source;
	reader_conf_warn_fn *warn;
	struct reader_conf *conf;
	struct stanza st;
	int appended;
};

/* ---- small helpers ---- */

__attribute__((format(printf, 3, 4))) static void warnf(struct parser *ps, int line,
							const char *fmt, ...)
{
	char msg[160];
	if (!ps->warn)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	ps->warn(ps->source, line, msg);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* A printable copy of an unknown key for warnings (input may be any bytes). */
static void printable(char *dst, size_t size, const char *s, size_t len)
{
	size_t n = len < size - 1 ? len : size - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	dst[n] = '\0';
}

static enum conf_key key_lookup(const char *s, size_t len)
{
	for (size_t k = 0; k < KEY_UNKNOWN; k++)
		if (strlen(key_names[k]) == len && strncasecmp(s, key_names[k], len) == 0)
			return (enum conf_key)k;
	return KEY_UNKNOWN;
}

/* Decimal or 0x hex, no sign, must fit 32 bits. */
static int parse_channel(const char *s, uint32_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		v = v * base + d;
		if (v > UINT32_MAX)
			return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/*
 * Extracts the value after a key: "quoted text" or one bare word, followed
 * only by blanks or a comment. Returns a malloc'd string, or NULL with *why.
 */

/* The text is a byte buffer, not a C string: copy exactly n bytes. */
static char *copy_bytes(const char *p, size_t n)
{
	char *v = malloc(n + 1);
	if (v) {
		memcpy(v, p, n);
		v[n] = '\0';
	}
	return v;
}

static char *parse_value(const char *p, const char *end, const char **why)
{
	const char *start, *stop;

	while (p < end && is_space(*p))
		p++;
	if (p == end || *p == '#') {
		*why = "missing value";
		return NULL;
	}
	if (*p == '"') {
		start = ++p;
		while (p < end && *p != '"')
			p++;
		if (p == end) {
			*why = "unterminated quote";
			return NULL;
		}
		stop = p++;
	} else {
		start = p;
		while (p < end && !is_space(*p) && *p != '#')
			p++;
		stop = p;
	}
	while (p < end && is_space(*p))
		p++;
	if (p < end && *p != '#') {
		*why = "unexpected text after the value";
		return NULL;
	}
	if ((size_t)(stop - start) > CONF_VALUE_MAX) {
		*why = "value too long";
		return NULL;
	}
	for (const char *q = start; q < stop; q++) {
		unsigned char c = (unsigned char)*q;
		if (c < 0x20 || c == 0x7f) {
			*why = "control character in value";
			return NULL;
		}
	}
	if (stop == start) {
		*why = "empty value";
		return NULL;
	}
	char *v = copy_bytes(start, (size_t)(stop - start));
	if (!v)
		*why = "out of memory";
	return v;
}

/* ---- stanzas ---- */

static void stanza_clear(struct stanza *st)
{
	free(st->name);
	free(st->device);
	free(st->lib);
	*st = (struct stanza){ 0 };
}

static int conf_append(struct reader_conf *conf, struct stanza *st, const char *source)
{
	size_t n = conf->n;
	/* Capacity is the next power of two of n: grow when n hits one. */
	if (n == 0 || (n & (n - 1)) == 0) {
		size_t cap = n ? n * 2 : 1;
		struct reader_conf_entry *e = realloc(conf->entries, cap * sizeof *e);
		if (!e)
			return -1;
		conf->entries = e;
	}
	char *src = strdup(source ? source : "");
	if (!src)
		return -1;
	conf->entries[n] = (struct reader_conf_entry){
		.friendly_name = st->name,
		.device_name = st->device,
		.lib_path = st->lib,
		.channel_id = st->channel,
		.has_channel_id = st->has_channel,
		.source = src,
		.line = st->line,
	};
	conf->n = n + 1;
	*st = (struct stanza){ 0 }; /* the entry owns the strings now */
	return 0;
}

static const char *stanza_missing(const struct stanza *st)
{
	if (!st->name)
		return "FRIENDLYNAME";
	if (!st->lib)
		return "LIBPATH";
	if (!st->device && !st->has_channel)
		return "DEVICENAME or CHANNELID";
	return NULL;
}

/* Ends the current stanza: appended if complete, reported and dropped if not. */
static int stanza_finish(struct parser *ps)
{
	struct stanza *st = &ps->st;
	if (!st->seen)
		return 0;
	if (st->bad) {
		warnf(ps, st->line, "reader stanza with errors skipped");
		stanza_clear(st);
		return 0;
	}
	const char *missing = stanza_missing(st);
	if (missing) {
		warnf(ps, st->line, "incomplete reader stanza (no %s), skipped", missing);
		stanza_clear(st);
		return 0;
	}
	if (conf_append(ps->conf, st, ps->source) < 0) {
		stanza_clear(st);
		return -1;
	}
	ps->appended++;
	return 0;
}

/* Records key k; a NULL value means it was bad and spoils the stanza. */
static void stanza_set(struct stanza *st, enum conf_key k, char *value, uint32_t channel, int line)
{
	if (!st->seen || k == KEY_FRIENDLYNAME)
		st->line = line;
	st->seen |= 1u << k;
	if (!value) {
		st->bad = true;
		return;
	}
	switch (k) {
	case KEY_FRIENDLYNAME: st->name = value; break;
	case KEY_DEVICENAME: st->device = value; break;
	case KEY_LIBPATH: st->lib = value; break;
	default:
		st->channel = channel;
		st->has_channel = true;
		free(value);
		break;
	}
}

/* ---- lines ---- */

/* The value of key k on this line, or NULL after reporting why it is bad. */
static char *line_value(struct parser *ps, enum conf_key k, const char *p, const char *end,
			int line, uint32_t *channel, bool *oom)
{
	const char *why = NULL;
	char *value = parse_value(p, end, &why);
	if (!value) {
		*oom = strcmp(why, "out of memory") == 0;
		warnf(ps, line, "%s: %s", key_names[k], why);
		return NULL;
	}
	if (k == KEY_CHANNELID && parse_channel(value, channel) < 0) {
		warnf(ps, line, "bad CHANNELID \"%.40s\"", value);
		free(value);
		return NULL;
	}
	return value;
}

static int parse_line(struct parser *ps, const char *p, const char *end, int line)
{
	while (p < end && is_space(*p))
		p++;
	if (p == end || *p == '#')
		return 0;
	const char *key = p;
	while (p < end && !is_space(*p) && *p != '#')
		p++;
	enum conf_key k = key_lookup(key, (size_t)(p - key));
	if (k == KEY_UNKNOWN) {
		char shown[40];
		printable(shown, sizeof shown, key, (size_t)(p - key));
		warnf(ps, line, "unknown key \"%s\" ignored", shown);
		return 0;
	}
	uint32_t channel = 0;
	bool oom = false;
	char *value = line_value(ps, k, p, end, line, &channel, &oom);
	if (oom)
		return -1;
	/* A key the stanza already has begins the next reader. */
	if ((ps->st.seen & (1u << k)) && stanza_finish(ps) < 0) {
		free(value);
		return -1;
	}
	stanza_set(&ps->st, k, value, channel, line);
	return 0;
}

int reader_conf_parse(const char *text, size_t len, const char *source, struct reader_conf *conf,
		      reader_conf_warn_fn *warn)
{
	struct parser ps = { .source = source ? source : "", .warn = warn, .conf = conf };
	const char *p = text, *end = text + len;
	int line = 0;

	if (!text || !conf)
		return -1;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		line++;
		if (parse_line(&ps, p, eol, line) < 0)
			goto oom;
		p = eol + (eol < end);
	}
	if (stanza_finish(&ps) < 0)
		goto oom;
	return ps.appended;
oom:
	stanza_clear(&ps.st);
	return -1;
}

/* ---- files ---- */

static char *read_file(const char *path, size_t *len, const char **why)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*why = strerror(errno);
		return NULL;
	}
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n == cap) {
			if (cap >= CONF_FILE_MAX) {
				*why = "file too large";
				goto fail;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*why = strerror(errno);
			goto fail;
		}
		if (r == 0) {
			close(fd);
			*len = n;
			return buf;
		}
		n += (size_t)r;
	}
	*why = "out of memory";
fail:
	free(buf);
	close(fd);
	return NULL;
}

static int load_file(const char *path, struct reader_conf *conf, reader_conf_warn_fn *warn)
{
	size_t len = 0;
	const char *why = NULL;
	char *text = read_file(path, &len, &why);
	if (!text) {
		if (warn)
			warn(path, 0, why);
		return 0; /* one unreadable file does not stop the others */
	}
	int n = reader_conf_parse(text, len, path, conf, warn);
	free(text);
	return n;
}

static bool wanted_name(const char *name)
{
	size_t len = strlen(name);
	return name[0] != '.' && len > 0 && name[len - 1] != '~';
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The directory's file names in order; NULL if it cannot be read. */
static char **list_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!wanted_name(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nn = realloc(names, cap * sizeof *nn);
			if (!nn)
				goto fail;
			names = nn;
		}
		if (!(names[n] = strdup(de->d_name)))
			goto fail;
		n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof *names, cmp_names);
	*count = n;
	return names ? names : calloc(1, sizeof *names);
fail:
	while (n > 0)
		free(names[--n]);
	free(names);
	closedir(d);
	return NULL;
}

/* Loads dir/name if it is a regular file; returns the new total or -1. */
static int load_entry(const char *dir, const char *name, struct reader_conf *conf,
		      reader_conf_warn_fn *warn, int total)
{
	char *path = NULL;
	struct stat st;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return -1;
	/* Follows symlinks; subdirectories and devices are not config. */
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
		int n = load_file(path, conf, warn);
		total = n < 0 ? -1 : total + n;
	}
	free(path);
	return total;
}

static int load_dir(const char *dir, struct reader_conf *conf, reader_conf_warn_fn *warn)
{
	size_t count = 0;
	char **names = list_dir(dir, &count);
	if (!names)
		return -1;
	int total = 0;
	for (size_t i = 0; i < count; i++) {
		if (total >= 0)
			total = load_entry(dir, names[i], conf, warn, total);
		free(names[i]);
	}
	free(names);
	return total;
}

int reader_conf_load(const char *dir, struct reader_conf *conf, reader_conf_warn_fn *warn)
{
	struct stat st;

	if (!dir || !conf || stat(dir, &st) < 0)
		return -1;
	if (S_ISDIR(st.st_mode))
		return load_dir(dir, conf, warn);
	if (!S_ISREG(st.st_mode))
		return -1;
	size_t len = 0;
	const char *why = NULL;
	char *text = read_file(dir, &len, &why);
	if (!text) {
		if (warn)
			warn(dir, 0, why);
		return -1;
	}
	int n = reader_conf_parse(text, len, dir, conf, warn);
	free(text);
	return n;
}

void reader_conf_free(struct reader_conf *conf)
{
	if (!conf)
		return;
	for (size_t i = 0; i < conf->n; i++) {
		struct reader_conf_entry *e = &conf->entries[i];
		free(e->friendly_name);
		free(e->device_name);
		free(e->lib_path);
		free(e->source);
	}
	free(conf->entries);
	conf->entries = NULL;
	conf->n = 0;
}
