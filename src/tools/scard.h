/* scard: shared pieces of the subcommands (output, errors, readers). */
#ifndef SCARD_TOOL_H
#define SCARD_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <winscard.h>

/* Exit codes: also listed by `scard --help`. */
enum scard_exit {
	EXIT_OK = 0,
	EXIT_ERROR = 1,     /* any other PC/SC or system error */
	EXIT_USAGE = 2,     /* bad arguments, bad APDU, unreadable script or card file */
	EXIT_NO_DAEMON = 3, /* no daemon answers on the socket */
	EXIT_NO_READER = 4, /* reader not found, or no reader at all */
	EXIT_NO_CARD = 5,   /* no card, card removed or not answering */
	EXIT_SHARING = 6,   /* another application holds the reader exclusively */
	EXIT_CARD_SW = 7,   /* send: a status word other than 90 00 */
	EXIT_CONTROL = 8,   /* virtual: control channel unreachable or command refused */
};

struct opts {
	bool json;
	const char *socket; /* --socket, else PCSCLITE_CSOCK_NAME, else the default */
};

extern struct opts g_opts;

/* Which socket libpcsclite will use, and where that choice came from. */
const char *socket_path(const char **source);

/* Prints "scard: <msg>" to stderr. */
void err_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Explains a PC/SC error for what ("connect to X") and returns its exit code. */
int pcsc_fail(const char *what, LONG rv);
int exit_code_for(LONG rv);

/* ---- JSON output (to stdout) ---- */
void json_str(FILE *f, const char *s);
/* Whether s is one or more decimal digits. */
bool all_digits(const char *s);
/* A number as JSON, else the text as a JSON string ("auto", "hidden"), or null
 * for "" and "none". */
void json_number_or_word(const char *v);
void json_hex(FILE *f, const uint8_t *b, size_t n); /* "3B8880" */

/* ---- hex ---- */
void print_hex(FILE *f, const uint8_t *b, size_t n);     /* "3B 88 80" */
void hex_compact(char *out, const uint8_t *b, size_t n); /* out: 2n+1 bytes */
/* Parses hex with optional blanks and colons. -1 on bad input or too long. */
long parse_hex(const char *s, uint8_t *out, size_t cap);

/* ---- readers ---- */
struct reader_list {
	char **names;
	size_t n;
	char *buf;
};
/* SCardListReaders; an empty list is not an error. */
LONG list_readers(SCARDCONTEXT ctx, struct reader_list *rl);
void reader_list_free(struct reader_list *rl);
/*
 * Resolves what the user typed: an exact name, an index into the list, or a
 * unique case-insensitive part of a name. Prints the error and returns NULL.
 */
const char *resolve_reader(const struct reader_list *rl, const char *arg, int *exit_code);
/* Establishes a context, explaining failure. */
int open_context(SCARDCONTEXT *ctx);

/* State words of SCARD_STATE_* bits, for output. */
size_t state_words(DWORD state, const char **words, size_t max);
/* "present", "absent", "mute" or "unknown". */
const char *card_word(DWORD state);
/* "exclusive", "shared" or NULL. */
const char *holder_word(DWORD state);
/* The JSON fields list and watch share: ,"held":..,"events":N,"state":[..] */
void json_state_fields(FILE *f, DWORD state);
/* Protocols an ATR offers, as "T=0, T=1", or "" if it cannot be read. */
void protocols_of_atr(const uint8_t *atr, size_t len, char *out, size_t cap);

/* ---- subcommands ---- */
int cmd_list(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_virtual(int argc, char **argv);

#endif
