"""The Debian package (debian/, scripts/build-deb; README "Debian package").

Built from the tree, then taken through a machine's whole story in a clean
Debian 12 minbase root (deb_root.py): Debian's pcscd, libpcsclite1 and
pcsc-tools from the archive; our .deb installed over pcscd; scardd started
as its units start it (systemd-socket-activate on scardd.socket's
ListenStream= running scardd.service's ExecStart=, on the first connection);
Debian's pcsc_scan, run as nobody, seeing ifd-virtual's card configured from
the package's example; then `apt-get install pcscd` switching back, and the
root as it was before, nothing of ours left but the pcscd account.

The package is built without its unit tests (DEB_BUILD_OPTIONS=nocheck):
scripts/run-tests runs them. A week's first run also bootstraps the root
(about 3 minutes, then cached: deb_root.py).
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, SANITIZED, spawn, stop_process
import deb_root
from pcsc_raw import wait_for

pytestmark = [
    pytest.mark.watchdog(1800),
    pytest.mark.skipif(SANITIZED, reason="sanitizer: the package is built by dpkg-buildpackage "
                                         "without sanitizers; the plain run tests it"),
]

BUILD_TIMEOUT = 1200
BUILTIN_ATR = "3B 88 80 01 76 63 61 72 64 2D 30 31 47"  # ifd-virtual's built-in card
UNIT_DIR = "/lib/systemd/system"
# Paths of the root never compared before/after: kernel and runtime file
# systems, apt's and dpkg's own records, logs, caches.
VOLATILE = ("proc", "sys", "dev", "run", "tmp", "var/cache", "var/lib/apt", "var/lib/dpkg",
            "var/log", "root/.cache")
# The account tools' backups of the files they edit (useradd/groupadd).
ACCOUNT_BACKUPS = {"etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-"}


def meson_version():
    text = (REPO / "meson.build").read_text()
    return re.search(r"version\s*:\s*'([^']+)'", text).group(1)


@pytest.fixture(scope="module")
def deb():
    """scripts/build-deb's .deb, built from this tree."""
    if os.geteuid() != 0:
        pytest.skip("no-namespace: the package test needs root (debootstrap, chroot, unshare)")
    out = Path(tempfile.mkdtemp(prefix="scardd-deb-"))
    try:
        env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck")
        start = time.monotonic()
        r = subprocess.run([str(REPO / "scripts" / "build-deb"), "--out", str(out)], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        if r.returncode != 0:
            pytest.fail("scripts/build-deb failed (exit %d):\n%s"
                        % (r.returncode, (r.stdout + r.stderr)[-6000:]), pytrace=False)
        path = Path(r.stdout.strip().splitlines()[-1])
        assert path.is_file(), "scripts/build-deb printed %s, which is not a file" % path
        print("package built in %.0f s: %s" % (time.monotonic() - start, path.name))
        yield path
    finally:
        shutil.rmtree(out, ignore_errors=True)


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


def deb_paths(deb):
    """Every path in the package, without the leading '.'."""
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    return [line.split(None, 5)[5].split(" -> ")[0][1:].rstrip("/") or "/" for line in out.splitlines()]


def deb_script(deb, name):
    r = subprocess.run(["sh", "-c", 'dpkg-deb --ctrl-tarfile "$1" | tar -xOf - "./$2"', "sh", str(deb), name],
                       capture_output=True, text=True)
    return r.stdout


def test_package_contents_and_relations(deb):
    """What the .deb declares and holds: pcscd's place, not libpcsclite1's."""
    assert deb_field(deb, "Version") == meson_version(), "debian/changelog and meson.build disagree"
    for rel in ("Provides", "Conflicts", "Replaces"):
        assert deb_field(deb, rel) == "pcscd", rel
    depends = deb_field(deb, "Depends")
    assert re.search(r"\blibpcsclite1\b", depends), "scard uses Debian's libpcsclite1: " + depends
    assert re.search(r"\blibudev1\b", depends), "USB readers through libudev: " + depends
    names = {d.split()[0] for alt in depends.split(",") for d in alt.split("|")}
    assert not names & {"systemd", "systemd-sysusers"}, "the package must install without systemd: " + depends
    paths = deb_paths(deb)
    for want in ("/usr/sbin/scardd", "/usr/bin/scard",
                 "/usr/lib/pcsc/drivers/ifd-virtual.bundle/Contents/Linux/libifd-virtual.so",
                 "/usr/lib/pcsc/drivers/ifd-virtual.bundle/Contents/Info.plist",
                 UNIT_DIR + "/scardd.socket", UNIT_DIR + "/scardd.service",
                 "/usr/lib/sysusers.d/scardd.conf", "/usr/lib/tmpfiles.d/scardd.conf",
                 "/usr/lib/udev/rules.d/92-scardd.rules",
                 "/usr/share/scardd/ifd-virtual/ifd-virtual", "/usr/share/scardd/ifd-virtual/virtual.conf",
                 "/usr/share/man/man8/scardd.8.gz", "/usr/share/man/man1/scard.1.gz",
                 "/usr/share/doc/scardd/copyright", "/usr/share/doc/scardd/policy.conf.example"):
        assert want in paths, "%s missing from the package:\n%s" % (want, "\n".join(paths))
    ours = [p for p in paths if "libpcsclite" in p or p.startswith("/usr/include")]
    assert not ours, "Debian's libpcsclite1/-dev own these: %s" % ours
    postinst = deb_script(deb, "postinst")
    for unit in ("scardd.socket", "scardd.service"):
        assert "deb-systemd-helper enable '%s'" % unit in postinst, "%s not enabled by the postinst" % unit
    assert "systemd-tmpfiles" in postinst and "scardd.conf" in postinst
    assert "useradd" in postinst and "systemd-sysusers" in postinst
    assert "deb-systemd-helper purge" in deb_script(deb, "postrm")


# --- the clean root -------------------------------------------------------------------

def tree(root):
    """{path: kind} of everything in the root outside VOLATILE."""
    out = {}
    base = str(root.path)
    for d, dirs, files in os.walk(base):
        rel = os.path.relpath(d, base)
        if rel != "." and (rel in VOLATILE or rel.startswith(tuple(v + "/" for v in VOLATILE))):
            dirs[:] = []
            continue
        for name in dirs + files:
            p = os.path.join(d, name)
            kind = "l" if os.path.islink(p) else "d" if os.path.isdir(p) else "f"
            out[os.path.relpath(p, base)] = kind
    return out


def dpkg_status(root, pkg):
    r = root.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg], check=False)
    return r.stdout.strip() if r.returncode == 0 else "un"


