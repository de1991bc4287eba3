/*
 * scard send: APDUs in hex to a card, answers out with their status words
 * explained. Over T=0 a 61xx answer is followed by GET RESPONSE and a 6Cxx
 * answer by the same command with the right Le, as a terminal would do it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "scard.h"
#include "vcard.h"

#define MAX_APDU (4 + 3 + 65536 + 3)
#define MAX_RESP (65536 + 2)
#define MAX_STEPS 64 /* GET RESPONSE rounds for one command */

struct apdu_list {
	uint8_t **cmd;
	size_t *len;
	size_t n, cap;
};

static int add_apdu(struct apdu_list *l, const char *text, const char *where)
{
	uint8_t *buf = malloc(MAX_APDU);
	if (!buf)
		return EXIT_ERROR;
	long n = parse_hex(text, buf, MAX_APDU);
	if (n < 4) {
		err_msg("%s: '%.40s' is not an APDU (hex, at least 4 bytes: CLA INS P1 P2)", where,
			text);
		free(buf);
		return EXIT_USAGE;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		uint8_t **c = realloc(l->cmd, cap * sizeof(*c));
		if (c)
			l->cmd = c;
		size_t *ln = c ? realloc(l->len, cap * sizeof(*ln)) : NULL;
		if (!c || !ln) {
			free(buf);
			return EXIT_ERROR;
		}
		l->len = ln;
		l->cap = cap;
	}
	l->cmd[l->n] = buf;
	l->len[l->n++] = (size_t)n;
	return EXIT_OK;
}

static int read_script(struct apdu_list *l, const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!f) {
		err_msg("cannot open %s: %s", path, strerror(errno));
		return EXIT_USAGE;
	}
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = EXIT_OK;
	while (rc == EXIT_OK && getline(&line, &cap, f) >= 0) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		bool blank = true;
		for (char *p = line; *p && blank; p++)
			blank = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
		if (blank)
			continue;
		char where[64];
		snprintf(where, sizeof(where), "%s line %u", path, lineno);
		rc = add_apdu(l, line, where);
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return rc;
}

struct step {
	uint8_t *cmd;
	size_t cmd_len;
	uint8_t *resp;
	size_t resp_len;
	const char *why; /* NULL for the user's command */
};

static void print_step_human(const struct step *s)
{
	printf("> ");
	print_hex(stdout, s->cmd, s->cmd_len);
	if (s->why)
		printf("   (%s)", s->why);
	printf("\n< ");
	print_hex(stdout, s->resp, s->resp_len);
	uint16_t sw = (uint16_t)(s->resp[s->resp_len - 2] << 8 | s->resp[s->resp_len - 1]);
	printf("   %s\n", vcard_sw_text(sw));
}

static void print_steps_json(const struct step *steps, size_t n)
{
	printf("[");
	for (size_t i = 0; i < n; i++) {
		printf("%s{\"command\":", i ? "," : "");
		json_hex(stdout, steps[i].cmd, steps[i].cmd_len);
		printf(",\"response\":");
		json_hex(stdout, steps[i].resp, steps[i].resp_len);
		printf(",\"why\":");
		if (steps[i].why)
			json_str(stdout, steps[i].why);
		else
			printf("null");
		printf("}");
	}
	printf("]");
}

static void free_steps(struct step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(steps[i].cmd);
		free(steps[i].resp);
	}
}

/*
 * Runs one command with the T=0 follow-ups. Fills steps, the data collected
 * over all of them and the final SW. Returns a PC/SC error or success.
 */
