#include "client_build.h"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifdef HAVE_LIBELF
#include <gelf.h>
#include <libelf.h>
#endif

#define SECTIONS_MAX 4096u   /* real libraries have about 30 */
#define MAPS_MAX (32u << 20) /* 65530 mappings (vm.max_map_count) fit */
#define CACHE_SIZE 16u       /* distinct libpcsclite builds in use */
#define DELETED_SUFFIX " (deleted)"

/* --- the rule -------------------------------------------------------- */

uint32_t client_build_slots_from_bss(uint64_t bss)
{
	uint64_t n = bss / CLIENT_BUILD_RECORD / CLIENT_BUILD_STEP * CLIENT_BUILD_STEP;

	if (n < CLIENT_BUILD_STEP || n > CLIENT_BUILD_SLOTS_MAX)
		return 0;
	if (bss - n * CLIENT_BUILD_RECORD > CLIENT_BUILD_REST_MAX)
		return 0;
	return (uint32_t)n;
}

/* --- ELF: size of .bss ----------------------------------------------- */

#ifdef HAVE_LIBELF

static pthread_once_t elf_once = PTHREAD_ONCE_INIT;
static bool elf_ok;

static void elf_init(void)
{
	elf_ok = elf_version(EV_CURRENT) != EV_NONE;
}

static bool elf_ready(void)
{
	pthread_once(&elf_once, elf_init);
	return elf_ok;
}

/* The one NOBITS ".bss" of a shared object; any oddity is a refusal. */
static bool bss_of(Elf *e, uint64_t *bss)
{
	GElf_Ehdr eh;
	size_t shnum, shstrndx;
	Elf_Scn *scn = NULL;
	unsigned found = 0;

	if (elf_kind(e) != ELF_K_ELF || !gelf_getehdr(e, &eh) || eh.e_type != ET_DYN)
		return false;
	if (elf_getshdrnum(e, &shnum) != 0 || shnum == 0 || shnum > SECTIONS_MAX)
		return false;
	if (elf_getshdrstrndx(e, &shstrndx) != 0 || shstrndx >= shnum)
		return false;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		const char *name;

		if (!gelf_getshdr(scn, &sh))
			return false;
		/* checks the offset against the string table and its NUL */
		name = elf_strptr(e, shstrndx, sh.sh_name);
		if (!name)
			return false;
		if (strcmp(name, ".bss") != 0)
			continue;
		if (sh.sh_type != SHT_NOBITS || ++found > 1)
			return false;
		*bss = sh.sh_size;
	}
	return found == 1;
}

bool client_build_bss_from_image(const void *data, size_t len, uint64_t *bss)
{
	char *copy;
	Elf *e;
	bool ok = false;

	if (!data || len == 0 || len > CLIENT_BUILD_FILE_MAX || !elf_ready())
		return false;
	/* elf_memory wants a writable image it may convert in place */
	copy = malloc(len);
	if (!copy)
		return false;
	memcpy(copy, data, len);
	e = elf_memory(copy, len);
	if (e) {
		ok = bss_of(e, bss);
		elf_end(e);
	}
	free(copy);
	return ok;
}

bool client_build_bss_from_fd(int fd, uint64_t *bss)
{
	struct stat st;
	Elf *e;
	bool ok = false;

	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return false;
	if (st.st_size <= 0 || (uint64_t)st.st_size > CLIENT_BUILD_FILE_MAX || !elf_ready())
		return false;
	/* ELF_C_READ reads what it needs with pread; mmap could SIGBUS the
	 * daemon if the file's owner truncated it meanwhile */
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (e) {
		ok = bss_of(e, bss);
		elf_end(e);
	}
	return ok;
}

#else /* !HAVE_LIBELF */

bool client_build_bss_from_image(const void *data, size_t len, uint64_t *bss)
{
	(void)data, (void)len, (void)bss;
	return false;
}

bool client_build_bss_from_fd(int fd, uint64_t *bss)
{
	(void)fd, (void)bss;
	return false;
}

#endif

