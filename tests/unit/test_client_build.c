/* Unit tests: guessing a client's reader-array length from its libpcsclite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client_build.h"
#include "config.h"
#include "unit_support.h"

#define REC CLIENT_BUILD_RECORD
#define DEBIAN_LIB "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1"
#define DEBIAN_LIB32 "/usr/lib/i386-linux-gnu/libpcsclite.so.1"
#define DEBIAN_LIB_BE "/usr/lib/s390x-linux-gnu/libpcsclite.so.1"
#define NO_LIBELF "not-built: scardd was configured without libelf (-Dlibelf=disabled)"

#ifdef HAVE_LIBELF
static const bool have_libelf = true;
#else
static const bool have_libelf = false;
#endif

/* --- synthetic ELF images ------------------------------------------- */

enum bss_kind { BSS_ONE, BSS_NONE, BSS_TWO, BSS_PROGBITS };

struct elf_spec {
	bool is64, big;
	uint64_t bss;
	enum bss_kind kind;
	uint16_t type; /* ET_DYN = 3 */
};

struct image {
	uint8_t b[1024];
	size_t len;
	bool big;
};

static void put(struct image *im, size_t off, uint64_t v, unsigned n)
{
	assert_true(off + n <= sizeof(im->b));
	for (unsigned i = 0; i < n; i++) {
		unsigned shift = im->big ? 8 * (n - 1 - i) : 8 * i;
		im->b[off + i] = (uint8_t)(v >> shift);
	}
	if (off + n > im->len)
		im->len = off + n;
}

/* A word of the class's size: 8 bytes in ELF64, 4 in ELF32. */
static void put_word(struct image *im, size_t *off, uint64_t v, bool is64)
{
	put(im, *off, v, is64 ? 8 : 4);
	*off += is64 ? 8 : 4;
}

static void put_shdr(struct image *im, size_t off, bool is64, uint32_t name, uint32_t type,
		     uint64_t offset, uint64_t size)
{
	put(im, off, name, 4);
	put(im, off + 4, type, 4);
	off += 8;
	put_word(im, &off, 3, is64);      /* flags: WA */
	put_word(im, &off, 0x1000, is64); /* addr */
	put_word(im, &off, offset, is64);
	put_word(im, &off, size, is64);
	put(im, off, 0, 4);     /* link */
	put(im, off + 4, 0, 4); /* info */
	off += 8;
	put_word(im, &off, 1, is64); /* addralign */
	put_word(im, &off, 0, is64); /* entsize */
}

/*
 * ELF header, a string table, then section headers:
 * NULL, .text, .bss (per kind), [second .bss], .shstrtab.
 */
static void make_elf(struct image *im, const struct elf_spec *s)
{
	static const char strtab[] = "\0.text\0.bss\0.shstrtab\0.bsx";
	const uint32_t n_text = 1, n_bss = 7, n_shstrtab = 12, n_bsx = 22;
	size_t eh = s->is64 ? 64 : 52, sh = s->is64 ? 64 : 40;
	size_t str_off = eh, sh_off = (eh + sizeof(strtab) + 7) & ~(size_t)7;
	unsigned n = s->kind == BSS_TWO ? 5 : 4;

	memset(im, 0, sizeof(*im));
	im->big = s->big;
	memcpy(im->b,
	       "\x7f"
	       "ELF",
	       4);
	im->b[4] = s->is64 ? 2 : 1; /* EI_CLASS */
	im->b[5] = s->big ? 2 : 1;  /* EI_DATA */
	im->b[6] = 1;               /* EI_VERSION */
	put(im, 16, s->type, 2);
	put(im, 18, s->is64 ? 62 : 3, 2); /* e_machine */
	put(im, 20, 1, 4);                /* e_version */
	size_t off = 24;
	put_word(im, &off, 0, s->is64); /* e_entry */
	put_word(im, &off, 0, s->is64); /* e_phoff */
	put_word(im, &off, sh_off, s->is64);
	put(im, off, 0, 4); /* e_flags */
	put(im, off + 4, eh, 2);
	put(im, off + 6, s->is64 ? 56 : 32, 2); /* e_phentsize */
	put(im, off + 8, 0, 2);
	put(im, off + 10, sh, 2);
	put(im, off + 12, n, 2);
	put(im, off + 14, n - 1, 2); /* e_shstrndx: last */
	memcpy(im->b + str_off, strtab, sizeof(strtab));

	put_shdr(im, sh_off + sh, s->is64, n_text, 1 /* PROGBITS */, str_off, 4);
	put_shdr(im, sh_off + 2 * sh, s->is64, s->kind == BSS_NONE ? n_bsx : n_bss,
		 s->kind == BSS_PROGBITS ? 1 : 8 /* NOBITS */, str_off, s->bss);
	if (s->kind == BSS_TWO)
		put_shdr(im, sh_off + 3 * sh, s->is64, n_bss, 8, str_off, 64);
	put_shdr(im, sh_off + (n - 1) * sh, s->is64, n_shstrtab, 3 /* STRTAB */, str_off,
		 sizeof(strtab));
	im->len = sh_off + n * sh;
}

