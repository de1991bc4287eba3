/* Driver bundles: read Info.plist (with expat) into the device table hotplug matches against. */
#include "bundle.h"

#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void bundle_clear(struct bundle *b)
{
	if (!b)
		return;
	free(b->path);
	free(b->lib_path);
	free(b->name);
	for (size_t i = 0; i < b->n_devices; i++)
		free(b->devices[i].friendly_name);
	free(b->devices);
	*b = (struct bundle){ 0 };
}

const struct bundle *bundle_find_driver(const struct bundle_list *list, uint16_t vid, uint16_t pid,
					const struct bundle_device **entry,
					const struct bundle **class_driver)
{
	const struct bundle *driver = NULL, *cls = NULL;
	const struct bundle_device *driver_entry = NULL, *cls_entry = NULL;
	for (size_t i = 0; list && i < list->n; i++) {
		const struct bundle *b = &list->items[i];
		for (size_t k = 0; k < b->n_devices; k++) {
			const struct bundle_device *e = &b->devices[k];
			if (e->vendor_id != vid || e->product_id != pid)
				continue;
			if (b->class_driver) {
				cls = b;
				cls_entry = e;
			} else {
				driver = b;
				driver_entry = e;
			}
		}
	}
	*class_driver = cls;
	*entry = driver ? driver_entry : cls_entry;
	return driver ? driver : cls;
}

void bundle_list_free(struct bundle_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n; i++)
		bundle_clear(&list->items[i]);
	free(list->items);
	*list = (struct bundle_list){ 0 };
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
							  ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#ifndef HAVE_EXPAT

int bundle_parse_plist(const char *xml, size_t len, const char *bundle_path, struct bundle *out,
		       char *err, size_t errlen)
{
	(void)xml;
	(void)len;
	(void)bundle_path;
	if (out)
		*out = (struct bundle){ 0 };
	set_err(err, errlen, "built without expat");
	return -1;
}

int bundle_scan(const char *drivers_dir, struct bundle_list *list, bundle_warn_fn *warn)
{
	(void)drivers_dir;
	(void)list;
	if (warn)
		warn(drivers_dir ? drivers_dir : "", "built without expat");
	return -1;
}

#else

#include <expat.h>

/* Longest text we keep from one element; device names are far shorter. */
#define PLIST_TEXT_MAX 4096
/* ccid lists about 600 devices; this leaves plenty of room. */
#define PLIST_ITEMS_MAX 65536
/* Info.plist files are tens of kilobytes. */
#define PLIST_FILE_MAX (4 * 1024 * 1024)
#define CLASS_DRIVER_NAME "CCIDCLASSDRIVER"

/* One value: a <string> or <integer> (decimal), kept as text until checked. */
struct pvalue {
	char *text;
	bool integer;
};

/* The values of one key we care about: a single value or an <array>. */
struct pfield {
	const char *key;
	struct pvalue *items;
	size_t n;
	bool seen;
	bool array;
};

enum { F_VENDOR, F_PRODUCT, F_FRIENDLY, F_EXEC, F_NAME, F_CAPS, F_COUNT };

struct plist {
	XML_Parser parser;
	int depth;      /* of the element being read */
	int dict_depth; /* of the top <dict>, 0 until found */
	bool dict_done;
	char key[64]; /* last <key>, waiting for its value */
	bool have_key;
	struct pfield *target; /* field receiving the current value or array */
	int array_depth;       /* depth of the open <array>, 0 when none */

	/* text of the element at collect_depth (0 = not collecting) */
	int collect_depth;
	bool collect_key, collect_int;
	char text[PLIST_TEXT_MAX + 1];
	size_t text_len;