/* --- /proc/PID/maps -------------------------------------------------- */

struct cursor {
	const char *p, *end;
};

/* Up to max_digits hex digits (at least one) into *v. */
static bool take_hex(struct cursor *c, unsigned max_digits, uint64_t *v)
{
	unsigned n = 0;

	*v = 0;
	while (c->p < c->end && n < max_digits) {
		char ch = *c->p;
		unsigned d;

		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else
			break;
		*v = *v << 4 | d;
		c->p++;
		n++;
	}
	return n > 0;
}

static bool take_dec(struct cursor *c, uint64_t *v)
{
	unsigned n = 0;

	*v = 0;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && n < 19) {
		*v = *v * 10 + (uint64_t)(*c->p - '0');
		c->p++;
		n++;
	}
	return n > 0;
}

static bool take_char(struct cursor *c, char ch)
{
	if (c->p >= c->end || *c->p != ch)
		return false;
	c->p++;
	return true;
}

/* One or more spaces. */
static bool take_spaces(struct cursor *c)
{
	const char *start = c->p;

	while (c->p < c->end && *c->p == ' ')
		c->p++;
	return c->p > start;
}

/* "rwxp": exactly four non-space characters. */
static bool take_perms(struct cursor *c)
{
	for (int i = 0; i < 4; i++, c->p++) {
		if (c->p >= c->end || *c->p == ' ')
			return false;
	}
	return true;
}

/* The path: the rest of the line, absolute, with " (deleted)" noted. */
static bool take_path(struct cursor *c, struct client_build_map *m)
{
	size_t n = (size_t)(c->end - c->p);
	size_t sfx = strlen(DELETED_SUFFIX);

	if (n > 0 && c->p[n - 1] == '\n')
		n--;
	m->deleted = n > sfx && memcmp(c->p + n - sfx, DELETED_SUFFIX, sfx) == 0;
	if (m->deleted)
		n -= sfx;
	if (n < 2 || c->p[0] != '/' || n >= sizeof(m->path) || memchr(c->p, '\0', n))
		return false;
	memcpy(m->path, c->p, n);
	m->path[n] = '\0';
	return true;
}

bool client_build_parse_maps_line(const char *line, size_t len, struct client_build_map *m)
{
	struct cursor c = { line, line + len };
	uint64_t offset, major, minor;

	if (!line)
		return false;
	/* start-end perms offset major:minor inode   path */
	if (!take_hex(&c, 16, &m->start) || !take_char(&c, '-') || !take_hex(&c, 16, &m->end))
		return false;
	if (!take_spaces(&c) || !take_perms(&c) || !take_spaces(&c) || !take_hex(&c, 16, &offset))
		return false;
	if (!take_spaces(&c) || !take_hex(&c, 8, &major) || !take_char(&c, ':') ||
	    !take_hex(&c, 8, &minor))
		return false;
	if (!take_spaces(&c) || !take_dec(&c, &m->inode) || !take_spaces(&c))
		return false;
	/* kernel dev_t: 12-bit major, 20-bit minor */
	if (major > 0xfff || minor > 0xfffff || m->inode == 0 || m->end <= m->start)
		return false;
	m->dev_major = (unsigned)major;
	m->dev_minor = (unsigned)minor;
	return take_path(&c, m);
}

/* 2 = libpcsclite_real.so*, 1 = libpcsclite.so*, 0 = neither. */
static int lib_kind(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	if (strncmp(base, "libpcsclite_real.so", strlen("libpcsclite_real.so")) == 0)
		return 2;
	if (strncmp(base, "libpcsclite.so", strlen("libpcsclite.so")) == 0)
		return 1;
	return 0;
}

void client_build_pick_init(struct client_build_pick *p)
{
	memset(p, 0, sizeof(*p));
}

/* Keeps the first mapping of a kind; another file of that kind is a conflict. */
static void keep(struct client_build_map *slot, bool *have, bool *conflict,
		 const struct client_build_map *m)
{
	if (!*have) {
		*slot = *m;
		*have = true;
	} else if (slot->inode != m->inode || slot->dev_major != m->dev_major ||
		   slot->dev_minor != m->dev_minor) {
		*conflict = true;
	}
}

