/*
 * Guesses how many reader-state records a client's libpcsclite expects in
 * the fixed arrays of protocol 4:2 to 4:5 (PCSCLITE_MAX_READERS_CONTEXTS:
 * 16 upstream, 48 in Fedora's builds; the protocol does not say which), from
 * the library the client process has mapped.
 *
 * The array is a zero-initialised static of the client library, so it sits
 * in the library's .bss and dominates it. Measured (.bss = array + rest):
 *   Debian 1.9.9 x86_64   3280 = 16 x 184 + 336
 *   Debian 1.9.9 i386     3180 = 16 x 184 + 236
 *   Debian 1.9.9 s390x    3240 = 16 x 184 + 296
 *   1.9.9 built with 48   9168 = 48 x 184 + 336
 *   2.3.3 _real           3376 = 16 x 184 + 432
 *   2.5.2 _real            528   (array allocated at run time; speaks 4:6)
 *   2.x redirector          24,  scardd's own client 104
 * The rest is a few mutexes, the context list, the socket name and flags:
 * a few hundred bytes, well under one 16-record step (2944 bytes).
 *
 * Rule: N is the largest multiple of 16 in [16, 4096] with N x 184 <= .bss,
 * and it stands only if the rest, .bss - N x 184, is at most
 * CLIENT_BUILD_REST_MAX (4 records, 736 bytes: 1.7 x the largest rest seen).
 * Every build known uses 16 or 48, so counts go in steps of 16; a .bss the
 * rule does not fit (too small, too large, a rest too big, as a count
 * patched to something else would give) yields 0, "unknown".
 *
 * Safety: the library is only inspected when maps says it lives on a block
 * device (non-zero major): overlayfs, tmpfs, NFS, FUSE and btrfs (anonymous
 * device numbers) give no guess, so a client cannot make the daemon wait
 * on a file served by a process. It is opened through
 * /proc/PID/map_files (no path walk), else through the client's root with
 * openat2 (no symlinks, no mount crossings), read with pread (no mmap: the
 * client may own and truncate it), and must be the inode maps names.
 * Results are cached by (device, inode, mtime, size).
 *
 * Without libelf (HAVE_LIBELF unset) every guess is 0.
 */
#ifndef SCARDD_CLIENT_BUILD_H
#define SCARDD_CLIENT_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

#define CLIENT_BUILD_RECORD WIRE_READER_RECORD_SIZE /* sizeof(READER_STATE) since 1.8.4 */
#define CLIENT_BUILD_STEP 16u                       /* counts come in multiples of this */
#define CLIENT_BUILD_SLOTS_MAX 4096u                /* SOCKET_SPEC_READERS_MAX */
#define CLIENT_BUILD_REST_MAX (4u * CLIENT_BUILD_RECORD)
#define CLIENT_BUILD_FILE_MAX (64u << 20) /* larger "libraries" are refused */
#define CLIENT_BUILD_PATH_MAX 4096u

/*
 * Records in the fixed arrays client pid expects, or 0 when unknown (no
 * libpcsclite mapped, not on a block device, unreadable, not ELF, .bss
 * outside the rule). Never blocks on a file served by a user process.
 * Thread-safe.
 */
uint32_t client_build_guess_slots(pid_t pid);

/* The rule above: records for a .bss of bss bytes, or 0. */
uint32_t client_build_slots_from_bss(uint64_t bss);

/*
 * Size of the one SHT_NOBITS section named ".bss" of an ELF shared object
 * (ELF32 or ELF64, either byte order), from an image in memory or an open
 * file (read with pread only). False on anything else: not ELF, not
 * ET_DYN, no or several .bss, truncated or inconsistent headers, no libelf.
 */
bool client_build_bss_from_image(const void *data, size_t len, uint64_t *bss);
bool client_build_bss_from_fd(int fd, uint64_t *bss);

/* One file mapping of /proc/PID/maps. */
struct client_build_map {
	uint64_t start, end; /* addresses, for /proc/PID/map_files */
	unsigned dev_major, dev_minor;
	uint64_t inode;
	bool deleted; /* path ended in " (deleted)" (now removed) */
	char path[CLIENT_BUILD_PATH_MAX];
};

/* Parses one maps line (len bytes, no newline needed). False if malformed
 * or not a mapping of a file by absolute path. */
bool client_build_parse_maps_line(const char *line, size_t len, struct client_build_map *m);

/* Picks the library from maps lines fed one by one. */
struct client_build_pick {
	struct client_build_map real;  /* basename libpcsclite_real.so* */
	struct client_build_map plain; /* basename libpcsclite.so* */
	bool have_real, have_plain;
	bool real_conflict, plain_conflict; /* two different files of a kind */
};
void client_build_pick_init(struct client_build_pick *p);
void client_build_pick_line(struct client_build_pick *p, const char *line, size_t len);

/*
 * The library to inspect: libpcsclite_real.so* if mapped (pcsc-lite >= 2.2
 * keeps the code and the array there), else libpcsclite.so*. False when
 * there is none, when two different files of the chosen kind are mapped,
 * or when its device has major 0 (not a block device).
 */
bool client_build_pick_result(const struct client_build_pick *p, struct client_build_map *out);

/* Same over a whole maps text (len bytes). */
bool client_build_find_lib(const char *maps, size_t len, struct client_build_map *out);

/*
 * Opens the mapped file of pid that m describes, checked: a regular file
 * of at most CLIENT_BUILD_FILE_MAX bytes with m's device and inode. -1 on
 * failure. Exposed for tests.
 */
int client_build_open_mapped(pid_t pid, const struct client_build_map *m);

/* Counters since start (or the last reset): ELF parses and cache hits. */
struct client_build_stats {
	unsigned long parses, hits;
};
void client_build_stats(struct client_build_stats *out);
void client_build_cache_reset(void);

#endif