def unit_lines(root, unit, key):
    text = root.file(UNIT_DIR + "/" + unit).read_text()
    return [line.split("=", 1)[1].strip() for line in text.splitlines() if line.strip().startswith(key + "=")]


def unit_environment(root, service):
    """The variables EnvironmentFile= gives the service (files that exist)."""
    env = {}
    for name in unit_lines(root, service, "EnvironmentFile"):
        f = root.file(name.lstrip("-"))
        if name.startswith("-") and not f.exists():
            continue
        for line in f.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip().strip('"')
    return env


def exec_start(root, service):
    """ExecStart= as systemd runs it: an unquoted $VAR is split into words,
    an unset or empty one gives none."""
    lines = unit_lines(root, service, "ExecStart")
    assert len(lines) == 1, "%s: one ExecStart= expected, not %s" % (service, lines)
    env = unit_environment(root, service)
    argv = []
    for word in shlex.split(lines[0].lstrip("-@+!")):
        m = re.fullmatch(r"\$\{?(\w+)\}?", word)
        argv.extend(env.get(m.group(1), "").split() if m else [word])
    return argv


def service_account(root):
    """User= and Group= of scardd.service as numbers in the root, or None."""
    user = unit_lines(root, "scardd.service", "User")
    if not user:
        return None
    group = unit_lines(root, "scardd.service", "Group") or [None]
    pw = root.run(["getent", "passwd", user[0]]).stdout.split(":")
    gid = int(root.run(["getent", "group", group[0]]).stdout.split(":")[2]) if group[0] else int(pw[3])
    return int(pw[2]), gid


