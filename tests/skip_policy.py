"""Which skips are allowed: the one list, for pytest (tests/integration/
skip_plugin.py) and for the cmocka unit tests (tests/unit/cmocka_tap.py).

Every skip reason starts with its kind: "kind: what is missing". Only the
DELIBERATE kinds may skip when skips are strict (SCARDD_STRICT_SKIPS=1, set
by scripts/run-tests and .ci/run): any other skip, a kind from MUST_NOT_SKIP
or a reason with no known kind at all, is turned into a failure there. Run
outside scripts/run-tests (pytest or meson test by hand), skips stay skips.
The README's Tests section shows both lists; keep them in step.
"""
import os

# Skips that are part of the design: the test cannot mean anything in that run.
DELIBERATE = {
    "scardd-only": "a test of scardd itself (its command line, its own protocol peers) in a run "
                   "against Debian's pcscd (SCARDD_TEST_DAEMON=pcscd)",
    "pcscd-only": "a check of Debian's pcscd itself (the reference a scardd test is compared "
                  "with) in a run against scardd",
    "sanitized-only": "a check of the ASan/UBSan run itself (what its leak reports name) in "
                      "the plain run",
    "sanitizer": "the ASan/UBSan run (SCARDD_SANITIZED=1): an instrumented libpcsclite or driver "
                 "cannot load into Debian's uninstrumented programs (python3/pyscard, pcscd); the "
                 "Debian package test, whose package dpkg-buildpackage builds without sanitizers "
                 "(the plain run tests it)",
    "no-release": "a pcsc-lite protocol range no Debian source reachable from here serves any "
                  "more (4:2, 4:3: gone with the suites that carried them); the builder names "
                  "what it searched. The ranges the suite needs (4:4, 4:5, 4:6, Fedora's 48) "
                  "fail instead of skipping",
}

# Reasons that must never skip in CI: each means the machine lacks something
# the suite needs, and a skip would hide that the test did not run.
MUST_NOT_SKIP = {
    "missing-peer": "a real peer is not installed (vpcd, vicc, pcscd, libpcsclite1, libccid, "
                    "pcsc-tools, opensc, valgrind): run scripts/install-deps --tests",
    "missing-package": "a Debian package the test reads is not installed: run "
                       "scripts/install-deps --tests",
    "download-failed": "the real pcsc-lite sources could not be fetched or built "
                       "(tests/peers/build-pcsc-lite)",
    "no-namespace": "no private mount namespace (needs root and unshare)",
    "no-foreign-arch": "the i386 or s390x clients cannot run (multiarch packages, binfmt, qemu-user)",
    "not-built": "a part of this build is missing (scardd without libelf, the fault driver, scard)",
    "environment": "the machine cannot provide what the test needs (file-descriptor limit, "
                   "a block device, a system pcscd in the way)",
}


def strict():
    return os.environ.get("SCARDD_STRICT_SKIPS", "") not in ("", "0")


def kind(reason):
    """The kind a skip reason starts with, or None."""
    head = (reason or "").split(":", 1)[0].strip()
    return head if head in DELIBERATE or head in MUST_NOT_SKIP else None


def allowed(reason):
    """Whether a test may skip for this reason in strict mode."""
    return kind(reason) in DELIBERATE


def refusal(reason):
    """The failure text for a skip strict mode does not allow."""
    k = kind(reason)
    if k is None:
        why = "its reason names no kind from tests/skip_policy.py"
    else:
        why = "'%s' must never skip in CI (%s)" % (k, MUST_NOT_SKIP[k])
    return "skip not allowed (SCARDD_STRICT_SKIPS=1): %s: %s" % (why, reason or "(no reason given)")
