/*
 * What every unit-test program shares: skips that say why, and stdout
 * flushed line by line (meson reads each case's TAP line as it comes, and a
 * program that crashes must not take its earlier results with it).
 */
#ifndef UNIT_SUPPORT_H
#define UNIT_SUPPORT_H

/* Prints "# skip: <reason>" for tests/unit/cmocka_tap.py. The reason starts
 * with its kind, "kind: what is missing" (tests/skip_policy.py lists the
 * kinds; only the deliberate ones may skip in CI). Include after cmocka.h. */
void unit_skip_reason(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define skip_because(...) \
	do { \
		unit_skip_reason(__VA_ARGS__); \
		skip(); \
	} while (0)

#endif