static bool image_bss(const struct elf_spec *s, uint64_t *bss)
{
	struct image im;
	make_elf(&im, s);
	return client_build_bss_from_image(im.b, im.len, bss);
}

/* Slots for a synthetic image, through both the memory and the fd paths. */
static uint32_t image_slots(const struct elf_spec *s)
{
	struct image im;
	FILE *f = tmpfile();

	assert_non_null(f);
	make_elf(&im, s);
	assert_int_equal(fwrite(im.b, 1, im.len, f), im.len);
	assert_int_equal(fflush(f), 0);
	uint64_t bss_mem = 0, bss_fd = 0;
	bool ok_mem = client_build_bss_from_image(im.b, im.len, &bss_mem);
	bool ok_fd = client_build_bss_from_fd(fileno(f), &bss_fd);
	fclose(f);
	assert_int_equal(ok_mem, ok_fd);
	if (!ok_mem)
		return 0;
	assert_int_equal(bss_mem, bss_fd);
	return client_build_slots_from_bss(bss_mem);
}

/* --- the rule -------------------------------------------------------- */

static void test_rule(void **state)
{
	(void)state;
	/* the builds measured (see client_build.h) */
	assert_int_equal(client_build_slots_from_bss(3280), 16);
	assert_int_equal(client_build_slots_from_bss(3180), 16);
	assert_int_equal(client_build_slots_from_bss(3240), 16);
	assert_int_equal(client_build_slots_from_bss(3376), 16);
	assert_int_equal(client_build_slots_from_bss(9168), 48);
	assert_int_equal(client_build_slots_from_bss(528), 0); /* 2.5 _real */
	assert_int_equal(client_build_slots_from_bss(24), 0);  /* redirector */
	/* edges */
	assert_int_equal(client_build_slots_from_bss(0), 0);
	assert_int_equal(client_build_slots_from_bss(16 * REC - 1), 0);
	assert_int_equal(client_build_slots_from_bss(16 * REC), 16);
	assert_int_equal(client_build_slots_from_bss(16 * REC + CLIENT_BUILD_REST_MAX), 16);
	assert_int_equal(client_build_slots_from_bss(16 * REC + CLIENT_BUILD_REST_MAX + 1), 0);
	assert_int_equal(client_build_slots_from_bss(32 * REC + 300), 32);
	assert_int_equal(client_build_slots_from_bss(20 * REC + 300), 0); /* not a step */
	assert_int_equal(client_build_slots_from_bss(4096 * REC + 300), 4096);
	assert_int_equal(client_build_slots_from_bss(4112 * REC + 300), 0);
	assert_int_equal(client_build_slots_from_bss(UINT64_MAX), 0);
}

/* --- ELF decoding ---------------------------------------------------- */

