/* scard status: card handles and reader holders (see status_holders.h). */
#include "status_holders.h"

#include <stdio.h>
#include <string.h>

#include "scard.h"

static bool is(const struct report_line *l, const char *kind)
{
	return !strcmp(l->kind, kind);
}

void holders_print_cards(const struct daemon_report *r, const char *client_id)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct report_line *l = &r->lines[i];
		if (!is(l, "card") || strcmp(report_get(l, "client"), client_id))
			continue;
		const char *proto = report_get(l, "protocol");
		printf("      \"%s\": %s", report_get(l, "reader"), report_get(l, "share"));
		if (strcmp(proto, "none"))
			printf(", %s", proto);
		if (!strcmp(report_get(l, "transaction"), "yes"))
			printf(", in a transaction");
		printf("\n");
	}
}

/* "client 3", "a client of another user", or NULL for none. */
static const char *holder_words(const char *id, char *buf, size_t cap)
{
	if (!*id || !strcmp(id, "none"))
		return NULL;
	if (!strcmp(id, "hidden"))
		return "a client of another user";
	snprintf(buf, cap, "client %s", id);
	return buf;
}

void holders_print_readers(const struct daemon_report *r)
{
	bool any = false;
	for (size_t i = 0; i < r->n; i++) {
		const struct report_line *l = &r->lines[i];
		if (!is(l, "reader"))
			continue;
		if (!any)
			printf("readers in use:\n");
		any = true;
		const char *n = report_get(l, "handles");
		char a[48], b[48];
		const char *excl = holder_words(report_get(l, "exclusive"), a, sizeof(a));
		const char *tx = holder_words(report_get(l, "transaction"), b, sizeof(b));
		printf("  \"%s\": %s handle%s", report_get(l, "name"), n,
		       strcmp(n, "1") ? "s" : "");
		if (excl)
			printf("; exclusive to %s", excl);
		if (tx)
			printf("; in a transaction of %s", tx);
		printf("\n");
	}
}

void holders_json_cards(const struct daemon_report *r, const char *client_id)
{
	printf(",\"handles\":[");
	bool first = true;
	for (size_t i = 0; i < r->n; i++) {
		const struct report_line *l = &r->lines[i];
		if (!is(l, "card") || strcmp(report_get(l, "client"), client_id))
			continue;
		printf("%s{\"reader\":", first ? "" : ",");
		json_str(stdout, report_get(l, "reader"));
		printf(",\"share\":");
		json_str(stdout, report_get(l, "share"));
		printf(",\"protocol\":");
		if (strcmp(report_get(l, "protocol"), "none"))
			json_str(stdout, report_get(l, "protocol"));
		else
			printf("null");
		printf(",\"transaction\":%s}",
		       strcmp(report_get(l, "transaction"), "yes") ? "false" : "true");
		first = false;
	}
	printf("]");
}

void holders_json_readers(const struct daemon_report *r)
{
	printf(",\"readers_in_use\":[");
	bool first = true;
	for (size_t i = 0; i < r->n; i++) {
		const struct report_line *l = &r->lines[i];
		if (!is(l, "reader"))
			continue;
		printf("%s{\"name\":", first ? "" : ",");
		json_str(stdout, report_get(l, "name"));
		const char *n = report_get(l, "handles");
		printf(",\"handles\":%s,\"exclusive\":", all_digits(n) ? n : "null");
		json_number_or_word(report_get(l, "exclusive"));
		printf(",\"transaction\":");
		json_number_or_word(report_get(l, "transaction"));
		printf("}");
		first = false;
	}
	printf("]");
}
