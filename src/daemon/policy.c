#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "peer_identity.h"

#define MAX_RULES 10000u

enum key {
	KEY_USER,
	KEY_UID,
	KEY_GROUP,
	KEY_EXE,
	KEY_FLATPAK,
	KEY_SNAP,
	KEY_CONTAINER,
	KEY_SANDBOX,
	KEY_READER,
	KEY_COUNT
};

static const char *const key_names[KEY_COUNT] = {
	"user", "uid", "group", "exe", "flatpak", "snap", "container", "sandbox", "reader",
};

struct cond {
	enum key key;
	uint32_t lo, hi;         /* user, uid: a uid range; group: lo */
	enum peer_sandbox where; /* sandbox */
	char *glob;              /* exe, flatpak, snap, container, reader */
};

struct policy_rule {
	int line;
	bool allow;
	uint32_t rights;
	unsigned keys; /* bit per key with a condition */
	struct cond *conds;
	size_t n_conds;
	uint32_t *codes; /* control=CODE */
	size_t n_codes;
};

struct policy {
	char *source;
	struct policy_rule *rules;
	size_t n;
};

/* ---- globs ---- */

/* A [set] at p (p[0] == '['): whether c is in it; *next after the ']'. false if p is no set. */
static bool class_at(const char *p, unsigned char c, bool *in, const char **next)
{
	const char *q = p + 1;
	bool negate = *q == '!' || *q == '^';
	if (negate)
		q++;
	bool found = false;
	bool first = true;
	while (*q && (*q != ']' || first)) {
		first = false;
		unsigned char lo = (unsigned char)*q;
		if (lo == '\\' && q[1])
			lo = (unsigned char)*++q;
		q++;
		unsigned char hi = lo;
		if (q[0] == '-' && q[1] && q[1] != ']') {
			q++;
			hi = (unsigned char)*q;
			if (hi == '\\' && q[1])
				hi = (unsigned char)*++q;
			q++;
		}
		if (c >= lo && c <= hi)
			found = true;
	}
	if (*q != ']')
		return false;
	*in = found != negate;
	*next = q + 1;
	return true;
}

/* Whether the one-character element at p matches c; *next after it. */
static bool element_matches(const char *p, unsigned char c, const char **next)
{
	bool in;
	if (*p == '?') {
		*next = p + 1;
		return true;
	}
	if (*p == '[' && class_at(p, c, &in, next))
		return in;
	if (*p == '\\' && p[1]) {
		*next = p + 2;
		return (unsigned char)p[1] == c;
	}
	*next = p + 1;
	return (unsigned char)*p == c;
}

/*
 * Each element matches one character, so on a mismatch only the last *
 * needs to take one more: no backtracking beyond it, whatever the pattern.
 */