static void test_synthetic_elf(void **state)
{
	static const bool classes[][2] = {
		{ true, false }, { false, false }, { true, true }, { false, true }
	};
	(void)state;
	if (!have_libelf)
		skip_because(NO_LIBELF);
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		struct elf_spec s = { .is64 = classes[i][0], .big = classes[i][1], .type = 3 };
		uint64_t bss = 0;

		s.bss = 16 * REC + 300;
		assert_int_equal(image_slots(&s), 16);
		assert_true(image_bss(&s, &bss));
		assert_int_equal(bss, 16 * REC + 300);
		s.bss = 48 * REC + 300;
		assert_int_equal(image_slots(&s), 48);
		s.bss = 104; /* scardd's own client, 2.x redirector */
		assert_int_equal(image_slots(&s), 0);
		s.bss = 48 * REC + 300;
		s.kind = BSS_NONE;
		assert_int_equal(image_slots(&s), 0);
		s.kind = BSS_TWO;
		assert_int_equal(image_slots(&s), 0);
		s.kind = BSS_PROGBITS;
		assert_int_equal(image_slots(&s), 0);
		s.kind = BSS_ONE;
		s.type = 2; /* ET_EXEC: not a library */
		assert_int_equal(image_slots(&s), 0);
	}
}

static void test_bad_elf(void **state)
{
	struct elf_spec s = { .is64 = true, .bss = 16 * REC + 300, .type = 3 };
	struct image im;
	uint64_t bss = 0;
	(void)state;

	make_elf(&im, &s);
	/* every truncation: the section headers are at the end */
	for (size_t len = 0; len < im.len; len++)
		assert_false(client_build_bss_from_image(im.b, len, &bss));
	/* a string table offset out of range */
	make_elf(&im, &s);
	im.b[im.len - 64] = 0xff;
	assert_false(client_build_bss_from_image(im.b, im.len, &bss));
	/* a section count past the file */
	make_elf(&im, &s);
	put(&im, 60, 200, 2);
	assert_false(client_build_bss_from_image(im.b, im.len, &bss));
	srand(7);
	uint8_t garbage[512];
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (uint8_t)rand();
	assert_false(client_build_bss_from_image(garbage, sizeof(garbage), &bss));
	memcpy(garbage,
	       "\x7f"
	       "ELF\x02\x01\x01",
	       7);
	assert_false(client_build_bss_from_image(garbage, sizeof(garbage), &bss));
	assert_false(client_build_bss_from_image(NULL, 10, &bss));
	assert_false(client_build_bss_from_fd(-1, &bss));
}

static void check_real_lib(const char *path, uint32_t want)
{
	uint64_t bss = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		skip_because("missing-package: %s (libpcsclite1 of that architecture; "
			     "scripts/install-deps --tests installs it)",
			     path);
	assert_true(client_build_bss_from_fd(fd, &bss));
	close(fd);
	print_message("%s: .bss %llu\n", path, (unsigned long long)bss);
	assert_int_equal(client_build_slots_from_bss(bss), want);
}

/* A peers dir of tests/peers/build-pcsc-lite, if there is one. */
static void check_peer(const char *peer, const char *file, uint32_t want)
{
	const char *dir = getenv("SCARDD_PEERS_DIR");
	char path[1024];

	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/%s/lib/%s", dir, peer, file);
	check_real_lib(path, want);
}

static void test_real_libraries(void **state)
{
	(void)state;
	if (!have_libelf)
		skip_because(NO_LIBELF);
	check_real_lib(DEBIAN_LIB, 16);
	check_real_lib(DEBIAN_LIB32, 16);  /* ELF32 */
	check_real_lib(DEBIAN_LIB_BE, 16); /* big-endian */
	check_peer("fedora48", "libpcsclite.so.1", 48);
	check_peer("pcsc44", "libpcsclite.so.1", 16);
	check_peer("pcsc45", "libpcsclite_real.so.1", 16);
	check_peer("pcsc45", "libpcsclite.so.1", 0);
	check_peer("pcsc46", "libpcsclite_real.so.1", 0);
}

/* --- maps parsing ---------------------------------------------------- */

