/* What `scard status` learns from scardd itself (see status_report.h). */
#include "status_report.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "config.h"
#include "daemon.h"
#include "event_loop.h"
#include "handles.h"
#include "log.h"
#include "readers.h"
#include "request_log.h"
#include "requests.h"
#include "session.h"
#include "socket_spec.h"
#include "wire.h"

#include <pcsclite.h>

/* Client and card lines stop this far below the limit, leaving room for the
 * reader lines; those stop a line's length below it. */
#define RESERVE 65536u
#define LINE_ROOM 1024u

static bool room_left(FILE *f, size_t keep)
{
	long at = ftell(f);
	return at >= 0 && (size_t)at <= WIRE_SCARDD_STATUS_MAX - keep;
}

/* A value as one field: tabs, newlines and other control bytes become '?'. */
static void put_value(FILE *f, const char *key, const char *value)
{
	fprintf(f, "\t%s=", key);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

/* The client's executable, or its command name when /proc hides the link. */
static void program_of(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	buf[0] = '\0';
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, buf, cap - 1);
	if (n > 0) {
		buf[n] = '\0';
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, (int)cap, f))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

static bool may_see(const struct session *asker, const struct session *s)
{
	if (!asker || asker->uid == 0 || asker->uid == geteuid())
		return true;
	return s->uid == asker->uid;
}

static void write_socket(FILE *f, const struct socket_spec *spec)
{
	char readers[16] = "auto", names[16], mode[16];
	if (spec->readers)
		snprintf(readers, sizeof(readers), "%u", spec->readers);
	snprintf(names, sizeof(names), "%u", spec->name_len);
	snprintf(mode, sizeof(mode), "%04o", spec->mode);
	fputs("socket", f);
	put_value(f, "path", spec->path);
	put_value(f, "readers", readers);
	put_value(f, "names", names);
	put_value(f, "prefer", spec->prefer);
	put_value(f, "mode", mode);
	put_value(f, "group", spec->group);
	fputc('\n', f);
}

static void write_client(FILE *f, struct session *s)
{
	const struct wire_proto *p = s->params.proto;
	char program[256], arrays[16], version[24];
	program_of(s->pid, program, sizeof(program));
	/* the number alone: names= tells the older 4:2 layout apart */
	snprintf(version, sizeof(version), "%d:%d", (int)p->major, (int)p->minor);
	if (!s->versioned)
		snprintf(arrays, sizeof(arrays), "none");
	else if (wire_cmd_lookup(p, WIRE_GET_READERS_STATE_ARRAY))
		snprintf(arrays, sizeof(arrays), "sized");
	else
		snprintf(arrays, sizeof(arrays), "%u", legacy_slots(s));
	fprintf(f, "client\tid=%" PRIu64 "\tpid=%d\tuid=%u", s->id, (int)s->pid, (unsigned)s->uid);
	put_value(f, "program", program);
	put_value(f, "socket", s->sock->path);
	put_value(f, "protocol", s->versioned ? version : "none");
	put_value(f, "order", s->params.order == WIRE_BIG_ENDIAN ? "big-endian" : "little-endian");
	put_value(f, "arrays", arrays);
	fprintf(f, "\tnames=%u\tcontexts=%d\tcards=%zu\twaiting=%s\n", p->reader_name_len,
		s->has_context ? 1 : 0, s->handles.n, s->waiting ? "yes" : "no");
}

static const char *share_name(uint32_t mode)
{
	return mode == SCARD_SHARE_EXCLUSIVE ? "exclusive"
	       : mode == SCARD_SHARE_DIRECT  ? "direct"
					     : "shared";
}

static const char *protocol_name(uint32_t protocol)
{
	return protocol == SCARD_PROTOCOL_T0    ? "T=0"
	       : protocol == SCARD_PROTOCOL_T1  ? "T=1"
	       : protocol == SCARD_PROTOCOL_RAW ? "raw"
						: "none";
}

/* With a policy, the asker is told only of readers it may see (access.h). */
static bool shown(const struct session *asker, const struct reader *r)
{
	return !asker || !r || access_sees((void *)asker, r);
}