bool policy_glob(const char *pattern, const char *s)
{
	const char *p = pattern, *star_p = NULL, *star_s = NULL;
	while (*s) {
		if (*p == '*') {
			while (*p == '*')
				p++;
			star_p = p;
			star_s = s;
			continue;
		}
		const char *next;
		if (*p && element_matches(p, (unsigned char)*s, &next)) {
			p = next;
			s++;
			continue;
		}
		if (!star_p)
			return false;
		p = star_p;
		s = ++star_s;
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/* ---- matching ---- */

static bool cond_holds(const struct cond *c, const struct peer_identity *id)
{
	switch (c->key) {
	case KEY_USER:
	case KEY_UID: return id->uid >= c->lo && id->uid <= c->hi;
	case KEY_GROUP: return peer_identity_in_group(id, (gid_t)c->lo);
	case KEY_EXE: return id->exe && policy_glob(c->glob, id->exe);
	case KEY_FLATPAK:
		return id->sandbox == PEER_FLATPAK && policy_glob(c->glob, id->app ? id->app : "");
	case KEY_SNAP:
		return id->sandbox == PEER_SNAP && policy_glob(c->glob, id->app ? id->app : "");
	case KEY_CONTAINER:
		return id->sandbox == PEER_CONTAINER && policy_glob(c->glob, id->container);
	case KEY_SANDBOX: return id->sandbox == c->where;
	default: return false;
	}
}

bool policy_rule_fits_peer(const struct policy_rule *r, const struct peer_identity *id)
{
	/* Conditions of one key: any of them; of different keys: all. */
	for (enum key k = 0; k < KEY_READER; k++) {
		if (!(r->keys & (1u << k)))
			continue;
		bool any = false;
		for (size_t i = 0; i < r->n_conds && !any; i++)
			any = r->conds[i].key == k && cond_holds(&r->conds[i], id);
		if (!any)
			return false;
	}
	return true;
}

bool policy_rule_fits_reader(const struct policy_rule *r, const char *reader)
{
	if (!(r->keys & (1u << KEY_READER)))
		return true;
	for (size_t i = 0; i < r->n_conds; i++)
		if (r->conds[i].key == KEY_READER && policy_glob(r->conds[i].glob, reader))
			return true;
	return false;
}

uint32_t policy_rule_rights(const struct policy_rule *r)
{
	return r->rights;
}

bool policy_rule_allows_control(const struct policy_rule *r, uint32_t code)
{
	if (r->rights & POLICY_CONTROL)
		return true;
	for (size_t i = 0; i < r->n_codes; i++)
		if (r->codes[i] == code)
			return true;
	return false;
}

int policy_rule_line(const struct policy_rule *r)
{
	return r->line;
}

const char *policy_source(const struct policy *p)
{
	return p->source;
}

size_t policy_rule_count(const struct policy *p)
{
	return p->n;
}

const struct policy_rule *policy_rule_at(const struct policy *p, size_t i)
{
	return i < p->n ? &p->rules[i] : NULL;
}

const struct policy_rule *policy_decide(const struct policy *p, const struct peer_identity *id,
					const char *reader)
{
	/* Who it was is unknown: its sandbox could be any. */
	if (id->gone)
		return NULL;
	for (size_t i = 0; i < p->n; i++)
		if (policy_rule_fits_peer(&p->rules[i], id) &&
		    policy_rule_fits_reader(&p->rules[i], reader))
			return &p->rules[i];
	return NULL;
}

bool policy_admits(const struct policy *p, const struct peer_identity *id,
		   const struct policy_rule **deny)
{
	if (deny)
		*deny = NULL;
	if (id->gone)
		return false;
	for (size_t i = 0; i < p->n; i++) {
		const struct policy_rule *r = &p->rules[i];
		if (!policy_rule_fits_peer(r, id))
			continue;
		if (r->rights)
			return true;
		/* a deny for every reader ends the search */
		if (!(r->keys & (1u << KEY_READER))) {
			if (deny)
				*deny = r;
			return false;
		}
	}
	return false;
}

/* ---- parsing ---- */

struct parser {
	const char *source;
	int line;
	const struct policy_names *names;
	char *err;
	size_t err_cap;
	struct policy *p;
	size_t rules_cap;
};

static bool fail(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct parser *ps, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ps->err_cap)
		snprintf(ps->err, ps->err_cap, "%s:%d: %s", ps->source, ps->line, msg);
	return false;
}

static void rule_free(struct policy_rule *r)
{
	for (size_t i = 0; i < r->n_conds; i++)
		free(r->conds[i].glob);
	free(r->conds);
	free(r->codes);
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		rule_free(&p->rules[i]);
	free(p->rules);
	free(p->source);
	free(p);
}

static bool system_user(const char *name, uid_t *uid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	*uid = res->pw_uid;
	return true;
}

static bool system_group(const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	char buf[16384];
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || !res)
		return false;
	*gid = res->gr_gid;
	return true;
}

/* A decimal id: digits only, below (uint32_t)-1 (which means "none"). */
static bool parse_id(const char *s, uint32_t *out)
{
	if (!*s || strlen(s) > 10)
		return false;
	unsigned long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v >= 0xFFFFFFFFull)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* A control code as SCardControl takes it: decimal or 0x hex, 32 bits. */
static bool parse_code(const char *s, uint32_t *out)
{
	unsigned base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s || strlen(s) > (base == 16 ? 8u : 10u))
		return false;
	unsigned long long v = 0;
	for (const char *p = s; *p; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return false;
		v = v * base + d;
	}
	if (v > 0xFFFFFFFFull)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool add_cond(struct parser *ps, struct policy_rule *r, const struct cond *c)
{
	struct cond *n = realloc(r->conds, (r->n_conds + 1) * sizeof(*n));
	if (!n)
		return fail(ps, "out of memory");
	r->conds = n;
	r->conds[r->n_conds++] = *c;
	r->keys |= 1u << c->key;
	return true;
}