static void test_maps_line(void **state)
{
	struct client_build_map m;
	(void)state;

	const char *l = "7f1c2a000000-7f1c2a004000 r--p 00000000 fe:00 1180123                    "
			"/usr/lib/x86_64-linux-gnu/libpcsclite.so.1.0.0";
	assert_true(client_build_parse_maps_line(l, strlen(l), &m));
	assert_true(m.start == 0x7f1c2a000000ull && m.end == 0x7f1c2a004000ull);
	assert_int_equal(m.dev_major, 0xfe);
	assert_int_equal(m.dev_minor, 0);
	assert_int_equal(m.inode, 1180123);
	assert_false(m.deleted);
	assert_string_equal(m.path, "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1.0.0");

	l = "08048000-08049000 r-xp 00001000 103:02 42 /opt/my lib/libpcsclite.so.1 (deleted)\n";
	assert_true(client_build_parse_maps_line(l, strlen(l), &m));
	assert_int_equal(m.dev_major, 0x103);
	assert_int_equal(m.dev_minor, 2);
	assert_true(m.deleted);
	assert_string_equal(m.path, "/opt/my lib/libpcsclite.so.1");

	/* not a file mapping, or malformed */
	static const char *const bad[] = {
		"7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]",
		"7ffd1000-7ffd2000 rw-p 00000000 00:00 0",
		"55868b4c7000-55868b4c9000 r--p 00000000 fe:00 0          /usr/bin/cat",
		"7ffd1000-7ffd2000 rw-p 00000000 fe:00 12 relative/path",
		"7ffd2000-7ffd1000 r--p 00000000 fe:00 12 /x/libpcsclite.so.1",
		"7ffd1000 7ffd2000 r--p 00000000 fe:00 12 /x/libpcsclite.so.1",
		"7ffd1000-7ffd2000 r-p 00000000 fe:00 12 /x/libpcsclite.so.1",
		"7ffd1000-7ffd2000 r--p 00000000 fe00 12 /x/libpcsclite.so.1",
		"7ffd1000-7ffd2000 r--p 00000000 1000:00 12 /x/libpcsclite.so.1",
		"7ffd1000-7ffd2000 r--p 00000000 fe:00 12",
		"",
		"/x/libpcsclite.so.1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(client_build_parse_maps_line(bad[i], strlen(bad[i]), &m));

	/* a NUL inside, and a path too long for the buffer */
	static const char nul[] = "1000-2000 r--p 0 fe:00 12 /x/lib\0pcsclite.so.1";
	assert_false(client_build_parse_maps_line(nul, sizeof(nul) - 1, &m));
	size_t big = CLIENT_BUILD_PATH_MAX + 64;
	char *line = malloc(big);
	assert_non_null(line);
	memset(line, 'a', big);
	memcpy(line, "1000-2000 r--p 0 fe:00 12 /", 27);
	assert_false(client_build_parse_maps_line(line, big, &m));
	free(line);
}

/* maps of a pcsc-lite 2.x client: the redirector and the real library */
static const char maps_2x[] =
	"55868b4c7000-55868b4c9000 r--p 00000000 fe:00 247134    /usr/bin/pcsc_scan\n"
	"7f00000000-7f00001000 r--p 00000000 fe:00 500    /usr/lib/libpcsclite.so.1.0.0\n"
	"7f00001000-7f00003000 r-xp 00001000 fe:00 500    /usr/lib/libpcsclite.so.1.0.0\n"
	"7f10000000-7f10004000 r--p 00000000 fe:00 501    /usr/lib/libpcsclite_real.so.1.0.0\n"
	"7f10004000-7f10009000 r-xp 00004000 fe:00 501    /usr/lib/libpcsclite_real.so.1.0.0\n"
	"7ffd1000-7ffd2000 rw-p 00000000 00:00 0          [stack]\n";

static void test_pick(void **state)
{
	struct client_build_map m;
	(void)state;

	assert_true(client_build_find_lib(maps_2x, strlen(maps_2x), &m));
	assert_string_equal(m.path, "/usr/lib/libpcsclite_real.so.1.0.0");
	assert_int_equal(m.inode, 501);
	assert_true(m.start == 0x7f10000000ull);

	/* 1.x: only libpcsclite.so (no trailing newline either) */
	const char *one = "7f00000000-7f00001000 r--p 00000000 fe:00 500 /usr/lib/libpcsclite.so.1";
	assert_true(client_build_find_lib(one, strlen(one), &m));
	assert_int_equal(m.inode, 500);

	/* major 0 (overlayfs, FUSE, tmpfs): no guess, and no falling back to
	 * the redirector when the real library is there */
	char text[2048];
	snprintf(text, sizeof(text), "%s", maps_2x);
	memcpy(strstr(text, "fe:00 501"), "00:2a", 5);
	memcpy(strstr(text, "fe:00 501"), "00:2a", 5);
	assert_false(client_build_find_lib(text, strlen(text), &m));
	const char *fuse = "7f00000000-7f00001000 r--p 00000000 00:31 500 /home/u/libpcsclite.so.1";
	assert_false(client_build_find_lib(fuse, strlen(fuse), &m));

	/* two different real libraries: doubt */
	snprintf(text, sizeof(text), "%s%s", maps_2x,
		 "7f20000000-7f20004000 r--p 00000000 fe:00 777 /opt/libpcsclite_real.so.1\n");
	assert_false(client_build_find_lib(text, strlen(text), &m));

	/* none, or a name that only looks alike */
	const char *none =
		"7f00000000-7f00001000 r--p 00000000 fe:00 500 /usr/lib/libpcsclite-x.so\n"
		"7f00000000-7f00001000 r--p 00000000 fe:00 501 /libpcsclite.so/libc.so.6\n";
	assert_false(client_build_find_lib(none, strlen(none), &m));
	assert_false(client_build_find_lib("", 0, &m));
}

/* --- a real process -------------------------------------------------- */

struct mapper {
	pid_t pid;
	int release; /* write end: closing it ends the child */
};

/* A child that maps path (read-only) and waits. */
static void spawn_mapper(const char *path, struct mapper *mp)
{
	int ready[2], hold[2];

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(hold), 0);
	mp->pid = fork();
	assert_true(mp->pid >= 0);
	char c;
	if (mp->pid == 0) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;

		close(ready[0]);
		close(hold[1]);
		if (fd < 0 || fstat(fd, &st) != 0 ||
		    mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
			_exit(1);
		close(fd);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		while (read(hold[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(ready[1]);
	close(hold[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	mp->release = hold[1];
}

static void stop_mapper(struct mapper *mp)
{
	int status;

	close(mp->release);
	assert_int_equal(waitpid(mp->pid, &status, 0), mp->pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static bool on_block_device(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return major(st.st_dev) != 0;
}

/* A guess is only made for a library on a block device (see
 * test_process_off_block_device for the other side of that rule). */
static void need_guess_for(const char *path)
{
	if (!have_libelf)
		skip_because(NO_LIBELF);
	if (!on_block_device(path))
		skip_because("environment: %s is not on a block device, where a guess is made",
			     path);
}

static void test_process_debian_lib(void **state)
{
	static const char *const libs[] = { DEBIAN_LIB, DEBIAN_LIB32, DEBIAN_LIB_BE };
	(void)state;

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		if (access(libs[i], R_OK) != 0)
			skip_because(
				"missing-package: %s (scripts/install-deps --tests installs it)",
				libs[i]);
		need_guess_for(libs[i]);
	}
	/* this test program maps no libpcsclite */
	assert_int_equal(client_build_guess_slots(getpid()), 0);
	assert_int_equal(client_build_guess_slots(0), 0);
	client_build_cache_reset();
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		struct mapper mp;

		spawn_mapper(libs[i], &mp);
		assert_int_equal(client_build_guess_slots(mp.pid), 16);
		assert_int_equal(client_build_guess_slots(mp.pid), 16);
		stop_mapper(&mp);
	}
	/* one parse per library, the second guess from the cache */
	struct client_build_stats st;
	client_build_stats(&st);
	assert_int_equal(st.parses, 3);
	assert_int_equal(st.hits, 3);
}

/* A synthetic 48-record library written under dir_template (a mkdtemp
 * template), mapped by a child: the guess for that child. */
static uint32_t guess_synthetic_48(char *dir_template, bool need_block_device)
{
	struct elf_spec s = { .is64 = true, .bss = 48 * REC + 300, .type = 3 };
	char path[128];
	struct image im;

	assert_non_null(mkdtemp(dir_template));
	snprintf(path, sizeof(path), "%s/libpcsclite.so.1", dir_template);
	make_elf(&im, &s);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(im.b, 1, im.len, f), im.len);
	fclose(f);
	if (need_block_device && !on_block_device(path)) {
		unlink(path);
		rmdir(dir_template);
		need_guess_for(path);
	}
	if (!need_block_device && on_block_device(path)) {
		unlink(path);
		rmdir(dir_template);
		skip_because("environment: %s is on a block device; the test needs tmpfs", path);
	}
	struct mapper mp;
	spawn_mapper(path, &mp);
	uint32_t slots = client_build_guess_slots(mp.pid);
	stop_mapper(&mp);
	unlink(path);
	rmdir(dir_template);
	return slots;
}

/* In the build directory (on a block device): guessed from the file. */
static void test_process_synthetic_48(void **state)
{
	char dir[] = "client_build_XXXXXX";
	(void)state;

	if (!have_libelf)
		skip_because(NO_LIBELF);
	assert_int_equal(guess_synthetic_48(dir, true), 48);
}

/* The same library on tmpfs (major 0, like overlayfs, NFS or FUSE, where a
 * process could serve other bytes than it maps): no guess. */
static void test_process_off_block_device(void **state)
{
	char dir[] = "/dev/shm/client_build_XXXXXX";
	(void)state;

	assert_int_equal(guess_synthetic_48(dir, false), 0);
}

static bool same_mount(const char *a, const char *b)
{
	struct statx sa, sb;

	return statx(AT_FDCWD, a, 0, STATX_MNT_ID, &sa) == 0 &&
	       statx(AT_FDCWD, b, 0, STATX_MNT_ID, &sb) == 0 && (sa.stx_mask & STATX_MNT_ID) &&
	       (sb.stx_mask & STATX_MNT_ID) && sa.stx_mnt_id == sb.stx_mnt_id;
}

/* Not before Linux 5.6, nor under valgrind 3.19. */
static bool have_openat2(void)
{
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC };
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));

	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

/* The opener: map_files, the root fallback, and the inode check. */
static void test_open_mapped(void **state)
{
	struct mapper mp;
	(void)state;

	if (access(DEBIAN_LIB, R_OK) != 0)
		skip_because("missing-peer: %s (Debian's libpcsclite1)", DEBIAN_LIB);
	if (!on_block_device(DEBIAN_LIB))
		skip_because("environment: %s is not on a block device", DEBIAN_LIB);
	spawn_mapper(DEBIAN_LIB, &mp);
	char maps_path[64];
	snprintf(maps_path, sizeof(maps_path), "/proc/%d/maps", (int)mp.pid);
	int fd = open(maps_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	/* procfs hands out maps a page at a time */
	char text[1 << 18];
	size_t used;
	ssize_t n;
	for (used = 0; used < sizeof(text) && (n = read(fd, text + used, sizeof(text) - used)) > 0;)
		used += (size_t)n;
	close(fd);
	assert_true(used > 0 && used < sizeof(text));
	struct client_build_map m;
	assert_true(client_build_find_lib(text, used, &m));

	fd = client_build_open_mapped(mp.pid, &m);
	assert_true(fd >= 0);
	close(fd);
	/* no such mapping: the path inside the client's root serves, if it
	 * crosses no mount point */
	struct client_build_map other = m;
	other.start = 0x1000, other.end = 0x2000;
	fd = client_build_open_mapped(mp.pid, &other);
	if (same_mount("/", m.path) && have_openat2())
		assert_true(fd >= 0);
	else
		assert_int_equal(fd, -1);
	if (fd >= 0)
		close(fd);
	/* ... unless the file is gone */
	other.deleted = true;
	assert_int_equal(client_build_open_mapped(mp.pid, &other), -1);
	/* another inode than maps names: refused */
	other = m;
	other.inode++;
	assert_int_equal(client_build_open_mapped(mp.pid, &other), -1);
	other.start = 0x1000, other.end = 0x2000;
	assert_int_equal(client_build_open_mapped(mp.pid, &other), -1);
	other = m;
	other.dev_major = 0;
	assert_int_equal(client_build_open_mapped(mp.pid, &other), -1);
	stop_mapper(&mp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule),
		cmocka_unit_test(test_synthetic_elf),
		cmocka_unit_test(test_bad_elf),
		cmocka_unit_test(test_real_libraries),
		cmocka_unit_test(test_maps_line),
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_process_debian_lib),
		cmocka_unit_test(test_process_synthetic_48),
		cmocka_unit_test(test_process_off_block_device),
		cmocka_unit_test(test_open_mapped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