def start_as_units(root):
    """scardd.socket and scardd.service as systemd would run them, without
    systemd as PID 1: systemd-socket-activate binds ListenStream= (as root,
    SocketMode= applied before anyone connects) and on the first connection
    runs ExecStart= in the root as User=/Group=, with RuntimeDirectory= made
    for that account. The service's sandboxing (Protect*=, Restrict*=, ...)
    only takes away and is not reproduced. The process keeps the pid spawn
    returns (every step execs)."""
    listen = unit_lines(root, "scardd.socket", "ListenStream")
    assert len(listen) == 1, listen
    ids = service_account(root)
    chroot_opts = ["--userspec=%d:%d" % ids] if ids else []
    for name in " ".join(unit_lines(root, "scardd.service", "RuntimeDirectory")).split():
        d = root.file("/run/" + name)
        d.mkdir(exist_ok=True)
        mode = unit_lines(root, "scardd.service", "RuntimeDirectoryMode") or ["0755"]
        os.chmod(d, int(mode[0], 8))
        if ids:
            os.chown(d, *ids)
    argv = exec_start(root, "scardd.service")
    cmd = root.argv(argv, host_prefix=["systemd-socket-activate", "-l", listen[0]], bind_run=True,
                    chroot_opts=chroot_opts)
    log = open(root.path / "tmp" / "scardd.log", "w")
    p = spawn(cmd, env=deb_root.ENV, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    sock = root.file(listen[0])
    wait_for(lambda: sock.exists() or p.poll() is not None, 30, what="the activation socket")
    assert p.poll() is None, "systemd-socket-activate ended:\n" + daemon_log(root)
    mode = unit_lines(root, "scardd.socket", "SocketMode")
    if mode:
        os.chmod(sock, int(mode[0], 8))
    return p


def daemon_log(root):
    f = root.path / "tmp" / "scardd.log"
    return f.read_text()[-4000:] if f.exists() else "(no log)"


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


@pytest.fixture(scope="module")
def root():
    top = Path(tempfile.mkdtemp(prefix="scardd-debroot-"))
    try:
        yield deb_root.Root.unpack(top / "root")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_in_a_clean_debian_12(deb, root):
    times = {}
    t = time.monotonic()

    # A Debian 12 machine with the PC/SC stack Debian sets up.
    root.apt_install("pcscd", "libpcsclite1", "pcsc-tools")
    assert dpkg_status(root, "pcscd") == "ii"
    before = tree(root)
    accounts_before = {f: set(root.file(f).read_text().splitlines()) for f in ("/etc/passwd", "/etc/group")}
    times["archive packages"] = time.monotonic() - t
    t = time.monotonic()

    # Ours over it: apt takes pcscd away (Conflicts), its configuration stays.
    shutil.copy(deb, root.file("/tmp"))
    r = root.apt_install("/tmp/" + deb.name)
    assert re.search(r"REMOVED:\s+pcscd\b", r.stdout), r.stdout
    assert dpkg_status(root, "scardd") == "ii"
    assert dpkg_status(root, "pcscd") == "rc"
    assert dpkg_status(root, "libpcsclite1") == "ii", "Debian's library stays the clients'"
    account = root.run(["getent", "passwd", "pcscd"]).stdout.strip().split(":")
    uid = int(account[2])
    assert uid < 1000 and account[6] in ("/usr/sbin/nologin", "/sbin/nologin"), account
    assert root.run(["getent", "group", "pcscd"]).stdout.startswith("pcscd:")
    wants = root.file("/etc/systemd/system/sockets.target.wants/scardd.socket")
    assert os.readlink(wants).endswith("/scardd.socket"), "scardd.socket not enabled"
    times["install"] = time.monotonic() - t
    t = time.monotonic()

    # What boot does before the socket: tmpfiles.d (the machine's
    # systemd-tmpfiles on the root; the root has no systemd).
    subprocess.run(["systemd-tmpfiles", "--root=" + str(root.path), "--create", "scardd.conf"], check=True)
    st = os.stat(root.file("/run/pcscd"))
    assert st.st_uid == uid, "/run/pcscd should belong to pcscd"

    # A virtual reader with a card, from the package's own example.
    root.sh("mkdir -p /etc/scardd && cp /usr/share/scardd/ifd-virtual/ifd-virtual /etc/reader.conf.d/ && "
            "cp /usr/share/scardd/ifd-virtual/virtual.conf /etc/scardd/")

    p = start_as_units(root)
    try:
        # the first connection starts scardd; an ordinary user's pcsc_scan
        scan = root.run(["chroot", "--userspec=nobody:nogroup", "/", "pcsc_scan", "-c", "-n", "-t", "2"],
                        check=False, timeout=120)
        assert scan.returncode == 0 and "Virtual Reader 00 00" in scan.stdout, \
            "pcsc_scan: exit %d\n%s%s\nscardd:\n%s" % (scan.returncode, scan.stdout, scan.stderr, daemon_log(root))
        assert "Card inserted" in scan.stdout and BUILTIN_ATR in scan.stdout, scan.stdout
        assert p.poll() is None, "scardd ended:\n" + daemon_log(root)
        assert proc_uid(p.pid) == uid, "scardd should run as pcscd:\n" + daemon_log(root)
        # scard from the package, on Debian's libpcsclite1: a second card
        root.run(["scard", "virtual", "insert", "Virtual Reader 00 01", "builtin"])
        listed = root.run(["scard", "list"]).stdout
        assert listed.count(BUILTIN_ATR.replace(" ", "")) == 2 or listed.count(BUILTIN_ATR) == 2, listed
    finally:
        status = stop_process(p)
    assert status == 0, "scardd on SIGTERM: exit %s\n%s" % (status, daemon_log(root))
    times["scardd serving"] = time.monotonic() - t
    t = time.monotonic()

    # Switching back is one step: apt takes scardd away (Conflicts).
    root.sh("rm -r /etc/reader.conf.d/ifd-virtual /etc/scardd")  # the example copies are the test's
    r = root.apt_install("pcscd")
    assert re.search(r"REMOVED:\s+scardd\b", r.stdout), r.stdout
    assert dpkg_status(root, "pcscd") == "ii"
    if dpkg_status(root, "scardd") != "un":
        root.run(["dpkg", "--purge", "scardd"])
    assert dpkg_status(root, "scardd") == "un"
    root.run(["apt-get", "autoremove", "--purge", "-y", "-q"])  # libelf1, libexpat1 came with scardd
    times["switch back"] = time.monotonic() - t

    # Nothing of ours left: the root is as it was, pcscd's units enabled
    # again; only the pcscd account stays (debian/scardd.postrm says why).
    after = tree(root)
    new = sorted(set(after) - set(before) - ACCOUNT_BACKUPS)
    gone = sorted(set(before) - set(after))
    assert not new, "left behind: %s" % new
    assert not gone, "missing after switching back: %s" % gone
    changed = sorted(p for p in before if p in after and before[p] != after[p])
    assert not changed, "changed kind: %s" % changed
    leftovers = root.sh("find / -xdev -name '*scardd*' -not -path '/proc/*' -not -path '/tmp/*' "
                        "-not -path '/var/cache/*' -not -path '/var/log/*'").stdout.split()
    assert not leftovers, leftovers
    for f, lines in accounts_before.items():
        added = set(root.file(f).read_text().splitlines()) - lines
        assert [line.split(":")[0] for line in added] == ["pcscd"], "%s gained %s" % (f, added)
        assert lines <= set(root.file(f).read_text().splitlines()), "%s lost entries" % f
    assert os.readlink(root.file("/etc/systemd/system/sockets.target.wants/pcscd.socket")).endswith(
        "/pcscd.socket"), "pcscd.socket not enabled again"

    # And pcscd serves again (the socket file scardd.socket left is what
    # systemd would replace when it binds pcscd.socket).
    os.unlink(root.file("/run/pcscd/pcscd.comm"))
    pcscd = spawn(root.argv(["/usr/sbin/pcscd", "--foreground"]), env=deb_root.ENV,
                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: root.file("/run/pcscd/pcscd.comm").exists() or pcscd.poll() is not None, 30,
                 what="pcscd's socket")
        scan = root.run(["pcsc_scan", "-r"], check=False, timeout=60)
        assert "No reader found" in scan.stdout + scan.stderr and "SCardEstablishContext" not in scan.stderr, \
            scan.stdout + scan.stderr
    finally:
        stop_process(pcscd)
    print("times: " + ", ".join("%s %.0f s" % kv for kv in times.items()))
