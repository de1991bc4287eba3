#include "vinstance.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct vcard *load_card(const char *name, char *err, size_t errlen)
{
	if (!strcmp(name, "builtin")) {
		struct vcard *c = vcard_builtin();
		if (!c)
			snprintf(err, errlen, "out of memory");
		return c;
	}
	return vcard_load(name, err, errlen);
}

struct vinstance *vinstance_new(struct vconfig *cfg, char *err, size_t errlen)
{
	struct vinstance *inst = calloc(1, sizeof(*inst));
	if (!inst) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	inst->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	inst->n_slots = inst->cfg.readers;
	for (unsigned i = 0; i < VCONFIG_MAX_READERS; i++)
		vslot_init(&inst->slots[i]);
	for (unsigned i = 0; i < inst->n_slots; i++) {
		struct vconfig_reader *r = &inst->cfg.reader[i];
		inst->slots[i].fast = r->fast;
		inst->slots[i].mute = r->mute;
		inst->slots[i].delay_ms = r->delay_ms;
		inst->slots[i].atr_delay_ms = r->atr_delay_ms;
		if (!r->card)
			continue;
		char why[512];
		struct vcard *c = load_card(r->card, why, sizeof(why));
		if (!c) {
			snprintf(err, errlen, "card.%u: %s", i, why);
			vinstance_close(inst);
			vinstance_free(inst);
			return NULL;
		}
		vslot_insert(&inst->slots[i], c, r->card);
	}
	return inst;
}

static void control_handler(void *ctx, const char *line, char *reply, size_t cap)
{
	vinstance_command(ctx, line, reply, cap);
}

int vinstance_start_control(struct vinstance *inst, char *err, size_t errlen)
{
	if (!inst->cfg.control)
		return 0;
	inst->control = vcontrol_start(inst->cfg.control, inst->cfg.control_mode, control_handler,
				       inst, err, errlen);
	return inst->control ? 0 : -1;
}

void vinstance_close(struct vinstance *inst)
{
	if (inst->closed)
		return;
	inst->closed = true;
	vcontrol_stop(inst->control);
	inst->control = NULL;
	for (unsigned i = 0; i < VCONFIG_MAX_READERS; i++) {
		vslot_close(&inst->slots[i]);
		vslot_remove(&inst->slots[i]);
	}
}

void vinstance_free(struct vinstance *inst)
{
	if (!inst)
		return;
	vinstance_close(inst);
	for (unsigned i = 0; i < VCONFIG_MAX_READERS; i++)
		vslot_destroy(&inst->slots[i]);
	vconfig_clear(&inst->cfg);
	free(inst);
}

/* ---- control commands ---- */

struct out {
	char *buf;
	size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	if (o->len >= o->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

#define MAX_WORDS 3

/* Splits on blanks; the last word takes the rest of the line (file names may hold spaces). */
static int split(char *s, char **w, int max)
{
	int n = 0;
	while (*s && n < max) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		w[n++] = s;
		if (n == max)
			break;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = 0;
	}
	if (n) { /* trailing blanks of the last word */
		size_t len = strlen(w[n - 1]);
		while (len && (w[n - 1][len - 1] == ' ' || w[n - 1][len - 1] == '\t'))
			w[n - 1][--len] = 0;
	}
	return n;
}

static bool parse_slot(struct vinstance *inst, const char *s, unsigned *slot, struct out *o)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || !*s || s[0] == '-' || s[0] == '+' || v >= inst->n_slots) {
		put(o, "error no reader %s here: this driver has %u reader%s (0..%u)\n", s,
		    inst->n_slots, inst->n_slots == 1 ? "" : "s", inst->n_slots - 1);
		return false;
	}
	*slot = (unsigned)v;
	return true;
}

static const char help_text[] =
	"insert N [FILE|builtin]  put a card in reader N (swap if one is there)\n"
	"remove N                 take the card out of reader N\n"
	"mute N | unmute N        the card in reader N stops / starts answering\n"
	"fast N on|off            reader N answers every command with 90 00\n"
	"status [N]               one line per reader\n"
	"version                  driver version\n";

void vinstance_command(struct vinstance *inst, const char *line, char *reply, size_t cap)
{
	struct out o = { reply, cap, 0 };
	if (cap)
		reply[0] = 0;
	char buf[VCONTROL_MAX_LINE + 1];
	snprintf(buf, sizeof(buf), "%s", line);
	char *w[MAX_WORDS];
	int n = split(buf, w, MAX_WORDS);
	unsigned slot;
	if (n == 0) {
		put(&o, "error empty command (try help)\n");
	} else if (!strcmp(w[0], "help")) {
		put(&o, "%sok\n", help_text);
	} else if (!strcmp(w[0], "version")) {
		put(&o, "ok ifd-virtual %s\n", VIRTUAL_VERSION);
	} else if (!strcmp(w[0], "status")) {
		if (n > 2) {
			put(&o, "error usage: status [N]\n");
			return;
		}
		unsigned first = 0, last = inst->n_slots;
		if (n == 2) {
			if (!parse_slot(inst, w[1], &slot, &o))
				return;
			first = slot;
			last = slot + 1;
		}
		for (unsigned i = first; i < last; i++) {
			char d[VCONTROL_MAX_LINE];
			vslot_describe(&inst->slots[i], i, d, sizeof(d));
			put(&o, "%s\n", d);
		}
		put(&o, "ok readers=%u\n", inst->n_slots);
	} else if (!strcmp(w[0], "insert")) {
		if (n < 2 || n > 3) {
			put(&o, "error usage: insert N [FILE|builtin]\n");
			return;
		}
		if (!parse_slot(inst, w[1], &slot, &o))
			return;
		const char *name = n == 3 ? w[2] : inst->cfg.reader[slot].card;
		if (!name)
			name = "builtin";
		char why[512];
		struct vcard *c = load_card(name, why, sizeof(why));
		if (!c) {
			put(&o, "error %s\n", why);
			return;
		}
		pthread_mutex_lock(&inst->slots[slot].lock);
		bool swap = inst->slots[slot].card;
		pthread_mutex_unlock(&inst->slots[slot].lock);
		vslot_insert(&inst->slots[slot], c, name);
		put(&o, "ok %s card in reader %u (%s)\n", swap ? "swapped" : "inserted", slot,
		    name);
	} else if (!strcmp(w[0], "remove")) {
		if (n != 2) {
			put(&o, "error usage: remove N\n");
			return;
		}
		if (!parse_slot(inst, w[1], &slot, &o))
			return;
		bool had = vslot_remove(&inst->slots[slot]);
		put(&o, "ok %s\n", had ? "removed" : "reader was already empty");
	} else if (!strcmp(w[0], "mute") || !strcmp(w[0], "unmute")) {
		if (n != 2) {
			put(&o, "error usage: %s N\n", w[0]);
			return;
		}
		if (!parse_slot(inst, w[1], &slot, &o))
			return;
		bool mute = w[0][0] == 'm';
		vslot_set_mute(&inst->slots[slot], mute);
		put(&o, "ok reader %u %s\n", slot, mute ? "muted" : "answers again");
	} else if (!strcmp(w[0], "fast")) {
		if (n != 3 || (strcmp(w[2], "on") && strcmp(w[2], "off"))) {
			put(&o, "error usage: fast N on|off\n");
			return;
		}
		if (!parse_slot(inst, w[1], &slot, &o))
			return;
		vslot_set_fast(&inst->slots[slot], w[2][1] == 'n');
		put(&o, "ok fast mode %s for reader %u\n", w[2], slot);
	} else {
		put(&o, "error unknown command '%.32s' (try help)\n", w[0]);
	}
}