	struct pfield fields[F_COUNT];
	char *err;
	size_t errlen;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void fail(struct plist *pl, const char *fmt, ...)
{
	if (pl->failed)
		return;
	pl->failed = true;
	if (pl->err && pl->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(pl->err, pl->errlen, fmt, ap);
		va_end(ap);
	}
	if (pl->parser)
		XML_StopParser(pl->parser, XML_FALSE);
}

static struct pfield *field_for(struct plist *pl, const char *key)
{
	for (int i = 0; i < F_COUNT; i++)
		if (strcmp(pl->fields[i].key, key) == 0)
			return &pl->fields[i];
	return NULL;
}

static void add_value(struct plist *pl, struct pfield *f)
{
	if (f->n >= PLIST_ITEMS_MAX) {
		fail(pl, "%s: too many entries", f->key);
		return;
	}
	struct pvalue *items = realloc(f->items, (f->n + 1) * sizeof *items);
	if (!items) {
		fail(pl, "out of memory");
		return;
	}
	f->items = items;
	/* pl->text is not NUL-terminated: copy exactly its bytes. */
	char *text = malloc(pl->text_len + 1);
	if (text) {
		memcpy(text, pl->text, pl->text_len);
		text[pl->text_len] = '\0';
	}
	if (!text) {
		fail(pl, "out of memory");
		return;
	}
	f->items[f->n++] = (struct pvalue){ .text = text, .integer = pl->collect_int };
}

static void start_collect(struct plist *pl, bool key, bool integer)
{
	pl->collect_depth = pl->depth;
	pl->collect_key = key;
	pl->collect_int = integer;
	pl->text_len = 0;
}

static bool is_scalar(const char *name)
{
	return strcmp(name, "string") == 0 || strcmp(name, "integer") == 0;
}

/* The element after a <key> in the top dict: the key's value. */
static void start_value(struct plist *pl, const char *name)
{
	struct pfield *f = pl->have_key ? field_for(pl, pl->key) : NULL;
	pl->have_key = false;
	if (!f)
		return; /* a key we do not read, or a value without a key */
	if (f->seen) {
		fail(pl, "duplicate key %s", f->key);
		return;
	}
	f->seen = true;
	pl->target = f;
	if (is_scalar(name)) {
		start_collect(pl, false, name[0] == 'i');
	} else if (strcmp(name, "array") == 0) {
		f->array = true;
		pl->array_depth = pl->depth;
	} else {
		fail(pl, "%s: unexpected <%.20s>", f->key, name);
	}
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct plist *pl = ud;
	(void)attrs;
	pl->depth++;
	if (pl->failed || pl->dict_done || pl->collect_depth)
		return;
	if (pl->dict_depth == 0) {
		/* <plist><dict>, or a bare <dict> as the root */
		if (strcmp(name, "dict") == 0 && pl->depth <= 2)
			pl->dict_depth = pl->depth;
		return;
	}
	if (pl->array_depth) {
		if (pl->depth != pl->array_depth + 1)
			return;
		if (is_scalar(name))
			start_collect(pl, false, name[0] == 'i');
		else
			fail(pl, "%s: unexpected <%.20s> in array", pl->target->key, name);
		return;
	}
	if (pl->depth != pl->dict_depth + 1)
		return;
	if (strcmp(name, "key") == 0)
		start_collect(pl, true, false);
	else
		start_value(pl, name);
}

static void end_collect(struct plist *pl)
{
	pl->collect_depth = 0;
	if (!pl->collect_key) {
		if (pl->target)
			add_value(pl, pl->target);
		if (!pl->array_depth)
			pl->target = NULL;
		return;
	}
	/* Keys we read are short; a longer one is simply not ours. */
	pl->have_key = pl->text_len < sizeof pl->key;
	if (pl->have_key) {
		memcpy(pl->key, pl->text, pl->text_len);
		pl->key[pl->text_len] = '\0';
	}
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct plist *pl = ud;
	(void)name;
	if (!pl->failed && !pl->dict_done) {
		if (pl->collect_depth == pl->depth)
			end_collect(pl);
		else if (pl->array_depth == pl->depth) {
			pl->array_depth = 0;
			pl->target = NULL;
		} else if (pl->dict_depth == pl->depth)
			pl->dict_done = true;
	}
	pl->depth--;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct plist *pl = ud;
	if (pl->failed || !pl->collect_depth || len <= 0)
		return;
	if ((size_t)len > PLIST_TEXT_MAX - pl->text_len) {
		fail(pl, "value too long");
		return;
	}
	memcpy(pl->text + pl->text_len, s, (size_t)len);
	pl->text_len += (size_t)len;
}

/* Entity declarations only serve expansion attacks; no plist needs them. */
static void XMLCALL on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
			      int value_len, const XML_Char *base, const XML_Char *system_id,
			      const XML_Char *public_id, const XML_Char *notation)
{
	(void)name, (void)is_param, (void)value, (void)value_len, (void)base;
	(void)system_id, (void)public_id, (void)notation;
	fail(ud, "entity declarations are not allowed");
}

static int run_parser(struct plist *pl, const char *xml, size_t len)
{
	XML_Parser p = XML_ParserCreate("UTF-8");
	if (!p) {
		fail(pl, "out of memory");
		return -1;
	}
	pl->parser = p;
	XML_SetUserData(p, pl);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_text);
	XML_SetEntityDeclHandler(p, on_entity);

	/* XML_Parse takes an int length: feed big documents in pieces. */
	int ok = 1;
	do {
		int chunk = len > (1 << 20) ? 1 << 20 : (int)len;
		ok = XML_Parse(p, xml, chunk, (size_t)chunk == len) == XML_STATUS_OK;
		xml += chunk;
		len -= (size_t)chunk;
	} while (ok && len > 0);
	if (!ok && !pl->failed)
		fail(pl, "XML error at line %lu: %s", (unsigned long)XML_GetCurrentLineNumber(p),
		     XML_ErrorString(XML_GetErrorCode(p)));
	XML_ParserFree(p);
	pl->parser = NULL;
	if (!pl->failed && !pl->dict_depth)
		fail(pl, "no <dict> in the plist");
	return pl->failed ? -1 : 0;
}