/* One line per card handle the client holds; returns how many had no room. */
static size_t write_cards(FILE *f, const struct session *s, const struct session *asker)
{
	size_t left_out = 0;
	for (const struct handle *h = s->handles.head; h; h = h->next_in_owner) {
		const struct reader *r = h->reader;
		if (!shown(asker, r))
			continue;
		if (!room_left(f, RESERVE)) {
			left_out++;
			continue;
		}
		fprintf(f, "card\tclient=%" PRIu64, s->id);
		put_value(f, "reader", r ? r->name : "");
		put_value(f, "share", share_name(h->share_mode));
		put_value(f, "protocol", protocol_name(h->protocol));
		put_value(f, "transaction", r && r->lock_holder == h ? "yes" : "no");
		fputc('\n', f);
	}
	return left_out;
}

static const struct session *holder_of(const struct handle *h)
{
	return (const struct session *)((const char *)h->owner - offsetof(struct session, handles));
}

/* "3", "hidden" (another user's client), or "none". */
static void put_holder(FILE *f, const char *key, const struct handle *h,
		       const struct session *asker)
{
	char id[24] = "none";
	if (h && may_see(asker, holder_of(h)))
		snprintf(id, sizeof(id), "%" PRIu64, holder_of(h)->id);
	else if (h)
		snprintf(id, sizeof(id), "hidden");
	put_value(f, key, id);
}

/*
 * Who holds each reader in use: every client may ask whose card it is
 * (reader names are public to clients); another user's client is "hidden".
 */
static void write_readers(FILE *f, const struct readers *rs, const struct session *asker)
{
	for (size_t i = 0; i < rs->cap; i++) {
		const struct reader *r = rs->slots[i];
		if (!r || !r->handles || !shown(asker, r) || !room_left(f, LINE_ROOM))
			continue;
		size_t n = 0;
		const struct handle *exclusive = NULL;
		for (const struct handle *h = r->handles; h; h = h->next_in_reader) {
			n++;
			if (h->share_mode == SCARD_SHARE_EXCLUSIVE)
				exclusive = h;
		}
		fputs("reader", f);
		put_value(f, "name", r->name);
		fprintf(f, "\thandles=%zu", n);
		put_holder(f, "exclusive", exclusive, asker);
		put_holder(f, "transaction", r->lock_holder, asker);
		fputc('\n', f);
	}
}

void status_report_write(FILE *f, struct daemon *d, const struct session *asker)
{
	size_t clients = 0, hidden = 0;
	for (const struct session *s = d->sessions; s; s = s->next) {
		if (s == asker || s->closing)
			continue;
		clients++;
		if (!may_see(asker, s))
			hidden++;
	}
	fprintf(f,
		"scardd\tversion=%s\tpid=%d\tuid=%u\tstarted=%" PRId64 "\tuptime_ms=%" PRIu64
		"\tclients=%zu\thidden=%zu\n",
		SCARDD_VERSION, (int)getpid(), (unsigned)geteuid(), d->started_at,
		el_now_ms() - d->started_ms, clients, hidden);
	for (size_t i = 0; i < d->n_sockets; i++)
		write_socket(f, d->sockets[i].spec);
	size_t left_out = 0, cards_left_out = 0;
	for (struct session *s = d->sessions; s; s = s->next) {
		if (s == asker || s->closing || !may_see(asker, s))
			continue;
		if (!room_left(f, RESERVE)) {
			left_out++;
			continue;
		}
		write_client(f, s);
		cards_left_out += write_cards(f, s, asker);
	}
	if (left_out || cards_left_out)
		fprintf(f, "more\tclients=%zu\tcards=%zu\n", left_out, cards_left_out);
	write_readers(f, &d->readers, asker);
}

void status_report_send(struct session *asker)
{
	if (access_refused(asker)) { /* as for its first request: nothing to learn */
		session_fail(asker, "its status query is refused by the access policy");
		return;
	}
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f) {
		session_fail(asker, "out of memory for its status report");
		return;
	}
	fwrite("\0\0\0\0", 1, 4, f); /* the length, filled in below */
	status_report_write(f, asker->d, asker);
	if (fclose(f) != 0 || !text || len < 4) {
		free(text);
		session_fail(asker, "out of memory for its status report");
		return;
	}
	wire_put_u32(asker->params.order, (uint8_t *)text, (uint32_t)(len - 4));
	session_send(asker, text, len);
	free(text);
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		char who[96];
		request_log_client(who, sizeof(who), asker->id, asker->pid, asker->uid);
		log_debug("%s: SCARDD_STATUS: answered (%zu bytes)", who, len - 4);
	}
}
