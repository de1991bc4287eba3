/*
 * The card's command interpreter: ISO 7816-4 interindustry commands over
 * T=0 or T=1, with ISO 7816-3's handling of Le on T=0 (61xx, 6Cxx, GET
 * RESPONSE).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "vcard_internal.h"

#define SW_OK 0x9000
#define SW_EOF_BEFORE_LE 0x6282
#define SW_PIN_TRIES(n) (0x63C0 | ((n)&0x0F))
#define SW_WRONG_LENGTH 0x6700
#define SW_LOGICAL_CHANNEL 0x6881
#define SW_SECURE_MESSAGING 0x6882
#define SW_CHAINING 0x6884
#define SW_SECURITY 0x6982
#define SW_PIN_BLOCKED 0x6983
#define SW_CONDITIONS 0x6985
#define SW_NO_CURRENT_EF 0x6986
#define SW_FILE_NOT_FOUND 0x6A82
#define SW_FILE_FULL 0x6A84
#define SW_INCORRECT_P1P2 0x6A86
#define SW_REF_NOT_FOUND 0x6A88
#define SW_WRONG_P1P2 0x6B00
#define SW_INS 0x6D00
#define SW_CLA 0x6E00

#define INS_SELECT 0xA4
#define INS_READ_BINARY 0xB0
#define INS_UPDATE_BINARY 0xD6
#define INS_GET_CHALLENGE 0x84
#define INS_VERIFY 0x20
#define INS_GET_RESPONSE 0xC0

/* A command APDU split along ISO 7816-3's cases. */
struct apdu {
	uint8_t cla, ins, p1, p2;
	const uint8_t *data;
	size_t nc;
	bool has_le;
	size_t ne;        /* 256 / 65536 for a zero Le */
	bool le_wildcard; /* Le was 00 (or 0000): "as much as there is" */
	bool extended;
};

/* The answer being built: data (up to ne bytes) and a status word. */
struct answer {
	uint8_t *buf; /* VCARD_MAX_RESPONSE bytes */
	size_t len;
	uint16_t sw;
};

/* Returns false if the length does not match any case (SW 6700). */
static bool parse_apdu(const uint8_t *b, size_t len, struct apdu *a)
{
	memset(a, 0, sizeof(*a));
	if (len < 4)
		return false;
	a->cla = b[0];
	a->ins = b[1];
	a->p1 = b[2];
	a->p2 = b[3];
	if (len == 4)
		return true; /* case 1 */
	if (len == 5) {      /* case 2 short */
		a->has_le = true;
		a->ne = b[4] ? b[4] : 256;
		a->le_wildcard = b[4] == 0;
		return true;
	}
	if (b[4] != 0) { /* short Lc */
		size_t lc = b[4];
		if (len == 5 + lc) {
			a->data = b + 5;
			a->nc = lc;
			return true;
		}
		if (len == 6 + lc) {
			a->data = b + 5;
			a->nc = lc;
			a->has_le = true;
			a->ne = b[5 + lc] ? b[5 + lc] : 256;
			a->le_wildcard = b[5 + lc] == 0;
			return true;
		}
		return false;
	}
	/* extended: 00 then two length bytes */
	if (len < 7)
		return false;
	a->extended = true;
	size_t n = (size_t)b[5] << 8 | b[6];
	if (len == 7) {
		a->has_le = true;
		a->ne = n ? n : 65536;
		a->le_wildcard = n == 0;
		return true;
	}
	if (n == 0)
		return false;
	if (len == 7 + n) {
		a->data = b + 7;
		a->nc = n;
		return true;
	}
	if (len == 9 + n) {
		a->data = b + 7;
		a->nc = n;
		size_t le = (size_t)b[7 + n] << 8 | b[8 + n];
		a->has_le = true;
		a->ne = le ? le : 65536;
		a->le_wildcard = le == 0;
		return true;
	}
	return false;
}

/* ---- accessors and reset ---- */

const uint8_t *vcard_atr(const struct vcard *card, size_t *len)
{
	*len = card->atr_len;
	return card->atr;
}

unsigned vcard_protocols(const struct vcard *card)
{
	return card->protocols;
}

int vcard_default_protocol(const struct vcard *card)
{
	return card->first_protocol;
}

void vcard_clear_pending(struct vcard *card)
{
	free(card->pending);
	card->pending = NULL;
	card->pending_len = card->pending_off = 0;
}

void vcard_reset(struct vcard *card)
{
	for (size_t i = 0; i < card->n_pins; i++)
		card->pins[i].verified = false;
	card->cur_df = card->mf;
	card->cur_ef = NULL;
	vcard_clear_pending(card);
}