static bool condition(struct parser *ps, struct policy_rule *r, enum key key, const char *value)
{
	struct cond c = { .key = key };
	switch (key) {
	case KEY_USER:
		if (!parse_id(value, &c.lo)) {
			uid_t uid;
			bool (*lookup)(const char *, uid_t *) = ps->names && ps->names->user
									? ps->names->user
									: system_user;
			if (!lookup(value, &uid))
				return fail(ps, "unknown user '%s'", value);
			c.lo = (uint32_t)uid;
		}
		c.hi = c.lo;
		break;
	case KEY_UID: {
		char lo[16], *dash = strchr(value, '-');
		size_t n = dash ? (size_t)(dash - value) : strlen(value);
		if (n >= sizeof(lo))
			return fail(ps, "uid=%s: a number or a range N-M", value);
		memcpy(lo, value, n);
		lo[n] = '\0';
		if (!parse_id(lo, &c.lo) || !parse_id(dash ? dash + 1 : lo, &c.hi) || c.hi < c.lo)
			return fail(ps, "uid=%s: a number or a range N-M", value);
		break;
	}
	case KEY_GROUP:
		if (!parse_id(value, &c.lo)) {
			gid_t gid;
			bool (*lookup)(const char *, gid_t *) = ps->names && ps->names->group
									? ps->names->group
									: system_group;
			if (!lookup(value, &gid))
				return fail(ps, "unknown group '%s'", value);
			c.lo = (uint32_t)gid;
		}
		break;
	case KEY_SANDBOX: {
		static const enum peer_sandbox all[] = { PEER_HOST, PEER_FLATPAK, PEER_SNAP,
							 PEER_CONTAINER };
		bool known = false;
		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]) && !known; i++)
			if (!strcmp(value, peer_sandbox_name(all[i]))) {
				c.where = all[i];
				known = true;
			}
		if (!known)
			return fail(ps, "sandbox=%s: none, flatpak, snap or container", value);
		break;
	}
	default:
		if (!(c.glob = strdup(value)))
			return fail(ps, "out of memory");
		break;
	}
	if (!add_cond(ps, r, &c)) {
		free(c.glob);
		return false;
	}
	return true;
}

static const struct {
	const char *word;
	uint32_t rights;
} right_words[] = {
	{ "list", POLICY_LIST },
	{ "shared", POLICY_SHARED },
	{ "exclusive", POLICY_EXCLUSIVE },
	{ "direct", POLICY_DIRECT },
	{ "transmit", POLICY_TRANSMIT },
	{ "control", POLICY_CONTROL },
	{ "all", POLICY_ALL },
};

#define RIGHTS_HELP "list shared exclusive direct transmit control control=CODE all"
#define KEYS_HELP "user uid group exe flatpak snap container sandbox reader"

static bool add_code(struct parser *ps, struct policy_rule *r, const char *value)
{
	uint32_t code;
	if (!parse_code(value, &code))
		return fail(ps, "control=%s: a control code, decimal or 0x hex (32 bits)", value);
	uint32_t *n = realloc(r->codes, (r->n_codes + 1) * sizeof(*n));
	if (!n)
		return fail(ps, "out of memory");
	r->codes = n;
	r->codes[r->n_codes++] = code;
	r->rights |= POLICY_CONTROL_SOME;
	return true;
}

/* One word of a rule after allow/deny: KEY=VALUE or a right. */
static bool word(struct parser *ps, struct policy_rule *r, const char *w, const char *value)
{
	if (value) {
		if (!*value)
			return fail(ps, "%s= wants a value", w);
		if (!strcmp(w, "control")) {
			if (!r->allow)
				return fail(ps, "deny takes no rights ('control=%s')", value);
			return add_code(ps, r, value);
		}
		for (enum key k = 0; k < KEY_COUNT; k++)
			if (!strcmp(w, key_names[k]))
				return condition(ps, r, k, value);
		return fail(ps, "unknown condition '%s=' (conditions: " KEYS_HELP ")", w);
	}
	for (size_t i = 0; i < sizeof(right_words) / sizeof(right_words[0]); i++) {
		if (strcmp(w, right_words[i].word) != 0)
			continue;
		if (!r->allow)
			return fail(ps, "deny takes no rights ('%s')", w);
		r->rights |= right_words[i].rights;
		return true;
	}
	for (enum key k = 0; k < KEY_COUNT; k++)
		if (!strcmp(w, key_names[k]))
			return fail(ps, "%s wants a value: %s=...", w, w);
	return fail(ps, "unknown word '%s' (rights: " RIGHTS_HELP ")", w);
}

/*
 * The next word of a line: KEY or KEY=VALUE, VALUE optionally in double
 * quotes (\" and \\ inside). Copies into buf; *value points into it or is
 * NULL. 0: no more words, 1: a word, -1: an error (reported).
 */
static int next_word(struct parser *ps, const char **pp, const char *end, char *buf,
		     const char **value)
{
	const char *p = *pp;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end || *p == '#')
		return 0;
	size_t n = 0;
	*value = NULL;
	while (p < end && *p != ' ' && *p != '\t' && *p != '=')
		buf[n++] = *p++;
	buf[n++] = '\0';
	if (p < end && *p == '=') {
		p++;
		*value = buf + n;
		if (p < end && *p == '"') {
			p++;
			while (p < end && *p != '"') {
				if (*p == '\\' && p + 1 < end && (p[1] == '"' || p[1] == '\\'))
					p++;
				buf[n++] = *p++;
			}
			if (p == end) {
				fail(ps, "a quoted value without its closing quote");
				return -1;
			}
			p++;
			if (p < end && *p != ' ' && *p != '\t') {
				fail(ps, "text right after a closing quote");
				return -1;
			}
		} else {
			while (p < end && *p != ' ' && *p != '\t')
				buf[n++] = *p++;
		}
		buf[n++] = '\0';
	}
	if (buf[0] == '\0') {
		fail(ps, "'=' without a condition before it");
		return -1;
	}
	*pp = p;
	return 1;
}