/* ---- turning fields into a struct bundle ---- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* <string> numbers are hex ("0x08E6", prefix optional), <integer> decimal. */
static int parse_number(const struct pvalue *v, uint32_t max, uint32_t *out)
{
	const char *s = v->text;
	unsigned base = v->integer ? 10 : 16;
	uint64_t n = 0;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	if (!v->integer && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	const char *digits = s;
	for (int d; (d = hex_digit(*s)) >= 0 && (unsigned)d < base; s++) {
		n = n * base + (unsigned)d;
		if (n > max)
			return -1;
	}
	if (s == digits)
		return -1;
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	if (*s)
		return -1;
	*out = (uint32_t)n;
	return 0;
}

static const char *single_string(struct plist *pl, int which)
{
	struct pfield *f = &pl->fields[which];
	if (!f->seen)
		return NULL;
	if (f->array || f->n != 1 || f->items[0].integer) {
		set_err(pl->err, pl->errlen, "%s must be a single <string>", f->key);
		pl->failed = true;
		return NULL;
	}
	return f->items[0].text;
}

static int fill_devices(struct plist *pl, struct bundle *out)
{
	struct pfield *v = &pl->fields[F_VENDOR], *p = &pl->fields[F_PRODUCT];
	struct pfield *fn = &pl->fields[F_FRIENDLY];
	if (v->n != p->n || v->n != fn->n) {
		set_err(pl->err, pl->errlen,
			"ifdVendorID/ifdProductID/ifdFriendlyName have %zu/%zu/%zu entries", v->n,
			p->n, fn->n);
		return -1;
	}
	if (v->n == 0)
		return 0;
	out->devices = calloc(v->n, sizeof *out->devices);
	if (!out->devices) {
		set_err(pl->err, pl->errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < v->n; i++) {
		uint32_t vid, pid;
		if (parse_number(&v->items[i], 0xffff, &vid) < 0 ||
		    parse_number(&p->items[i], 0xffff, &pid) < 0) {
			set_err(pl->err, pl->errlen, "device %zu: bad vendor/product id", i);
			return -1;
		}
		if (fn->items[i].integer) {
			set_err(pl->err, pl->errlen, "device %zu: friendly name is a number", i);
			return -1;
		}
		out->devices[i].vendor_id = (uint16_t)vid;
		out->devices[i].product_id = (uint16_t)pid;
		out->devices[i].friendly_name = fn->items[i].text;
		fn->items[i].text = NULL; /* moved */
		out->n_devices++;
	}
	return 0;
}

static int fill_bundle(struct plist *pl, const char *bundle_path, struct bundle *out)
{
	const char *exec = single_string(pl, F_EXEC);
	const char *name = single_string(pl, F_NAME);
	if (pl->failed)
		return -1;
	if (!exec || !*exec || strchr(exec, '/') || strcmp(exec, ".") == 0 ||
	    strcmp(exec, "..") == 0) {
		set_err(pl->err, pl->errlen, "CFBundleExecutable missing or not a plain file name");
		return -1;
	}
	struct pfield *caps = &pl->fields[F_CAPS];
	if (caps->seen && (caps->n != 1 || caps->array ||
			   parse_number(&caps->items[0], UINT32_MAX, &out->capabilities) < 0)) {
		set_err(pl->err, pl->errlen, "bad ifdCapabilities");
		return -1;
	}
	const char *dir = bundle_path ? bundle_path : "";
	out->path = strdup(dir);
	out->name = name ? strdup(name) : NULL;
	if (!out->path || (name && !out->name) ||
	    asprintf(&out->lib_path, "%s/Contents/Linux/%s", dir, exec) < 0) {
		out->lib_path = NULL;
		set_err(pl->err, pl->errlen, "out of memory");
		return -1;
	}
	out->class_driver = name && strcmp(name, CLASS_DRIVER_NAME) == 0;
	return fill_devices(pl, out);
}

static void plist_free(struct plist *pl)
{
	for (int i = 0; i < F_COUNT; i++) {
		for (size_t j = 0; j < pl->fields[i].n; j++)
			free(pl->fields[i].items[j].text);
		free(pl->fields[i].items);
	}
	free(pl);
}

static struct plist *plist_new(char *err, size_t errlen)
{
	static const char *const keys[F_COUNT] = {
		[F_VENDOR] = "ifdVendorID",       [F_PRODUCT] = "ifdProductID",
		[F_FRIENDLY] = "ifdFriendlyName", [F_EXEC] = "CFBundleExecutable",
		[F_NAME] = "CFBundleName",        [F_CAPS] = "ifdCapabilities",
	};
	struct plist *pl = calloc(1, sizeof *pl);
	if (!pl)
		return NULL;
	for (int i = 0; i < F_COUNT; i++)
		pl->fields[i].key = keys[i];
	pl->err = err;
	pl->errlen = errlen;
	return pl;
}

int bundle_parse_plist(const char *xml, size_t len, const char *bundle_path, struct bundle *out,
		       char *err, size_t errlen)
{
	if (!out)
		return -1;
	*out = (struct bundle){ 0 };
	if (!xml) {
		set_err(err, errlen, "no plist text");
		return -1;
	}
	struct plist *pl = plist_new(err, errlen);
	if (!pl) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	int rc = run_parser(pl, xml, len);
	if (rc == 0)
		rc = fill_bundle(pl, bundle_path, out);
	plist_free(pl);
	if (rc < 0)
		bundle_clear(out);
	return rc;
}

/* ---- scanning a drivers directory ---- */

static char *read_small_file(const char *path, size_t *len, const char **why)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;

	*why = NULL;
	if (fd < 0 || fstat(fd, &st) < 0) {
		*why = strerror(errno);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > PLIST_FILE_MAX) {
		*why = "not a regular file of sane size";
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	size_t n = 0;
	while (buf && n < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	if (!buf)
		*why = "out of memory";
	else
		*len = n; /* a file that shrank is parsed as it now is */
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

static int list_append(struct bundle_list *list, struct bundle *b)
{
	size_t n = list->n;
	if (n == 0 || (n & (n - 1)) == 0) {
		struct bundle *items = realloc(list->items, (n ? n * 2 : 1) * sizeof *items);
		if (!items)
			return -1;
		list->items = items;
	}
	list->items[n] = *b;
	list->n = n + 1;
	return 0;
}

/* Parses one <dir>/<name>.bundle; 1 if added, 0 if skipped, -1 on no memory. */
static int scan_one(const char *dir, const char *name, struct bundle_list *list,
		    bundle_warn_fn *warn)
{
	char *path = NULL, *info = NULL, err[256];
	const char *why = NULL;
	size_t len = 0;
	int rc = -1;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return -1;
	if (asprintf(&info, "%s/Contents/Info.plist", path) < 0) {
		info = NULL;
		goto out;
	}
	char *xml = read_small_file(info, &len, &why);
	if (!xml) {
		if (warn)
			warn(info, why);
		rc = 0;
		goto out;
	}
	struct bundle b;
	if (bundle_parse_plist(xml, len, path, &b, err, sizeof err) < 0) {
		if (warn)
			warn(info, err);
		rc = 0;
	} else if (list_append(list, &b) < 0) {
		bundle_clear(&b);
	} else {
		rc = 1;
	}
	free(xml);
out:
	free(info);
	free(path);
	return rc;
}

static bool is_bundle_name(const char *name)
{
	size_t len = strlen(name);
	return name[0] != '.' && len > 7 && strcmp(name + len - 7, ".bundle") == 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **bundle_names(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	char **names = calloc(1, sizeof *names);
	size_t n = 0;
	struct dirent *de;
	while (names && (de = readdir(d))) {
		if (!is_bundle_name(de->d_name))
			continue;
		char **nn = realloc(names, (n + 2) * sizeof *nn);
		if (!nn || !(nn[n] = strdup(de->d_name))) {
			names = nn ? nn : names;
			while (n > 0)
				free(names[--n]);
			free(names);
			names = NULL;
			break;
		}
		names = nn;
		n++;
	}
	closedir(d);
	if (names && n)
		qsort(names, n, sizeof *names, cmp_names);
	*count = n;
	return names;
}

int bundle_scan(const char *drivers_dir, struct bundle_list *list, bundle_warn_fn *warn)
{
	size_t count = 0;
	if (!drivers_dir || !list)
		return -1;
	char **names = bundle_names(drivers_dir, &count);
	if (!names)
		return -1; /* errno says why; a missing drivers dir is the caller's call */
	int added = 0;
	for (size_t i = 0; i < count; i++) {
		if (added >= 0) {
			int rc = scan_one(drivers_dir, names[i], list, warn);
			added = rc < 0 ? -1 : added + rc;
		}
		free(names[i]);
	}
	free(names);
	return added;
}

#endif