/* ---- file system ---- */

static struct vfile *child(struct vfile *df, uint16_t fid, int kind)
{
	for (struct vfile *f = df->children; f; f = f->next)
		if (f->fid == fid && (kind < 0 || (int)f->kind == kind))
			return f;
	return NULL;
}

/* SELECT by FID: the MF, the current DF, its children, its parent, the parent's children. */
static struct vfile *find_by_fid(struct vcard *c, uint16_t fid)
{
	if (fid == VCARD_FID_MF)
		return c->mf;
	struct vfile *df = c->cur_df;
	if (df->fid == fid)
		return df;
	struct vfile *f = child(df, fid, -1);
	if (f)
		return f;
	if (df->parent) {
		if (df->parent->fid == fid)
			return df->parent;
		return child(df->parent, fid, -1);
	}
	return NULL;
}

static struct vfile *find_by_aid(struct vfile *df, const uint8_t *aid, size_t len)
{
	/* a name matches when the given bytes are all of it or a prefix of it */
	if (df->aid_len && len <= df->aid_len && memcmp(df->aid, aid, len) == 0)
		return df;
	for (struct vfile *f = df->children; f; f = f->next) {
		if (f->kind != VFILE_DF)
			continue;
		struct vfile *hit = find_by_aid(f, aid, len);
		if (hit)
			return hit;
	}
	return NULL;
}

static struct vfile *find_by_path(struct vfile *start, const uint8_t *p, size_t len)
{
	struct vfile *f = start;
	for (size_t i = 0; i < len; i += 2) {
		uint16_t fid = (uint16_t)(p[i] << 8 | p[i + 1]);
		if (!f || f->kind != VFILE_DF)
			return NULL;
		f = child(f, fid, -1);
	}
	return f;
}

static void tlv(struct answer *r, uint8_t tag, const uint8_t *v, size_t len)
{
	r->buf[r->len++] = tag;
	r->buf[r->len++] = (uint8_t)len;
	memcpy(r->buf + r->len, v, len);
	r->len += len;
}

/* FCP (62) or FCI (6F) template describing f; template 64 (FMD) is empty. */
static void file_info(struct answer *r, const struct vfile *f, uint8_t template)
{
	size_t start = r->len;
	r->buf[r->len++] = template;
	r->buf[r->len++] = 0;
	if (template == 0x64)
		return;
	uint8_t v[2];
	if (f->kind == VFILE_EF) {
		v[0] = (uint8_t)(f->size >> 8);
		v[1] = (uint8_t)f->size;
		tlv(r, 0x80, v, 2);
	}
	v[0] = f->kind == VFILE_DF ? 0x38 : 0x01; /* DF, or working EF transparent */
	tlv(r, 0x82, v, 1);
	v[0] = (uint8_t)(f->fid >> 8);
	v[1] = (uint8_t)f->fid;
	tlv(r, 0x83, v, 2);
	if (f->kind == VFILE_DF && f->aid_len)
		tlv(r, 0x84, f->aid, f->aid_len);
	if (f->kind == VFILE_EF && f->sfi) {
		v[0] = (uint8_t)(f->sfi << 3);
		tlv(r, 0x88, v, 1);
	}
	v[0] = 0x05; /* life cycle: operational, activated */
	tlv(r, 0x8A, v, 1);
	r->buf[start + 1] = (uint8_t)(r->len - start - 2);
}