static struct policy_rule *new_rule(struct parser *ps)
{
	struct policy *p = ps->p;
	if (p->n == MAX_RULES) {
		fail(ps, "more than %u rules", MAX_RULES);
		return NULL;
	}
	if (p->n == ps->rules_cap) {
		size_t cap = ps->rules_cap ? ps->rules_cap * 2 : 16;
		struct policy_rule *n = realloc(p->rules, cap * sizeof(*n));
		if (!n) {
			fail(ps, "out of memory");
			return NULL;
		}
		p->rules = n;
		ps->rules_cap = cap;
	}
	struct policy_rule *r = &p->rules[p->n++];
	*r = (struct policy_rule){ .line = ps->line };
	return r;
}

static bool parse_line(struct parser *ps, const char *line, const char *end)
{
	for (const char *q = line; q < end; q++) {
		unsigned char c = (unsigned char)*q;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(ps, "control character 0x%02x", c);
	}
	/* Every word fits: decoding only ever shortens the line. */
	char buf[POLICY_LINE_MAX + 2];
	const char *value;
	const char *p = line;
	int rc = next_word(ps, &p, end, buf, &value);
	if (rc <= 0)
		return rc == 0;
	bool allow = !strcmp(buf, "allow");
	if (!allow && strcmp(buf, "deny") != 0)
		return fail(ps, "a rule starts with allow or deny, not '%s'", buf);
	if (value)
		return fail(ps, "a rule starts with allow or deny, not '%s='", buf);
	struct policy_rule *r = new_rule(ps);
	if (!r)
		return false;
	r->allow = allow;
	while ((rc = next_word(ps, &p, end, buf, &value)) == 1)
		if (!word(ps, r, buf, value))
			return false;
	if (rc < 0)
		return false;
	if (allow && !r->rights)
		return fail(ps, "allow without a right (" RIGHTS_HELP ")");
	/* whatever may be used may be seen */
	if (r->rights)
		r->rights |= POLICY_LIST;
	return true;
}

struct policy *policy_parse(const char *text, size_t len, const char *source,
			    const struct policy_names *names, char *err, size_t err_cap)
{
	struct parser ps = { .source = source, .names = names, .err = err, .err_cap = err_cap };
	if (err_cap)
		err[0] = '\0';
	ps.p = calloc(1, sizeof(*ps.p));
	if (!ps.p || !(ps.p->source = strdup(source))) {
		free(ps.p);
		if (err_cap)
			snprintf(err, err_cap, "%s: out of memory", source);
		return NULL;
	}
	const char *end = text + len;
	for (const char *line = text; line < end;) {
		ps.line++;
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *stop = nl ? nl : end;
		if (stop > line && stop[-1] == '\r')
			stop--;
		if ((size_t)(stop - line) > POLICY_LINE_MAX) {
			fail(&ps, "line longer than %u bytes", POLICY_LINE_MAX);
			goto bad;
		}
		if (!parse_line(&ps, line, stop))
			goto bad;
		line = nl ? nl + 1 : end;
	}
	return ps.p;
bad:
	policy_free(ps.p);
	return NULL;
}

struct policy *policy_load(const char *path, char *err, size_t err_cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		snprintf(err, err_cap, "%s: %s", path, strerror(e));
		errno = e;
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)POLICY_FILE_MAX) {
		snprintf(err, err_cap, "%s: not a regular file of at most %u bytes", path,
			 POLICY_FILE_MAX);
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	char *text = malloc(POLICY_FILE_MAX + 1);
	size_t len = 0;
	ssize_t n = 0;
	while (text && len <= POLICY_FILE_MAX &&
	       ((n = read(fd, text + len, POLICY_FILE_MAX + 1 - len)) > 0 ||
		(n < 0 && errno == EINTR)))
		if (n > 0)
			len += (size_t)n;
	int e = errno;
	close(fd);
	if (!text || n < 0 || len > POLICY_FILE_MAX) {
		snprintf(err, err_cap, "%s: %s", path,
			 !text   ? "out of memory"
			 : n < 0 ? strerror(e)
				 : "grew while read");
		free(text);
		errno = EINVAL;
		return NULL;
	}
	struct policy *p = policy_parse(text, len, path, NULL, err, err_cap);
	free(text);
	if (!p)
		errno = EINVAL;
	return p;
}