void client_build_pick_line(struct client_build_pick *p, const char *line, size_t len)
{
	struct client_build_map m;

	if (!client_build_parse_maps_line(line, len, &m))
		return;
	switch (lib_kind(m.path)) {
	case 2: keep(&p->real, &p->have_real, &p->real_conflict, &m); break;
	case 1: keep(&p->plain, &p->have_plain, &p->plain_conflict, &m); break;
	default: break;
	}
}

bool client_build_pick_result(const struct client_build_pick *p, struct client_build_map *out)
{
	const struct client_build_map *m;

	if (p->have_real) {
		if (p->real_conflict)
			return false;
		m = &p->real;
	} else if (p->have_plain && !p->plain_conflict) {
		m = &p->plain;
	} else {
		return false;
	}
	/* major 0: overlayfs, tmpfs, NFS, FUSE... possibly served by a process */
	if (m->dev_major == 0)
		return false;
	*out = *m;
	return true;
}

bool client_build_find_lib(const char *maps, size_t len, struct client_build_map *out)
{
	struct client_build_pick p;
	const char *end = maps + len;

	if (!maps)
		return false;
	client_build_pick_init(&p);
	while (maps < end) {
		const char *nl = memchr(maps, '\n', (size_t)(end - maps));
		const char *stop = nl ? nl : end;

		client_build_pick_line(&p, maps, (size_t)(stop - maps));
		maps = nl ? nl + 1 : end;
	}
	return client_build_pick_result(&p, out);
}

/*
 * Feeds the lines of an open maps file to p. Lines longer than the buffer
 * (a path near PATH_MAX) are skipped. False on a read error or a maps
 * larger than MAPS_MAX.
 */
static bool scan_maps(int fd, struct client_build_pick *p)
{
	char buf[CLIENT_BUILD_PATH_MAX + 256];
	size_t used = 0, total = 0;
	bool skipping = false;

	for (;;) {
		ssize_t n = read(fd, buf + used, sizeof(buf) - used);
		char *line = buf, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (total += (size_t)n) > MAPS_MAX)
			return false;
		if (n == 0) {
			if (used && !skipping)
				client_build_pick_line(p, buf, used);
			return true;
		}
		used += (size_t)n;
		while ((nl = memchr(line, '\n', used - (size_t)(line - buf)))) {
			if (!skipping)
				client_build_pick_line(p, line, (size_t)(nl - line));
			skipping = false;
			line = nl + 1;
		}
		used -= (size_t)(line - buf);
		memmove(buf, line, used);
		if (used == sizeof(buf)) { /* no newline in a full buffer */
			skipping = true;
			used = 0;
		}
	}
}

static bool find_in_process(pid_t pid, struct client_build_map *out)
{
	char path[64];
	struct client_build_pick p;
	int fd;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	client_build_pick_init(&p);
	ok = scan_maps(fd, &p) && client_build_pick_result(&p, out);
	close(fd);
	return ok;
}

/* --- opening the mapped file ----------------------------------------- */

/*
 * O_NONBLOCK: open fails instead of waiting for a lease its owner holds.
 * No O_NOFOLLOW: a map_files entry is a magic link to the mapping's own
 * file (there is no path to walk), and O_NOFOLLOW makes it fail (ELOOP).
 * Needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE.
 */
static int open_map_files(pid_t pid, const struct client_build_map *m)
{
	char path[96];

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, m->start,
		 m->end);
	return open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
}

/*
 * The path inside the client's root. No symlinks (maps shows resolved
 * paths) and no mount crossings: a lookup in a FUSE directory on the way
 * could wait on a process. So this fails for a library under a separate
 * mount (a flatpak's /usr); map_files covers those.
 */
static int open_in_root(pid_t pid, const char *path)
{
	char root[64];
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
			   RESOLVE_NO_XDEV,
	};
	int dir, fd;

	snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
	dir = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -1;
	while (*path == '/')
		path++;
	fd = (int)syscall(SYS_openat2, dir, path, &how, sizeof(how));
	close(dir);
	return fd;
}