static void cmd_select(struct vcard *c, const struct apdu *a, struct answer *r)
{
	if (a->p2 & ~0x0Cu & 0xFF) {
		r->sw = SW_INCORRECT_P1P2; /* only "first or only occurrence" */
		return;
	}
	struct vfile *f = NULL;
	switch (a->p1) {
	case 0x00: /* MF, DF or EF by identifier */
		if (a->nc == 0)
			f = c->mf;
		else if (a->nc == 2)
			f = find_by_fid(c, (uint16_t)(a->data[0] << 8 | a->data[1]));
		else {
			r->sw = SW_WRONG_LENGTH;
			return;
		}
		break;
	case 0x01: /* child DF */
	case 0x02: /* EF under the current DF */
		if (a->nc != 2) {
			r->sw = SW_WRONG_LENGTH;
			return;
		}
		f = child(c->cur_df, (uint16_t)(a->data[0] << 8 | a->data[1]),
			  a->p1 == 0x01 ? VFILE_DF : VFILE_EF);
		break;
	case 0x03: /* parent DF */
		if (a->nc != 0) {
			r->sw = SW_WRONG_LENGTH;
			return;
		}
		f = c->cur_ef ? c->cur_df : c->cur_df->parent;
		break;
	case 0x04: /* DF name */
		if (a->nc > VCARD_MAX_AID) {
			r->sw = SW_WRONG_LENGTH;
			return;
		}
		f = a->nc == 0 ? c->mf : find_by_aid(c->mf, a->data, a->nc);
		break;
	case 0x08: /* path from the MF */
	case 0x09: /* path from the current DF */
		if (a->nc == 0 || a->nc % 2) {
			r->sw = SW_WRONG_LENGTH;
			return;
		} else {
			const uint8_t *p = a->data;
			size_t n = a->nc;
			struct vfile *start = a->p1 == 0x08 ? c->mf : c->cur_df;
			if (a->p1 == 0x08 && p[0] == 0x3F && p[1] == 0x00) {
				p += 2;
				n -= 2;
			}
			f = find_by_path(start, p, n);
		}
		break;
	default: r->sw = SW_INCORRECT_P1P2; return;
	}
	if (!f) {
		r->sw = SW_FILE_NOT_FOUND;
		return;
	}
	if (f->kind == VFILE_DF) {
		c->cur_df = f;
		c->cur_ef = NULL;
	} else {
		c->cur_df = f->parent;
		c->cur_ef = f;
	}
	switch (a->p2 & 0x0C) {
	case 0x00: file_info(r, f, 0x6F); break;
	case 0x04: file_info(r, f, 0x62); break;
	case 0x08: file_info(r, f, 0x64); break;
	default: break; /* 0C: no response data */
	}
	r->sw = SW_OK;
}

static bool access_ok(struct vcard *c, const struct vaccess *acc)
{
	if (acc->kind == VACCESS_ALWAYS)
		return true;
	if (acc->kind == VACCESS_NEVER)
		return false;
	struct vpin *pin = vcard_find_pin(c, acc->pin_ref);
	return pin && pin->verified;
}

/*
 * The EF and offset of READ/UPDATE BINARY: P1 bit 8 set means a short EF
 * identifier in P1 (which then becomes the current EF) and an offset in P2.
 */
static struct vfile *binary_target(struct vcard *c, const struct apdu *a, size_t *offset,
				   struct answer *r)
{
	if (a->p1 & 0x80) {
		if (a->p1 & 0x60) {
			r->sw = SW_INCORRECT_P1P2;
			return NULL;
		}
		uint8_t sfi = a->p1 & 0x1F;
		struct vfile *f = NULL;
		for (struct vfile *k = c->cur_df->children; k && sfi; k = k->next)
			if (k->kind == VFILE_EF && k->sfi == sfi)
				f = k;
		if (!f) {
			r->sw = SW_FILE_NOT_FOUND;
			return NULL;
		}
		c->cur_ef = f;
		*offset = a->p2;
		return f;
	}
	if (!c->cur_ef) {
		r->sw = SW_NO_CURRENT_EF;
		return NULL;
	}
	*offset = (size_t)(a->p1 & 0x7F) << 8 | a->p2;
	return c->cur_ef;
}

static void cmd_read_binary(struct vcard *c, const struct apdu *a, struct answer *r)
{
	if (a->nc || !a->has_le) {
		r->sw = SW_WRONG_LENGTH;
		return;
	}
	size_t offset;
	struct vfile *f = binary_target(c, a, &offset, r);
	if (!f)
		return;
	if (!access_ok(c, &f->read)) {
		r->sw = SW_SECURITY;
		return;
	}
	if (offset > f->size || (offset == f->size && f->size)) {
		r->sw = SW_WRONG_P1P2;
		return;
	}
	size_t avail = f->size - offset;
	size_t n = avail < a->ne ? avail : a->ne;
	memcpy(r->buf, f->data + offset, n);
	r->len = n;
	/* fewer bytes than an explicit Le asked for: warn (a wildcard Le asks for "all") */
	r->sw = (n < a->ne && (!a->le_wildcard || n == 0)) ? SW_EOF_BEFORE_LE : SW_OK;
}

