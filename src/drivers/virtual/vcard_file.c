/*
 * Card files: the text format of CARD-FORMAT.md turned into a struct vcard.
 *
 * Statements are line-based ("atr", "pin", "df", "ef"); every error names its
 * line. Input comes from users and from the control socket, so every length
 * is bounded before use and nothing is trusted to be NUL-terminated.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vcard_internal.h"

#define MAX_TOKENS 512
#define MAX_LINE 8192
#define MAX_VALUE 4096 /* bytes in one "data"/"name"/pin value written inline */

struct token {
	const char *s;
	size_t len;
	bool quoted; /* s/len is the raw text between the quotes */
};

struct parser {
	struct vcard *card;
	unsigned line;
	char *err;
	size_t errlen;
	bool failed;
};

static void fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct parser *p, const char *fmt, ...)
{
	if (p->failed)
		return;
	p->failed = true;
	if (!p->err || p->errlen == 0)
		return;
	int n = snprintf(p->err, p->errlen, "line %u: ", p->line);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Quotes at most 24 bytes of a token for an error message, printable only. */
static const char *show(const struct token *t, char buf[32])
{
	size_t n = t->len < 24 ? t->len : 24;
	for (size_t i = 0; i < n; i++) {
		char c = t->s[i];
		buf[i] = (c >= 0x20 && c < 0x7F) ? c : '?';
	}
	buf[n] = 0;
	if (t->len > 24)
		strcpy(buf + 21, "...");
	return buf;
}

static bool tok_is(const struct token *t, const char *word)
{
	size_t n = strlen(word);
	return !t->quoted && t->len == n && strncmp(t->s, word, n) == 0;
}

/* Splits one line into tokens; '#' starts a comment outside quotes. */
static int tokenize(struct parser *p, const char *line, size_t len, struct token *toks, size_t max)
{
	size_t n = 0, i = 0;
	while (i < len) {
		char c = line[i];
		if (c == ' ' || c == '\t' || c == '\r') {
			i++;
			continue;
		}
		if (c == '#')
			break;
		if (n == max) {
			fail(p, "too many words on one line");
			return -1;
		}
		if (c == '"') {
			size_t start = ++i;
			while (i < len && line[i] != '"') {
				if (line[i] == '\\' && i + 1 < len)
					i++;
				i++;
			}
			if (i >= len) {
				fail(p, "unterminated quoted string");
				return -1;
			}
			toks[n++] = (struct token){ line + start, i - start, true };
			i++;
			continue;
		}
		size_t start = i;
		while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' &&
		       line[i] != '#' && line[i] != '"')
			i++;
		toks[n++] = (struct token){ line + start, i - start, false };
	}
	return (int)n;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Appends one value token (hex digits, or a quoted string) to buf. */
static bool append_value(struct parser *p, const struct token *t, uint8_t *buf, size_t *len,
			 size_t cap)
{
	char show_buf[32];
	if (t->quoted) {
		for (size_t i = 0; i < t->len; i++) {
			char c = t->s[i];
			if (c == '\\' && i + 1 < t->len)
				c = t->s[++i];
			if (*len >= cap) {
				fail(p, "value longer than %zu bytes", cap);
				return false;
			}
			buf[(*len)++] = (uint8_t)c;
		}
		return true;
	}
	if (t->len % 2) {
		fail(p, "'%s' is not hex bytes (odd number of digits)", show(t, show_buf));
		return false;
	}
	for (size_t i = 0; i < t->len; i += 2) {
		int hi = hexval(t->s[i]), lo = hexval(t->s[i + 1]);
		if (hi < 0 || lo < 0) {
			fail(p, "'%s' is not hex bytes", show(t, show_buf));
			return false;
		}
		if (*len >= cap) {
			fail(p, "value longer than %zu bytes", cap);
			return false;
		}
		buf[(*len)++] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* Parses an unsigned decimal (or 0x hex) number in [min, max]. */
static bool parse_uint(struct parser *p, const struct token *t, const char *what, unsigned long min,
		       unsigned long max, unsigned long *out)
{
	char buf[32], show_buf[32];
	if (t->quoted || t->len == 0 || t->len >= sizeof(buf)) {
		fail(p, "%s: '%s' is not a number", what, show(t, show_buf));
		return false;
	}
	memcpy(buf, t->s, t->len);
	buf[t->len] = 0;
	char *end;
	errno = 0;
	unsigned long v = strtoul(buf, &end, 0);
	if (errno || *end || buf[0] == '-' || buf[0] == '+') {
		fail(p, "%s: '%s' is not a number", what, show(t, show_buf));
		return false;
	}
	if (v < min || v > max) {
		fail(p, "%s must be between %lu and %lu", what, min, max);
		return false;
	}
	*out = v;
	return true;
}

/* One hex byte written as two digits ("81"). */
static bool parse_byte(struct parser *p, const struct token *t, const char *what, uint8_t *out)
{
	char show_buf[32];
	if (t->quoted || t->len != 2 || hexval(t->s[0]) < 0 || hexval(t->s[1]) < 0) {
		fail(p, "%s: '%s' is not one hex byte", what, show(t, show_buf));
		return false;
	}
	*out = (uint8_t)(hexval(t->s[0]) << 4 | hexval(t->s[1]));
	return true;
}

/* ---- the file tree ---- */

static struct vfile *child_by_fid(struct vfile *df, uint16_t fid)
{
	for (struct vfile *f = df->children; f; f = f->next)
		if (f->fid == fid)
			return f;
	return NULL;
}

/*
 * Resolves "3F00/5000/5001": every element but the last must be an existing
 * DF; returns that parent and the last FID.
 */
static struct vfile *resolve_parent(struct parser *p, const struct token *t, uint16_t *fid)
{
	char show_buf[32];
	if (t->quoted || t->len < 4) {
		fail(p, "bad path '%s' (expected 3F00/xxxx/...)", show(t, show_buf));
		return NULL;
	}
	uint16_t fids[16] = { 0 };
	size_t n = 0, i = 0;
	while (i < t->len) {
		if (n == 16) {
			fail(p, "path '%s' is too deep", show(t, show_buf));
			return NULL;
		}
		int v = 0;
		for (size_t k = 0; k < 4; k++) {
			int h = i + k < t->len ? hexval(t->s[i + k]) : -1;
			if (h < 0) {
				fail(p, "bad path '%s' (file ids are 4 hex digits)",
				     show(t, show_buf));
				return NULL;
			}
			v = v << 4 | h;
		}
		fids[n++] = (uint16_t)v;
		i += 4;
		if (i < t->len) {
			if (t->s[i] != '/' || i + 1 == t->len) {
				fail(p, "bad path '%s' (expected 3F00/xxxx/...)",
				     show(t, show_buf));
				return NULL;
			}
			i++;
		}
	}
	if (fids[0] != VCARD_FID_MF) {
		fail(p, "path '%s' must start at the MF (3F00)", show(t, show_buf));
		return NULL;
	}
	if (n < 2) {
		fail(p, "the MF (3F00) always exists; give a path below it");
		return NULL;
	}
	struct vfile *df = p->card->mf;
	for (size_t k = 1; k + 1 < n; k++) {
		df = child_by_fid(df, fids[k]);
		if (!df || df->kind != VFILE_DF) {
			fail(p, "path '%s': %04X is not a DF declared above", show(t, show_buf),
			     fids[k]);
			return NULL;
		}
	}
	*fid = fids[n - 1];
	if (*fid == VCARD_FID_MF || *fid == 0xFFFF || *fid == 0x3FFF) {
		fail(p, "file id %04X is reserved", *fid);
		return NULL;
	}
	if (child_by_fid(df, *fid)) {
		fail(p, "file %04X already exists in that DF", *fid);
		return NULL;
	}
	return df;
}

static struct vfile *add_file(struct parser *p, struct vfile *parent, uint16_t fid,
			      enum vfile_kind kind)
{
	if (p->card->n_files >= VCARD_MAX_FILES) {
		fail(p, "more than %d files", VCARD_MAX_FILES);
		return NULL;
	}
	struct vfile *f = calloc(1, sizeof(*f));
	if (!f) {
		fail(p, "out of memory");
		return NULL;
	}
	f->kind = kind;
	f->fid = fid;
	f->parent = parent;
	f->read.kind = VACCESS_ALWAYS;
	f->write.kind = VACCESS_ALWAYS;
	/* keep declaration order: append */
	struct vfile **link = &parent->children;
	while (*link)
		link = &(*link)->next;
	*link = f;
	p->card->n_files++;
	return f;
}

static void free_tree(struct vfile *f)
{
	while (f) {
		struct vfile *next = f->next;
		free_tree(f->children);
		free(f->data);
		free(f);
		f = next;
	}
}

struct vpin *vcard_find_pin(struct vcard *card, uint8_t ref)
{
	for (size_t i = 0; i < card->n_pins; i++)
		if (card->pins[i].ref == ref)
			return &card->pins[i];
	return NULL;
}

/* ---- statements ---- */

static bool is_keyword(const struct token *t, const char *const *kw)
{
	for (; *kw; kw++)
		if (tok_is(t, *kw))
			return true;
	return false;
}

/* Collects value tokens from toks[*i] up to the next keyword. */
static bool collect_value(struct parser *p, const struct token *toks, int n, int *i,
			  const char *const *kw, uint8_t *buf, size_t *len, size_t cap,
			  const char *what)
{
	int start = *i;
	*len = 0;
	while (*i < n && !is_keyword(&toks[*i], kw)) {
		if (!append_value(p, &toks[*i], buf, len, cap))
			return false;
		(*i)++;
	}
	if (*i == start) {
		fail(p, "%s needs a value", what);
		return false;
	}
	return true;
}

static bool stmt_atr(struct parser *p, const struct token *toks, int n)
{
	struct vcard *c = p->card;
	if (c->atr_len) {
		fail(p, "atr given twice");
		return false;
	}
	if (n == 2 && !toks[1].quoted && toks[1].len >= 3 && toks[1].s[0] == 'T') {
		unsigned protos = 0;
		static const struct {
			const char *s;
			unsigned bits;
		} names[] = {
			{ "T=0", VCARD_PROTO_T0 },
			{ "T=1", VCARD_PROTO_T1 },
			{ "T=0,T=1", VCARD_PROTO_T0 | VCARD_PROTO_T1 },
		};
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (tok_is(&toks[1], names[k].s))
				protos = names[k].bits;
		if (!protos) {
			fail(p, "atr: expected T=0, T=1, T=0,T=1 or hex bytes");
			return false;
		}
		c->atr_len = vcard_atr_builtin(protos, c->atr, sizeof(c->atr));
	} else {
		uint8_t buf[MAX_VALUE];
		size_t len = 0;
		for (int i = 1; i < n; i++) {
			if (toks[i].quoted) {
				fail(p, "atr: hex bytes expected");
				return false;
			}
			if (!append_value(p, &toks[i], buf, &len, sizeof(buf)))
				return false;
		}
		if (len == 0) {
			fail(p, "atr needs hex bytes or T=0 / T=1");
			return false;
		}
		if (len > VCARD_MAX_ATR) {
			fail(p, "atr: %zu bytes, at most %d", len, VCARD_MAX_ATR);
			return false;
		}
		memcpy(c->atr, buf, len);
		c->atr_len = len;
	}
	char why[128];
	if (!vcard_atr_check(c->atr, c->atr_len, &c->protocols, &c->first_protocol, why,
			     sizeof(why))) {
		fail(p, "atr: %s", why);
		return false;
	}
	return true;
}

static bool stmt_pin(struct parser *p, const struct token *toks, int n)
{
	static const char *const kw[] = { "tries", NULL };
	struct vcard *c = p->card;
	if (n < 3) {
		fail(p, "usage: pin <ref> <value> [tries N]");
		return false;
	}
	if (c->n_pins >= VCARD_MAX_PINS) {
		fail(p, "more than %d pins", VCARD_MAX_PINS);
		return false;
	}
	struct vpin pin = { .max_tries = 3 };
	if (!parse_byte(p, &toks[1], "pin reference", &pin.ref))
		return false;
	if (vcard_find_pin(c, pin.ref)) {
		fail(p, "pin %02X declared twice", pin.ref);
		return false;
	}
	int i = 2;
	if (!collect_value(p, toks, n, &i, kw, pin.value, &pin.len, sizeof(pin.value), "pin"))
		return false;
	while (i < n) {
		if (tok_is(&toks[i], "tries") && i + 1 < n) {
			unsigned long v;
			if (!parse_uint(p, &toks[i + 1], "tries", 1, 15, &v))
				return false;
			pin.max_tries = (unsigned)v;
			i += 2;
		} else {
			fail(p, "pin: unexpected words after the value");
			return false;
		}
	}
	pin.tries_left = pin.max_tries;
	c->pins[c->n_pins++] = pin;
	return true;
}

static bool stmt_df(struct parser *p, const struct token *toks, int n)
{
	static const char *const kw[] = { "name", NULL };
	if (n < 2) {
		fail(p, "usage: df <path> [name <hex AID>]");
		return false;
	}
	uint16_t fid;
	struct vfile *parent = resolve_parent(p, &toks[1], &fid);
	if (!parent)
		return false;
	uint8_t aid[MAX_VALUE];
	size_t aid_len = 0;
	int i = 2;
	while (i < n) {
		if (tok_is(&toks[i], "name")) {
			i++;
			if (!collect_value(p, toks, n, &i, kw, aid, &aid_len, sizeof(aid), "name"))
				return false;
			if (aid_len > VCARD_MAX_AID) {
				fail(p, "name: %zu bytes, at most %d", aid_len, VCARD_MAX_AID);
				return false;
			}
		} else {
			char b[32];
			fail(p, "df: unknown option '%s'", show(&toks[i], b));
			return false;
		}
	}
	struct vfile *f = add_file(p, parent, fid, VFILE_DF);
	if (!f)
		return false;
	memcpy(f->aid, aid, aid_len);
	f->aid_len = aid_len;
	return true;
}

static bool parse_access(struct parser *p, const struct token *toks, int n, int *i,
			 struct vaccess *acc)
{
	if (*i < n && tok_is(&toks[*i], "always")) {
		acc->kind = VACCESS_ALWAYS;
		(*i)++;
		return true;
	}
	if (*i < n && tok_is(&toks[*i], "never")) {
		acc->kind = VACCESS_NEVER;
		(*i)++;
		return true;
	}
	if (*i + 1 < n && tok_is(&toks[*i], "pin")) {
		acc->kind = VACCESS_PIN;
		if (!parse_byte(p, &toks[*i + 1], "pin reference", &acc->pin_ref))
			return false;
		if (!vcard_find_pin(p->card, acc->pin_ref)) {
			fail(p, "pin %02X is not declared (declare pins before files)",
			     acc->pin_ref);
			return false;
		}
		*i += 2;
		return true;
	}
	fail(p, "access must be always, never or pin <ref>");
	return false;
}

static bool stmt_ef(struct parser *p, const struct token *toks, int n)
{
	static const char *const kw[] = { "size", "sfi", "read", "write", "data", NULL };
	if (n < 2) {
		fail(p, "usage: ef <path> [size N] [sfi N] [read ACC] [write ACC] [data ...]");
		return false;
	}
	uint16_t fid;
	struct vfile *parent = resolve_parent(p, &toks[1], &fid);
	if (!parent)
		return false;
	unsigned long size = 0, sfi = 0;
	bool have_size = false;
	struct vaccess rd = { VACCESS_ALWAYS, 0 }, wr = { VACCESS_ALWAYS, 0 };
	uint8_t *data = malloc(VCARD_MAX_EF_SIZE);
	size_t data_len = 0;
	if (!data) {
		fail(p, "out of memory");
		return false;
	}
	int i = 2;
	bool ok = true;
	while (ok && i < n) {
		if (tok_is(&toks[i], "size") && i + 1 < n) {
			ok = parse_uint(p, &toks[i + 1], "size", 0, VCARD_MAX_EF_SIZE, &size);
			have_size = true;
			i += 2;
		} else if (tok_is(&toks[i], "sfi") && i + 1 < n) {
			ok = parse_uint(p, &toks[i + 1], "sfi", 1, 30, &sfi);
			i += 2;
		} else if (tok_is(&toks[i], "read")) {
			i++;
			ok = parse_access(p, toks, n, &i, &rd);
		} else if (tok_is(&toks[i], "write")) {
			i++;
			ok = parse_access(p, toks, n, &i, &wr);
		} else if (tok_is(&toks[i], "data")) {
			i++;
			ok = collect_value(p, toks, n, &i, kw, data, &data_len, VCARD_MAX_EF_SIZE,
					   "data");
		} else {
			char b[32];
			fail(p, "ef: unknown or incomplete option '%s'", show(&toks[i], b));
			ok = false;
		}
	}
	if (ok && have_size && data_len > size) {
		fail(p, "data is %zu bytes but size is %lu", data_len, size);
		ok = false;
	}
	if (ok && sfi) {
		for (struct vfile *f = parent->children; f; f = f->next)
			if (f->kind == VFILE_EF && f->sfi == sfi) {
				fail(p, "sfi %lu already used by %04X in that DF", sfi, f->fid);
				ok = false;
				break;
			}
	}
	struct vfile *f = ok ? add_file(p, parent, fid, VFILE_EF) : NULL;
	if (!f) {
		free(data);
		return false;
	}
	f->size = have_size ? size : data_len;
	f->data = calloc(f->size ? f->size : 1, 1);
	if (!f->data) {
		free(data);
		fail(p, "out of memory");
		return false;
	}
	memcpy(f->data, data, data_len);
	free(data);
	f->sfi = (uint8_t)sfi;
	f->read = rd;
	f->write = wr;
	return true;
}

static bool statement(struct parser *p, const char *line, size_t len)
{
	struct token toks[MAX_TOKENS];
	int n = tokenize(p, line, len, toks, MAX_TOKENS);
	if (n <= 0)
		return n == 0;
	if (tok_is(&toks[0], "atr"))
		return stmt_atr(p, toks, n);
	if (tok_is(&toks[0], "pin"))
		return stmt_pin(p, toks, n);
	if (tok_is(&toks[0], "df"))
		return stmt_df(p, toks, n);
	if (tok_is(&toks[0], "ef"))
		return stmt_ef(p, toks, n);
	char b[32];
	fail(p, "unknown keyword '%s' (expected atr, pin, df or ef)", show(&toks[0], b));
	return false;
}

struct vcard *vcard_parse(const char *text, size_t len, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	struct parser p = { .err = err, .errlen = errlen };
	if (!text || len > VCARD_MAX_TEXT) {
		fail(&p, "card file larger than %u bytes", VCARD_MAX_TEXT);
		return NULL;
	}
	struct vcard *c = calloc(1, sizeof(*c));
	struct vfile *mf = calloc(1, sizeof(*mf));
	if (!c || !mf) {
		free(c);
		free(mf);
		fail(&p, "out of memory");
		return NULL;
	}
	mf->kind = VFILE_DF;
	mf->fid = VCARD_FID_MF;
	c->mf = mf;
	c->n_files = 1;
	p.card = c;

	size_t pos = 0;
	while (pos < len && !p.failed) {
		p.line++;
		size_t end = pos;
		while (end < len && text[end] != '\n')
			end++;
		if (end - pos > MAX_LINE)
			fail(&p, "line longer than %d characters", MAX_LINE);
		else if (memchr(text + pos, 0, end - pos))
			fail(&p, "NUL byte in the text");
		else
			statement(&p, text + pos, end - pos);
		pos = end + 1;
	}
	if (!p.failed && c->atr_len == 0) {
		c->atr_len = vcard_atr_builtin(VCARD_PROTO_T0 | VCARD_PROTO_T1, c->atr,
					       sizeof(c->atr));
		vcard_atr_check(c->atr, c->atr_len, &c->protocols, &c->first_protocol, NULL, 0);
	}
	if (p.failed) {
		vcard_free(c);
		return NULL;
	}
	vcard_reset(c);
	return c;
}

struct vcard *vcard_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(VCARD_MAX_TEXT + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	size_t len = fread(buf, 1, VCARD_MAX_TEXT + 1, f);
	bool read_error = ferror(f);
	fclose(f);
	struct vcard *c = NULL;
	if (read_error) {
		snprintf(err, errlen, "cannot read %s", path);
	} else if (len > VCARD_MAX_TEXT) {
		snprintf(err, errlen, "%s: larger than %u bytes", path, VCARD_MAX_TEXT);
	} else {
		char why[256];
		c = vcard_parse(buf, len, why, sizeof(why));
		if (!c)
			snprintf(err, errlen, "%s: %s", path, why);
	}
	free(buf);
	return c;
}

void vcard_free(struct vcard *card)
{
	if (!card)
		return;
	if (card->mf)
		free_tree(card->mf);
	free(card->pending);
	free(card);
}