static LONG exchange(SCARDHANDLE h, DWORD proto, bool raw, const uint8_t *cmd, size_t cmd_len,
		     struct step *steps, size_t *n_steps, uint8_t *data, size_t *data_len,
		     uint16_t *sw)
{
	const SCARD_IO_REQUEST *pci = proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	*n_steps = 0;
	*data_len = 0;
	uint8_t cur[MAX_APDU];
	size_t cur_len = cmd_len;
	memcpy(cur, cmd, cmd_len);
	const char *why = NULL;
	bool retried_le = false;
	while (*n_steps < MAX_STEPS) {
		uint8_t *resp = malloc(MAX_RESP);
		uint8_t *copy = malloc(cur_len);
		if (!resp || !copy) {
			free(resp);
			free(copy);
			return SCARD_E_NO_MEMORY;
		}
		DWORD rlen = MAX_RESP;
		LONG rv = SCardTransmit(h, pci, cur, (DWORD)cur_len, NULL, resp, &rlen);
		if (rv != SCARD_S_SUCCESS || rlen < 2) {
			free(resp);
			free(copy);
			return rv != SCARD_S_SUCCESS ? rv : (LONG)SCARD_F_COMM_ERROR;
		}
		memcpy(copy, cur, cur_len);
		steps[*n_steps] = (struct step){ copy, cur_len, resp, rlen, why };
		(*n_steps)++;
		memcpy(data + *data_len, resp, rlen - 2);
		*data_len += rlen - 2;
		uint8_t sw1 = resp[rlen - 2], sw2 = resp[rlen - 1];
		*sw = (uint16_t)(sw1 << 8 | sw2);
		if (raw)
			break;
		if (sw1 == 0x61) {
			/* the card holds more: fetch it with GET RESPONSE */
			cur[0] = cmd[0] & 0x03; /* keep the logical channel, drop the rest */
			cur[1] = 0xC0;
			cur[2] = cur[3] = 0;
			cur[4] = sw2;
			cur_len = 5;
			why = "GET RESPONSE for 61xx";
			continue;
		}
		bool has_le = cur_len == 5 || (cur_len > 5 && cur[4] && cur_len == 6u + cur[4]);
		if (sw1 == 0x6C && !retried_le && has_le && cur[1] != 0xC0) {
			/* wrong Le: send the same command again with the Le the card gave */
			cur[cur_len - 1] = sw2;
			retried_le = true;
			*data_len -= rlen - 2;
			why = "same command, Le from 6Cxx";
			continue;
		}
		if (sw1 == 0x6C && cur[1] == 0xC0 && !retried_le) {
			cur[4] = sw2;
			retried_le = true;
			why = "GET RESPONSE with Le from 6Cxx";
			continue;
		}
		break;
	}
	return SCARD_S_SUCCESS;
}