static void cmd_update_binary(struct vcard *c, const struct apdu *a, struct answer *r)
{
	if (a->nc == 0) {
		r->sw = SW_WRONG_LENGTH;
		return;
	}
	size_t offset;
	struct vfile *f = binary_target(c, a, &offset, r);
	if (!f)
		return;
	if (!access_ok(c, &f->write)) {
		r->sw = SW_SECURITY;
		return;
	}
	if (offset >= f->size) {
		r->sw = SW_WRONG_P1P2;
		return;
	}
	if (a->nc > f->size - offset) {
		r->sw = SW_FILE_FULL;
		return;
	}
	memcpy(f->data + offset, a->data, a->nc);
	r->sw = SW_OK;
}

static void random_bytes(uint8_t *out, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = getrandom(out + got, n - got, 0);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		got += (size_t)k;
	}
	/* getrandom cannot fail on Linux >= 3.17 with a small n; never leave
	 * bytes uninitialised if it somehow does */
	for (; got < n; got++)
		out[got] = (uint8_t)rand();
}

static void cmd_get_challenge(const struct apdu *a, struct answer *r)
{
	if (a->p1 || a->p2) {
		r->sw = SW_INCORRECT_P1P2;
		return;
	}
	if (a->nc || !a->has_le || a->ne > 256) {
		r->sw = SW_WRONG_LENGTH;
		return;
	}
	random_bytes(r->buf, a->ne);
	r->len = a->ne;
	r->sw = SW_OK;
}

/* Compares without an early exit, so timing does not tell how much matched. */
static bool same_pin(const struct vpin *pin, const uint8_t *v, size_t len)
{
	if (len != pin->len)
		return false;
	uint8_t diff = 0;
	for (size_t i = 0; i < len; i++)
		diff |= (uint8_t)(pin->value[i] ^ v[i]);
	return diff == 0;
}

static void cmd_verify(struct vcard *c, const struct apdu *a, struct answer *r)
{
	if (a->p1 != 0x00 && a->p1 != 0xFF) {
		r->sw = SW_INCORRECT_P1P2;
		return;
	}
	struct vpin *pin = vcard_find_pin(c, a->p2);
	if (!pin) {
		r->sw = SW_REF_NOT_FOUND;
		return;
	}
	if (a->p1 == 0xFF) { /* drop the verified state */
		if (a->nc) {
			r->sw = SW_WRONG_LENGTH;
			return;
		}
		pin->verified = false;
		r->sw = SW_OK;
		return;
	}
	if (a->nc > VCARD_MAX_PIN_LEN) {
		r->sw = SW_WRONG_LENGTH;
		return;
	}
	if (pin->tries_left == 0) {
		r->sw = SW_PIN_BLOCKED;
		return;
	}
	if (a->nc == 0) { /* status query */
		r->sw = pin->verified ? SW_OK : SW_PIN_TRIES(pin->tries_left);
		return;
	}
	if (same_pin(pin, a->data, a->nc)) {
		pin->tries_left = pin->max_tries;
		pin->verified = true;
		r->sw = SW_OK;
		return;
	}
	pin->tries_left--;
	pin->verified = false;
	r->sw = SW_PIN_TRIES(pin->tries_left);
}

/* GET RESPONSE hands out what a T=0 command left behind, Le bytes at a time. */
static void cmd_get_response(struct vcard *c, int protocol, const struct apdu *a, struct answer *r)
{
	if (a->p1 || a->p2) {
		r->sw = SW_WRONG_P1P2;
		return;
	}
	if (a->nc || !a->has_le) {
		r->sw = SW_WRONG_LENGTH;
		return;
	}
	if (!c->pending) {
		r->sw = SW_CONDITIONS;
		return;
	}
	size_t avail = c->pending_len - c->pending_off;
	if (protocol == VCARD_T0 && a->ne > avail) {
		r->sw = (uint16_t)(0x6C00 | (avail & 0xFF)); /* retry with Le = avail */
		return;
	}
	size_t n = a->ne < avail ? a->ne : avail;
	memcpy(r->buf, c->pending + c->pending_off, n);
	r->len = n;
	c->pending_off += n;
	size_t left = c->pending_len - c->pending_off;
	if (left) {
		r->sw = (uint16_t)(0x6100 | (left > 255 ? 0 : left));
	} else {
		vcard_clear_pending(c);
		r->sw = SW_OK;
	}
}

/* CLA checks: interindustry only, no logical channels, no SM, no chaining. */
static uint16_t check_cla(uint8_t cla)
{
	if (cla == 0xFF || (cla & 0x80))
		return SW_CLA;
	if (cla & 0x40) { /* further interindustry: channels 4..19 */
		if (cla & 0x20)
			return SW_SECURE_MESSAGING;
		if (cla & 0x10)
			return SW_CHAINING;
		return SW_LOGICAL_CHANNEL;
	}
	if (cla & 0x10)
		return SW_CHAINING;
	if (cla & 0x0C)
		return SW_SECURE_MESSAGING;
	if (cla & 0x03)
		return SW_LOGICAL_CHANNEL;
	return 0;
}

