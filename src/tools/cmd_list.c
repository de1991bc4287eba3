/* scard list: every reader with its card, ATR and who holds it. */
#include <stdlib.h>
#include <string.h>

#include "scard.h"

int cmd_list(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		err_msg("usage: scard list");
		return EXIT_USAGE;
	}
	SCARDCONTEXT ctx;
	int rc = open_context(&ctx);
	if (rc)
		return rc;
	struct reader_list rl;
	LONG rv = list_readers(ctx, &rl);
	if (rv != SCARD_S_SUCCESS) {
		rc = pcsc_fail("cannot list readers", rv);
		SCardReleaseContext(ctx);
		return rc;
	}
	SCARD_READERSTATE *st = calloc(rl.n ? rl.n : 1, sizeof(*st));
	if (!st) {
		reader_list_free(&rl);
		SCardReleaseContext(ctx);
		return EXIT_ERROR;
	}
	for (size_t i = 0; i < rl.n; i++) {
		st[i].szReader = rl.names[i];
		st[i].dwCurrentState = SCARD_STATE_UNAWARE;
	}
	if (rl.n) {
		rv = SCardGetStatusChange(ctx, 0, st, (DWORD)rl.n);
		if (rv != SCARD_S_SUCCESS && rv != (LONG)SCARD_E_TIMEOUT) {
			rc = pcsc_fail("cannot read reader states", rv);
			goto out;
		}
	}
	if (g_opts.json) {
		printf("{\"socket\":");
		json_str(stdout, socket_path(NULL));
		printf(",\"readers\":[");
	} else if (rl.n == 0) {
		printf("no readers (daemon on %s)\n", socket_path(NULL));
	}
	for (size_t i = 0; i < rl.n; i++) {
		DWORD s = st[i].dwEventState;
		size_t atr_len = st[i].cbAtr <= sizeof(st[i].rgbAtr) ? st[i].cbAtr : 0;
		bool has_card = (s & SCARD_STATE_PRESENT) && atr_len;
		char protos[32] = "";
		if (has_card)
			protocols_of_atr(st[i].rgbAtr, atr_len, protos, sizeof(protos));
		const char *holder = holder_word(s);
		if (g_opts.json) {
			printf("%s{\"index\":%zu,\"name\":", i ? "," : "", i);
			json_str(stdout, rl.names[i]);
			printf(",\"card\":\"%s\",\"atr\":", card_word(s));
			if (has_card)
				json_hex(stdout, st[i].rgbAtr, atr_len);
			else
				printf("null");
			printf(",\"protocols\":[");
			if (protos[0]) {
				bool t0 = strstr(protos, "T=0"), t1 = strstr(protos, "T=1");
				printf("%s%s%s", t0 ? "\"T=0\"" : "", t0 && t1 ? "," : "",
				       t1 ? "\"T=1\"" : "");
			}
			printf("]");
			json_state_fields(stdout, s);
			printf("}");
		} else {
			printf("%zu: %s\n", i, rl.names[i]);
			const char *card = card_word(s);
			if (!strcmp(card, "absent"))
				printf("     card: none\n");
			else if (!strcmp(card, "mute"))
				printf("     card: present but mute (no answer to reset)\n");
			else if (!strcmp(card, "unknown"))
				printf("     card: unknown (reader not available)\n");
			else
				printf("     card: present, %s\n",
				       holder ? (!strcmp(holder, "exclusive")
							 ? "held exclusively by an application"
							 : "in use (shared)")
					      : "not in use");
			if (has_card) {
				printf("     ATR:  ");
				print_hex(stdout, st[i].rgbAtr, atr_len);
				if (protos[0])
					printf("  (%s)", protos);
				printf("\n");
			}
		}
	}
	if (g_opts.json)
		printf("]}\n");
	rc = EXIT_OK;
out:
	free(st);
	reader_list_free(&rl);
	SCardReleaseContext(ctx);
	return rc;
}