int cmd_send(int argc, char **argv)
{
	struct apdu_list apdus = { 0 };
	const char *reader_arg = NULL;
	DWORD protocols = SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1;
	DWORD share = SCARD_SHARE_SHARED;
	bool raw = false;
	int rc = EXIT_OK;
	const char *script = NULL;
	char **hex_args = calloc((size_t)argc, sizeof(char *));
	size_t n_hex = 0;
	if (!hex_args)
		return EXIT_ERROR;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc)
			script = argv[++i];
		else if (!strcmp(a, "--t0"))
			protocols = SCARD_PROTOCOL_T0;
		else if (!strcmp(a, "--t1"))
			protocols = SCARD_PROTOCOL_T1;
		else if (!strcmp(a, "--exclusive"))
			share = SCARD_SHARE_EXCLUSIVE;
		else if (!strcmp(a, "--raw"))
			raw = true;
		else if (a[0] == '-' && a[1] && strcmp(a, "--")) {
			err_msg("send: unknown option %s", a);
			free(hex_args);
			return EXIT_USAGE;
		} else if (!strcmp(a, "--"))
			continue;
		else if (!reader_arg)
			reader_arg = a;
		else
			hex_args[n_hex++] = argv[i];
	}
	if (!reader_arg) {
		err_msg("usage: scard send [-f FILE] [--t0|--t1] [--exclusive] [--raw] READER "
			"[APDU...]");
		free(hex_args);
		return EXIT_USAGE;
	}
	if (script)
		rc = read_script(&apdus, script);
	for (size_t i = 0; rc == EXIT_OK && i < n_hex; i++)
		rc = add_apdu(&apdus, hex_args[i], "argument");
	free(hex_args);
	if (rc == EXIT_OK && apdus.n == 0) {
		err_msg("send: no APDU given (arguments or -f FILE)");
		rc = EXIT_USAGE;
	}
	SCARDCONTEXT ctx = 0;
	SCARDHANDLE h = 0;
	struct reader_list rl = { 0 };
	const char *reader = NULL;
	if (rc == EXIT_OK)
		rc = open_context(&ctx);
	if (rc == EXIT_OK) {
		LONG rv = list_readers(ctx, &rl);
		if (rv != SCARD_S_SUCCESS)
			rc = pcsc_fail("cannot list readers", rv);
		else
			reader = resolve_reader(&rl, reader_arg, &rc);
	}
	DWORD active = 0;
	if (rc == EXIT_OK) {
		LONG rv = SCardConnect(ctx, reader, share, protocols, &h, &active);
		if (rv != SCARD_S_SUCCESS) {
			char what[200];
			snprintf(what, sizeof(what), "cannot connect to %s", reader);
			rc = pcsc_fail(what, rv);
		}
	}
	bool connected = rc == EXIT_OK;
	const char *proto_name = active == SCARD_PROTOCOL_T0 ? "T=0" : "T=1";
	if (rc == EXIT_OK && g_opts.json) {
		printf("{\"reader\":");
		json_str(stdout, reader);
		printf(",\"protocol\":\"%s\",\"apdus\":[", proto_name);
	} else if (rc == EXIT_OK) {
		printf("reader %s, protocol %s\n", reader, proto_name);
	}
	bool all_ok = true;
	uint8_t *data = malloc((size_t)MAX_STEPS * MAX_RESP);
	if (!data && rc == EXIT_OK)
		rc = EXIT_ERROR;
	for (size_t i = 0; rc == EXIT_OK && i < apdus.n; i++) {
		struct step steps[MAX_STEPS];
		size_t n_steps = 0, data_len = 0;
		uint16_t sw = 0;
		LONG rv = exchange(h, active, raw, apdus.cmd[i], apdus.len[i], steps, &n_steps,
				   data, &data_len, &sw);
		if (g_opts.json && n_steps) {
			printf("%s{\"command\":", i ? "," : "");
			json_hex(stdout, apdus.cmd[i], apdus.len[i]);
			printf(",\"data\":");
			json_hex(stdout, data, data_len);
			printf(",\"sw\":\"%04X\",\"sw_text\":", sw);
			json_str(stdout, vcard_sw_text(sw));
			printf(",\"exchanges\":");
			print_steps_json(steps, n_steps);
			printf("}");
		} else if (!g_opts.json) {
			for (size_t k = 0; k < n_steps; k++)
				print_step_human(&steps[k]);
			size_t with_data = 0;
			for (size_t k = 0; k < n_steps; k++)
				with_data += steps[k].resp_len > 2;
			if (with_data > 1 && rv == SCARD_S_SUCCESS) {
				printf("= ");
				print_hex(stdout, data, data_len);
				printf("%s%02X %02X   %s\n", data_len ? " " : "", sw >> 8,
				       sw & 0xFF, vcard_sw_text(sw));
			}
		}
		free_steps(steps, n_steps);
		if (rv != SCARD_S_SUCCESS) {
			if (g_opts.json)
				printf("]}\n");
			fflush(stdout);
			rc = pcsc_fail("transmit", rv);
			break;
		}
		if (sw != 0x9000)
			all_ok = false;
	}
	if (rc == EXIT_OK && g_opts.json)
		printf("]}\n");
	if (rc == EXIT_OK && !all_ok)
		rc = EXIT_CARD_SW;
	free(data);
	if (connected)
		SCardDisconnect(h, SCARD_LEAVE_CARD);
	if (ctx)
		SCardReleaseContext(ctx);
	reader_list_free(&rl);
	for (size_t i = 0; i < apdus.n; i++)
		free(apdus.cmd[i]);
	free(apdus.cmd);
	free(apdus.len);
	return rc;
}