static bool is_mapped_file(int fd, const struct client_build_map *m)
{
	struct stat st;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return false;
	if (st.st_size <= 0 || (uint64_t)st.st_size > CLIENT_BUILD_FILE_MAX)
		return false;
	return (uint64_t)st.st_ino == m->inode && major(st.st_dev) == m->dev_major &&
	       minor(st.st_dev) == m->dev_minor;
}

int client_build_open_mapped(pid_t pid, const struct client_build_map *m)
{
	int fd;

	if (pid <= 0 || m->dev_major == 0)
		return -1;
	fd = open_map_files(pid, m);
	/* a deleted file's path names another file now, or none */
	if (fd < 0 && !m->deleted)
		fd = open_in_root(pid, m->path);
	if (fd >= 0 && !is_mapped_file(fd, m)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* --- cache and the guess --------------------------------------------- */

struct cache_entry {
	bool used;
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	uint32_t slots;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache_entry cache[CACHE_SIZE];
static unsigned cache_next; /* round-robin victim */
static struct client_build_stats stats;

static bool same_file(const struct cache_entry *c, const struct stat *st)
{
	return c->used && c->dev == st->st_dev && c->ino == st->st_ino &&
	       c->mtime.tv_sec == st->st_mtim.tv_sec && c->mtime.tv_nsec == st->st_mtim.tv_nsec &&
	       c->size == st->st_size;
}

static bool cache_lookup(const struct stat *st, uint32_t *slots)
{
	bool hit = false;

	pthread_mutex_lock(&cache_lock);
	for (unsigned i = 0; i < CACHE_SIZE && !hit; i++) {
		if (same_file(&cache[i], st)) {
			*slots = cache[i].slots;
			hit = true;
		}
	}
	if (hit)
		stats.hits++;
	pthread_mutex_unlock(&cache_lock);
	return hit;
}

static void cache_store(const struct stat *st, uint32_t slots)
{
	pthread_mutex_lock(&cache_lock);
	cache[cache_next] = (struct cache_entry){
		.used = true,
		.dev = st->st_dev,
		.ino = st->st_ino,
		.mtime = st->st_mtim,
		.size = st->st_size,
		.slots = slots,
	};
	cache_next = (cache_next + 1) % CACHE_SIZE;
	stats.parses++;
	pthread_mutex_unlock(&cache_lock);
}

void client_build_stats(struct client_build_stats *out)
{
	pthread_mutex_lock(&cache_lock);
	*out = stats;
	pthread_mutex_unlock(&cache_lock);
}

void client_build_cache_reset(void)
{
	pthread_mutex_lock(&cache_lock);
	memset(cache, 0, sizeof(cache));
	cache_next = 0;
	memset(&stats, 0, sizeof(stats));
	pthread_mutex_unlock(&cache_lock);
}

/* Slots for an open, checked library file: cached, else parsed. */
static uint32_t slots_of_file(int fd)
{
	struct stat st;
	uint64_t bss;
	uint32_t slots;

	if (fstat(fd, &st) != 0)
		return 0;
	if (cache_lookup(&st, &slots))
		return slots;
	slots = client_build_bss_from_fd(fd, &bss) ? client_build_slots_from_bss(bss) : 0;
	/* unknowns are cached too: a bad file costs one parse, not one a client */
	cache_store(&st, slots);
	return slots;
}

uint32_t client_build_guess_slots(pid_t pid)
{
#ifdef HAVE_LIBELF
	struct client_build_map m;
	uint32_t slots;
	int fd;

	if (pid <= 0 || !find_in_process(pid, &m))
		return 0;
	fd = client_build_open_mapped(pid, &m);
	if (fd < 0)
		return 0;
	slots = slots_of_file(fd);
	close(fd);
	return slots;
#else
	(void)pid;
	(void)find_in_process;
	(void)slots_of_file;
	return 0;
#endif
}
