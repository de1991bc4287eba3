/*
 * scardd's answer to `scard status` (WIRE_SCARDD_STATUS as a connection's
 * first message): how the daemon runs, in lines of tab-separated key=value
 * fields, the first field naming the line:
 *
 *   scardd  version= pid= uid= started= uptime_ms= clients= hidden=
 *   socket  path= readers=auto|N names= prefer= mode= group=
 *   client  id= pid= uid= program= socket= protocol= order= arrays= names=
 *           contexts= cards= waiting=
 *   card    client= reader= share=shared|exclusive|direct protocol=T=0|T=1|raw|none
 *           transaction=yes|no        (one per card handle, after its client)
 *   more    clients= cards=   (lines left out: the answer has a size limit)
 *   reader  name= handles= exclusive= transaction=   (each reader with handles:
 *           the client id holding it exclusively / in a transaction, none,
 *           or hidden for another user's client)
 *
 * pid is this process's own (after daemon()), uptime_ms counts from the
 * start on a monotonic clock, started is the wall-clock second. A client is
 * listed with the version it is served in ("none" before CMD_VERSION), its
 * byte order, and its reader arrays ("sized" for 4:6, else their records).
 * Root and the daemon's own user see every client; other users see their
 * own, the rest counted as hidden. Values never hold a tab or a newline.
 */
#ifndef SCARDD_STATUS_REPORT_H
#define SCARDD_STATUS_REPORT_H

#include <stdio.h>

struct daemon;
struct session;

/* Answers asker's status query. */
void status_report_send(struct session *asker);

/*
 * Writes the report's text to f as `asker` may see it (asker may be NULL:
 * everything). The array length of a client not yet sent an array is
 * guessed then, and kept (legacy_slots).
 */
void status_report_write(FILE *f, struct daemon *d, const struct session *asker);

#endif
