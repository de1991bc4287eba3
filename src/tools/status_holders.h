/*
 * scard status, "who holds my card": the card handles each client holds and
 * who holds each reader in use, from scardd's report (card and reader lines).
 */
#ifndef SCARD_STATUS_HOLDERS_H
#define SCARD_STATUS_HOLDERS_H

#include "daemon_report.h"

/* The client's handles, one indented line each ("    "Reader 00 00": exclusive, T=1"). */
void holders_print_cards(const struct daemon_report *r, const char *client_id);
/* "readers in use:" and a line per reader; nothing when none is in use. */
void holders_print_readers(const struct daemon_report *r);
/* ,"handles":[...] for the client's JSON object. */
void holders_json_cards(const struct daemon_report *r, const char *client_id);
/* ,"readers_in_use":[...] for the report's JSON object. */
void holders_json_readers(const struct daemon_report *r);

#endif
