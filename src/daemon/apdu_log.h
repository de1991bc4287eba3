/*
 * APDU logging (--apdu) that leaves PINs out: a command carrying one
 * (ISO 7816-4 VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, even and
 * odd INS) is logged with its header and length only.
 */
#ifndef SCARDD_APDU_LOG_H
#define SCARDD_APDU_LOG_H

#include <stddef.h>
#include <stdint.h>

/* How many leading bytes of a command APDU may be shown: all, or header and length. */
size_t apdu_shown_bytes(const uint8_t *apdu, size_t len);

/*
 * "<who> APDU: 00 A4 ..." as log_hex writes it, a PIN's bytes left out (and
 * said so). who names client and reader; "" for none.
 */
void apdu_log_command(const char *who, const uint8_t *apdu, size_t len);

#endif
