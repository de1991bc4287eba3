/* Output, error and reader helpers shared by scard's subcommands. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pcsclite.h>

#include "atr.h"
#include "config.h"
#include "scard.h"

struct opts g_opts;

const char *socket_path(const char **source)
{
	const char *env = getenv("PCSCLITE_CSOCK_NAME");
	if (env && env[0]) {
		if (source)
			*source = g_opts.socket ? "--socket" : "PCSCLITE_CSOCK_NAME";
		return env;
	}
	if (source)
		*source = "default";
	return SCARDD_DEFAULT_SOCKET;
}

void err_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("scard: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int exit_code_for(LONG rv)
{
	switch ((unsigned long)rv) {
	case SCARD_S_SUCCESS: return EXIT_OK;
	case SCARD_E_NO_SERVICE:
	case SCARD_E_SERVICE_STOPPED: return EXIT_NO_DAEMON;
	case SCARD_E_NO_READERS_AVAILABLE:
	case SCARD_E_UNKNOWN_READER:
	case SCARD_E_READER_UNAVAILABLE: return EXIT_NO_READER;
	case SCARD_E_NO_SMARTCARD:
	case SCARD_W_REMOVED_CARD:
	case SCARD_W_UNRESPONSIVE_CARD:
	case SCARD_W_UNPOWERED_CARD:
	case SCARD_W_UNSUPPORTED_CARD: return EXIT_NO_CARD;
	case SCARD_E_SHARING_VIOLATION: return EXIT_SHARING;
	default: return EXIT_ERROR;
	}
}

int pcsc_fail(const char *what, LONG rv)
{
	const char *sock = socket_path(NULL);
	switch ((unsigned long)rv) {
	case SCARD_E_NO_SERVICE:
	case SCARD_E_SERVICE_STOPPED:
		err_msg("%s: no PC/SC daemon answers on %s (start scardd or pcscd, or point "
			"PCSCLITE_CSOCK_NAME / --socket at its socket)",
			what, sock);
		break;
	case SCARD_E_NO_READERS_AVAILABLE:
		err_msg("%s: the daemon on %s has no readers", what, sock);
		break;
	case SCARD_E_UNKNOWN_READER:
	case SCARD_E_READER_UNAVAILABLE:
		err_msg("%s: no such reader (any more); `scard list` shows the readers", what);
		break;
	case SCARD_E_NO_SMARTCARD: err_msg("%s: there is no card in the reader", what); break;
	case SCARD_W_REMOVED_CARD: err_msg("%s: the card was removed", what); break;
	case SCARD_W_UNRESPONSIVE_CARD:
		err_msg("%s: the card does not answer (mute card)", what);
		break;
	case SCARD_W_UNPOWERED_CARD:
		err_msg("%s: the card is not powered (no answer to power-up: mute card?)", what);
		break;
	case SCARD_E_SHARING_VIOLATION:
		err_msg("%s: another application holds the reader exclusively (sharing violation)",
			what);
		break;
	case SCARD_E_PROTO_MISMATCH:
		err_msg("%s: the card does not speak the requested protocol", what);
		break;
	case SCARD_E_NOT_TRANSACTED:
		err_msg("%s: the reader could not exchange data with the card (mute card?)", what);
		break;
	default:
		err_msg("%s: %s (0x%08lX)", what, pcsc_stringify_error(rv), (unsigned long)rv);
		break;
	}
	return exit_code_for(rv);
}

int open_context(SCARDCONTEXT *ctx)
{
	LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, ctx);
	if (rv != SCARD_S_SUCCESS)
		return pcsc_fail("cannot reach the PC/SC daemon", rv);
	return EXIT_OK;
}

bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

void json_number_or_word(const char *v)
{
	if (!*v || !strcmp(v, "none"))
		printf("null");
	else if (all_digits(v))
		printf("%s", v);
	else
		json_str(stdout, v);
}

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

void json_hex(FILE *f, const uint8_t *b, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02X", b[i]);
	fputc('"', f);
}

void print_hex(FILE *f, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, i ? " %02X" : "%02X", b[i]);
}

void hex_compact(char *out, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = 0;
}

long parse_hex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int half = -1;
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t' || *s == ':' || *s == '\r' || *s == '\n')
			continue;
		if (!isxdigit((unsigned char)*s))
			return -1;
		int v = isdigit((unsigned char)*s) ? *s - '0'
						   : (tolower((unsigned char)*s) - 'a' + 10);
		if (half < 0) {
			half = v;
		} else {
			if (n == cap)
				return -1;
			out[n++] = (uint8_t)(half << 4 | v);
			half = -1;
		}
	}
	return half >= 0 ? -1 : (long)n;
}

/*
 * The reader names, asked as PC/SC asks them: the length, then the list. A
 * reader added between the two calls makes the list longer than the room
 * it was given (SCARD_E_INSUFFICIENT_BUFFER): ask again.
 */
static LONG fetch_names(SCARDCONTEXT ctx, struct reader_list *rl)
{
	enum { TRIES = 5 };
	LONG rv = SCARD_E_INSUFFICIENT_BUFFER;
	for (int i = 0; i < TRIES && rv == (LONG)SCARD_E_INSUFFICIENT_BUFFER; i++) {
		free(rl->buf);
		rl->buf = NULL;
		DWORD len = 0;
		rv = SCardListReaders(ctx, NULL, NULL, &len);
		if (rv != SCARD_S_SUCCESS)
			return rv;
		rl->buf = calloc(1, len + 1);
		if (!rl->buf)
			return SCARD_E_NO_MEMORY;
		rv = SCardListReaders(ctx, NULL, rl->buf, &len);
	}
	return rv;
}