/* Puts data + SW into out per the protocol's rules for Le. */
static size_t finish(struct vcard *c, int protocol, const struct apdu *a, struct answer *r,
		     uint8_t *out, size_t cap)
{
	size_t n = r->len;
	uint16_t sw = r->sw;
	bool data_sw = sw == SW_OK || sw == SW_EOF_BEFORE_LE;
	if (!data_sw)
		n = 0;
	if (protocol == VCARD_T0 && n) {
		if (a->nc == 0 && a->has_le) {
			/* case 2: P3 must equal the length the card has */
			if (n != a->ne) {
				sw = (uint16_t)(0x6C00 | (n & 0xFF));
				n = 0;
			} else if (sw == SW_EOF_BEFORE_LE) {
				sw = SW_OK;
			}
		} else {
			/* case 4 (or data the command did not ask Le for): 61xx + GET RESPONSE */
			uint8_t *keep = malloc(n);
			if (!keep) {
				sw = 0x6F00;
			} else {
				memcpy(keep, r->buf, n);
				c->pending = keep;
				c->pending_len = n;
				c->pending_off = 0;
				sw = (uint16_t)(0x6100 | (n > 255 ? 0 : n));
			}
			n = 0;
		}
	} else if (protocol != VCARD_T0 && !a->has_le) {
		n = 0; /* T=1 without Le: no response data expected */
	} else if (protocol != VCARD_T0 && n > a->ne) {
		/* more than Le: the rest waits for GET RESPONSE, as 61xx says */
		size_t rest = n - a->ne;
		uint8_t *keep = malloc(rest);
		if (keep) {
			memcpy(keep, r->buf + a->ne, rest);
			c->pending = keep;
			c->pending_len = rest;
			c->pending_off = 0;
			sw = (uint16_t)(0x6100 | (rest > 255 ? 0 : rest));
		}
		n = a->ne;
	}
	if (cap < n + 2)
		return 0;
	if (out != r->buf)
		memmove(out, r->buf, n);
	out[n] = (uint8_t)(sw >> 8);
	out[n + 1] = (uint8_t)sw;
	return n + 2;
}

static size_t status_only(uint16_t sw, uint8_t *out, size_t cap)
{
	if (cap < 2)
		return 0;
	out[0] = (uint8_t)(sw >> 8);
	out[1] = (uint8_t)sw;
	return 2;
}

size_t vcard_transmit(struct vcard *c, int protocol, const uint8_t *apdu, size_t len, uint8_t *out,
		      size_t cap)
{
	struct apdu a;
	if (!parse_apdu(apdu, len, &a) || (protocol == VCARD_T0 && a.extended)) {
		vcard_clear_pending(c);
		return status_only(SW_WRONG_LENGTH, out, cap);
	}
	uint16_t sw = check_cla(a.cla);
	if (sw) {
		vcard_clear_pending(c);
		return status_only(sw, out, cap);
	}
	uint8_t *buf = malloc(VCARD_MAX_RESPONSE);
	if (!buf)
		return status_only(0x6F00, out, cap);
	struct answer r = { .buf = buf, .sw = SW_INS };
	if (a.ins == INS_GET_RESPONSE) {
		cmd_get_response(c, protocol, &a, &r);
		/* the answer is already shaped; only bound it by Le */
		size_t n = (r.sw == SW_OK || (r.sw >> 8) == 0x61) ? r.len : 0;
		size_t ret = 0;
		if (cap >= n + 2) {
			memcpy(out, buf, n);
			out[n] = (uint8_t)(r.sw >> 8);
			out[n + 1] = (uint8_t)r.sw;
			ret = n + 2;
		}
		free(buf);
		return ret;
	}
	vcard_clear_pending(c);
	switch (a.ins) {
	case INS_SELECT: cmd_select(c, &a, &r); break;
	case INS_READ_BINARY: cmd_read_binary(c, &a, &r); break;
	case INS_UPDATE_BINARY: cmd_update_binary(c, &a, &r); break;
	case INS_GET_CHALLENGE: cmd_get_challenge(&a, &r); break;
	case INS_VERIFY: cmd_verify(c, &a, &r); break;
	default: r.sw = SW_INS; break;
	}
	size_t ret = finish(c, protocol, &a, &r, out, cap);
	free(buf);
	return ret;
}