LONG list_readers(SCARDCONTEXT ctx, struct reader_list *rl)
{
	memset(rl, 0, sizeof(*rl));
	LONG rv = fetch_names(ctx, rl);
	if (rv == (LONG)SCARD_E_NO_READERS_AVAILABLE) {
		free(rl->buf);
		rl->buf = calloc(1, 1);
		if (!rl->buf)
			return SCARD_E_NO_MEMORY;
		rv = SCARD_S_SUCCESS;
	}
	if (rv != SCARD_S_SUCCESS) {
		reader_list_free(rl);
		return rv;
	}
	size_t count = 0;
	for (char *p = rl->buf; *p; p += strlen(p) + 1)
		count++;
	rl->names = calloc(count + 1, sizeof(char *));
	if (!rl->names) {
		reader_list_free(rl);
		return SCARD_E_NO_MEMORY;
	}
	for (char *p = rl->buf; *p; p += strlen(p) + 1)
		rl->names[rl->n++] = p;
	return SCARD_S_SUCCESS;
}

void reader_list_free(struct reader_list *rl)
{
	free(rl->names);
	free(rl->buf);
	memset(rl, 0, sizeof(*rl));
}

const char *resolve_reader(const struct reader_list *rl, const char *arg, int *exit_code)
{
	*exit_code = EXIT_OK;
	if (rl->n == 0) {
		err_msg("no readers: the daemon on %s has none", socket_path(NULL));
		*exit_code = EXIT_NO_READER;
		return NULL;
	}
	for (size_t i = 0; i < rl->n; i++)
		if (!strcmp(rl->names[i], arg))
			return rl->names[i];
	char *end;
	unsigned long idx = strtoul(arg, &end, 10);
	if (arg[0] && !*end && isdigit((unsigned char)arg[0])) {
		if (idx < rl->n)
			return rl->names[idx];
		err_msg("no reader number %s: there %s %zu (0..%zu)", arg,
			rl->n == 1 ? "is" : "are", rl->n, rl->n - 1);
		*exit_code = EXIT_NO_READER;
		return NULL;
	}
	const char *hit = NULL;
	size_t hits = 0;
	size_t alen = strlen(arg);
	for (size_t i = 0; i < rl->n && alen; i++) {
		const char *name = rl->names[i];
		for (const char *p = name; *p; p++)
			if (!strncasecmp(p, arg, alen)) {
				hit = name;
				hits++;
				break;
			}
	}
	if (hits == 1)
		return hit;
	if (hits > 1)
		err_msg("'%s' matches %zu readers; give more of the name or its number", arg, hits);
	else
		err_msg("no reader matches '%s'; `scard list` shows the readers", arg);
	*exit_code = EXIT_NO_READER;
	return NULL;
}

size_t state_words(DWORD state, const char **words, size_t max)
{
	static const struct {
		DWORD bit;
		const char *word;
	} bits[] = {
		{ SCARD_STATE_CHANGED, "CHANGED" },
		{ SCARD_STATE_UNKNOWN, "UNKNOWN" },
		{ SCARD_STATE_UNAVAILABLE, "UNAVAILABLE" },
		{ SCARD_STATE_EMPTY, "EMPTY" },
		{ SCARD_STATE_PRESENT, "PRESENT" },
		{ SCARD_STATE_ATRMATCH, "ATRMATCH" },
		{ SCARD_STATE_EXCLUSIVE, "EXCLUSIVE" },
		{ SCARD_STATE_INUSE, "INUSE" },
		{ SCARD_STATE_MUTE, "MUTE" },
		{ SCARD_STATE_UNPOWERED, "UNPOWERED" },
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]) && n < max; i++)
		if (state & bits[i].bit)
			words[n++] = bits[i].word;
	return n;
}

const char *card_word(DWORD state)
{
	if (state & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE))
		return "unknown";
	if (state & SCARD_STATE_MUTE)
		return "mute";
	if (state & SCARD_STATE_PRESENT)
		return "present";
	return "absent";
}

const char *holder_word(DWORD state)
{
	if (state & SCARD_STATE_EXCLUSIVE)
		return "exclusive";
	if (state & SCARD_STATE_INUSE)
		return "shared";
	return NULL;
}

void protocols_of_atr(const uint8_t *atr, size_t len, char *out, size_t cap)
{
	struct atr_info info;
	out[0] = 0;
	if (atr_check(atr, len, &info, NULL, 0) < 0)
		return;
	bool t0 = info.protocols & SCARD_PROTOCOL_T0, t1 = info.protocols & SCARD_PROTOCOL_T1;
	snprintf(out, cap, "%s%s%s", t0 ? "T=0" : "", t0 && t1 ? ", " : "", t1 ? "T=1" : "");
}

void json_state_fields(FILE *f, DWORD state)
{
	const char *holder = holder_word(state);
	fprintf(f, ",\"held\":");
	if (holder)
		json_str(f, holder);
	else
		fprintf(f, "null");
	fprintf(f, ",\"events\":%lu,\"state\":[", (unsigned long)(state >> 16));
	const char *words[16];
	size_t n = state_words(state & ~(DWORD)SCARD_STATE_CHANGED, words, 16);
	for (size_t k = 0; k < n; k++)
		fprintf(f, "%s\"%s\"", k ? "," : "", words[k]);
	fputc(']', f);
}
