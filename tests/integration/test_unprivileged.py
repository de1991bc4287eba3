"""scardd without root (issue 11, item 3).

`--user USER[:GROUP]` gives up root after the sockets are bound and before any
driver is loaded, for good; started as root without --user, scardd becomes the
default account (pcscd) when it exists and refuses to start when it does not
(drivers never run as root unless asked for); `--user root` keeps root on
purpose. The socket options mode= and
group= decide who may connect. Clients are Debian's libpcsclite (pyscard)
under other uids (setpriv).

The accounts come from the tree's own sysusers.d entry (systemd-sysusers
--root) in a copy of /etc/passwd and /etc/group, which each daemon sees in a
private mount namespace: the machine's account database is never changed.
"""
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import pcsc_raw as raw
import pcscd_ns
from conftest import IS_PCSCD, PYTHON, REPO, _die_with_parent, scardd_binary, spawn, stop_process
from virtual_env import DRIVER, reader_stanza, virtual_conf

NOBODY = 65534
TIMEOUT = 30.0
READER = "Virtual Reader 00 00"
SELECT = [0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x73, 0x63, 0x61, 0x72, 0x64, 0x64]
SYSUSERS = REPO / "systemd" / "scardd.sysusers.conf"
TMPFILES = REPO / "systemd" / "scardd.tmpfiles.conf"
SCARD_E_NO_SERVICE = 0x8010001D

pytestmark = [
    pytest.mark.skipif(IS_PCSCD, reason="scardd-only: --user and the socket's mode=/group= are scardd's"),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                       reason="environment: needs root and setpriv to switch users"),
]

# Debian's libpcsclite through pyscard; prints one JSON object.
CLIENT = r'''
import json, os, sys
from smartcard import scard as s
out = {"uid": os.getuid(), "groups": sorted(os.getgroups())}
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
out["establish"] = hr & 0xFFFFFFFF
if hr == 0:
    hr, readers = s.SCardListReaders(ctx, [])
    out["readers"] = readers if hr == 0 else []
    hr, card, proto = s.SCardConnect(ctx, sys.argv[1], s.SCARD_SHARE_SHARED,
                                     s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
    out["connect"] = hr
    if hr == 0:
        hr, resp = s.SCardTransmit(card, proto, json.loads(sys.argv[2]))
        out["transmit"], out["sw"] = hr, resp[-2:]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def accounts():
    """Copies of the machine's passwd and group with the tree's sysusers.d
    entry applied (the pcscd account), plus a group `scardd-extra` pcscd is a
    member of and a group `scardd-sock` for socket access; a copy without
    pcscd; and one where pcscd is uid 0. Each daemon sees one of them (see
    Daemon)."""
    if not pcscd_ns.private_mount_ok():
        pytest.skip("no-namespace: the test accounts live in a private mount namespace")
    if not shutil.which("systemd-sysusers"):
        pytest.skip("missing-package: systemd (systemd-sysusers)")
    root = Path(tempfile.mkdtemp(prefix="scardd-accounts-"))
    root.chmod(0o755)  # clients of other uids reach a socket under it
    try:
        with_acct, without, uid0 = root / "with", root / "without", root / "uid0"
        for r in (with_acct, without, uid0):
            (r / "etc").mkdir(parents=True)
            for name in ("passwd", "group"):
                lines = Path("/etc", name).read_text().splitlines(keepends=True)
                (r / "etc" / name).write_text("".join(l for l in lines if not l.startswith("pcscd:")))
        res = subprocess.run(["systemd-sysusers", "--root", str(with_acct), str(SYSUSERS)],
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert res.returncode == 0, "systemd-sysusers on %s: %s" % (SYSUSERS, res.stderr)
        pw = {l.split(":")[0]: l.split(":") for l in (with_acct / "etc" / "passwd").read_text().splitlines()}
        assert "pcscd" in pw, "the sysusers.d entry made no pcscd user"
        used = {int(l.split(":")[2]) for l in (with_acct / "etc" / "group").read_text().splitlines()}
        free = [g for g in range(64100, 65000) if g not in used][:2]
        with open(with_acct / "etc" / "group", "a") as f:
            f.write("scardd-extra:x:%d:pcscd\nscardd-sock:x:%d:\n" % tuple(free))
        with open(uid0 / "etc" / "passwd", "a") as f:
            f.write("pcscd:x:0:0:PC/SC smart card daemon:/nonexistent:/usr/sbin/nologin\n")
        yield {"with": with_acct, "without": without, "uid0": uid0, "uid": int(pw["pcscd"][2]),
               "gid": int(pw["pcscd"][3]), "shell": pw["pcscd"][6].strip(),
               "extra": free[0], "sock": free[1]}
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def world():
    """A directory every user can traverse: one ifd-virtual reader with the
    built-in card, its control socket under ctl/, the daemon's socket under
    run/ (created by scardd)."""
    d = Path(tempfile.mkdtemp(prefix="scardd-unpriv-"))
    d.chmod(0o755)
    (d / "ctl").mkdir()
    (d / "ctl").chmod(0o1777)  # the driver, running as whoever scardd became, binds there
    conf = d / "virtual.conf"
    conf.write_text(virtual_conf(1, str(d / "ctl" / "virtual.sock"), {0: "builtin"}))
    (d / "conf").mkdir()
    (d / "conf" / "virtual").write_text(reader_stanza("Virtual Reader", conf, DRIVER))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def proc_status(pid, task=None):
    path = "/proc/%d/status" % pid if task is None else "/proc/%d/task/%s/status" % (pid, task)
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.split()
    return out


class Daemon:
    """scardd started as root with the account database etc_root/etc. Its
    stdout and stderr go to one log, unless stdout_apart: then the log is
    stderr alone and stdout goes to .out beside it."""

    def __init__(self, world, etc_root, args, socket=None, socket_opts="", foreground=True, stdout_apart=False):
        self.world = world
        self.socket = str(socket or world / "run" / "pcscd.comm")
        self.log = world / ("scardd-%d.log" % len(list(world.glob("scardd-*.log"))))
        self.out = self.log.with_suffix(".out") if stdout_apart else None
        script = ('mount --bind "$0/etc/passwd" /etc/passwd && '
                  'mount --bind "$0/etc/group" /etc/group && exec "$@"')
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(etc_root),
                str(scardd_binary())] + (["--foreground"] if foreground else []) + [
                "--info", "--socket", self.socket + socket_opts, "-c", str(world / "conf")] + list(args)
        with open(self.log, "wb") as f, open(self.out or os.devnull, "wb") as out:
            self.proc = spawn(argv, stdout=out if self.out else f, stderr=f)

    def text(self):
        return self.log.read_text(errors="replace")

    def wait_ready(self):
        def ready():
            assert self.proc.poll() is None, "scardd exited %s:\n%s" % (self.proc.returncode, self.text())
            return READER in [rs.name for rs in raw.readers_state(self.socket)]
        raw.wait_for(ready, TIMEOUT, what="scardd serving %s" % READER)
        return self

    def status(self):
        return proc_status(self.proc.pid)

    def stop(self):
        rc = stop_process(self.proc, signal.SIGTERM, timeout=20)
        assert rc == 0, "scardd exited %s:\n%s" % (rc, self.text())


@pytest.fixture
def daemons():
    started = []
    yield started
    for d in started:
        stop_process(d.proc, signal.SIGKILL)


def client(socket, uid=NOBODY, groups=()):
    """pyscard (Debian's libpcsclite) as uid, with exactly these groups."""
    who = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid]
    who += ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=socket)
    res = subprocess.run(who + ["--", PYTHON, "-c", CLIENT, READER, json.dumps(SELECT)], env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, cwd="/",
                         preexec_fn=_die_with_parent)
    assert res.returncode == 0, "client as uid %d: %s" % (uid, res.stderr)
    out = json.loads(res.stdout)
    assert out["uid"] == uid and out["groups"] == sorted(groups), out
    return out


def assert_served(out):
    assert out["establish"] == 0, "SCardEstablishContext: 0x%08X" % out["establish"]
    assert out["readers"] == [READER], out
    assert out["connect"] == 0 and out["transmit"] == 0 and out["sw"] == [0x90, 0x00], out


def assert_dropped_for_good(status, uid, gid):
    """Every id is the target's (real, effective, saved, filesystem) and no
    capability is left: nothing in the process can become root again."""
    assert status["Uid"] == [str(uid)] * 4, status["Uid"]
    assert status["Gid"] == [str(gid)] * 4, status["Gid"]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[caps][0], 16) == 0, "%s %s" % (caps, status[caps])
    assert status["NoNewPrivs"] == ["1"], status["NoNewPrivs"]


def test_user_drops_root_before_drivers_and_serves_another_uid(accounts, world, daemons):
    uid, gid = accounts["uid"], accounts["gid"]
    d = Daemon(world, accounts["with"], ["--user", "pcscd"])
    daemons.append(d)
    d.wait_ready()
    st = d.status()
    assert_dropped_for_good(st, uid, gid)
    # the account's supplementary groups (from the group file), nothing else
    assert sorted(int(g) for g in st["Groups"]) == sorted([gid, accounts["extra"]]), st["Groups"]
    # every thread, the driver's own included, runs as the account
    for task in os.listdir("/proc/%d/task" % d.proc.pid):
        assert proc_status(d.proc.pid, task)["Uid"] == [str(uid)] * 4, task
    # the driver ran as the account: the control socket it made is the account's
    ctl = os.stat(world / "ctl" / "virtual.sock")
    assert (ctl.st_uid, ctl.st_gid) == (uid, gid), (ctl.st_uid, ctl.st_gid)
    text = d.text()
    assert text.index("running as user pcscd") < text.index("reader added"), text
    # the socket stays open to every user, and Debian's clients of another uid are served
    sock = os.stat(d.socket)
    assert stat.S_IMODE(sock.st_mode) == 0o666, oct(sock.st_mode)
    assert_served(client(d.socket))
    assert "drivers run as root" not in d.text()
    d.stop()


def test_numeric_user_and_group_without_account(accounts, world, daemons):
    d = Daemon(world, accounts["with"], ["--user", "64123:64124"]).wait_ready()
    daemons.append(d)
    st = d.status()
    assert_dropped_for_good(st, 64123, 64124)
    assert st["Groups"] == [], "no account, so no supplementary groups: %s" % st["Groups"]
    assert_served(client(d.socket))
    d.stop()


def test_root_without_user_becomes_the_default_account(accounts, world, daemons):
    d = Daemon(world, accounts["with"], []).wait_ready()
    daemons.append(d)
    assert_dropped_for_good(d.status(), accounts["uid"], accounts["gid"])
    assert "the default account" in d.text(), d.text()
    assert_served(client(d.socket))
    d.stop()


def installed_sysusers_entry():
    """Where this build's `meson install` puts the sysusers.d entry (the
    refusal names it), from meson's own introspection."""
    build = scardd_binary().parents[2]
    res = subprocess.run(["meson", "introspect", "--installed", str(build)], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0, res.stderr
    entries = [dst for src, dst in json.loads(res.stdout).items() if src.endswith("scardd.sysusers.conf")]
    assert len(entries) == 1, entries
    return entries[0]


@pytest.mark.parametrize("foreground", [True, False], ids=["foreground", "detached"])
def test_root_without_user_and_no_account_refuses_to_start(accounts, world, foreground):
    """Drivers never run as root unasked: without the pcscd account scardd
    stops before binding anything or loading a driver, and says on stderr
    (also when it would detach) what happened and both ways out: create the
    account, or ask for root with --user root."""
    d = Daemon(world, accounts["without"], [], foreground=foreground, stdout_apart=True)
    try:
        rc = d.proc.wait(TIMEOUT)
    finally:
        stop_process(d.proc, signal.SIGKILL)
    err = d.text()
    assert rc == 1, "scardd as root without --user nor pcscd account exited %s:\n%s" % (rc, err)
    assert d.out.read_text() == "", "on stdout: %r" % d.out.read_text()
    for says in ("started as root without --user, and there is no account pcscd to run the reader "
                 "drivers as; not starting",
                 "systemd-sysusers " + installed_sysusers_entry(),
                 "useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin pcscd",
                 "keep root on purpose: --user root"):
        assert says in err, "%r not on stderr:\n%s" % (says, err)
    assert len(err.strip().splitlines()) == 1, "one line, the refusal, and nothing else:\n" + err
    # nothing bound (not even the socket's directory), no pid file, no driver loaded
    assert not (world / "run").exists(), os.listdir(world / "run")
    assert not (world / "ctl" / "virtual.sock").exists(), "the driver was loaded"


def test_root_without_user_and_pcscd_uid_0_refuses_to_start(accounts, world):
    """A pcscd account with uid 0 would be root under another name: refused too."""
    d = Daemon(world, accounts["uid0"], [])
    try:
        rc = d.proc.wait(TIMEOUT)
    finally:
        stop_process(d.proc, signal.SIGKILL)
    assert rc == 1, d.text()
    assert "the account pcscd is uid 0" in d.text() and "--user root" in d.text(), d.text()
    assert not (world / "run").exists() and not (world / "ctl" / "virtual.sock").exists()


@pytest.mark.parametrize("database", ["with", "without"], ids=["pcscd account", "no pcscd account"])
def test_user_root_keeps_root_when_asked(accounts, world, daemons, database):
    """--user root: root kept, said at info level, served; with or without the account."""
    d = Daemon(world, accounts[database], ["--user", "root"]).wait_ready()
    daemons.append(d)
    assert d.status()["Uid"] == ["0"] * 4
    text = d.text()
    assert "as --user root asks" in text and "not starting" not in text, text
    ctl = os.stat(world / "ctl" / "virtual.sock")
    assert ctl.st_uid == 0, "the driver did not run as root: %d" % ctl.st_uid
    assert_served(client(d.socket))
    d.stop()


@pytest.mark.parametrize("foreground", [True, False], ids=["foreground", "detached"])
@pytest.mark.parametrize("user, says", [
    ("scardd-no-such-user", "no such user scardd-no-such-user"),
    ("pcscd:scardd-no-such-group", "no such group 'scardd-no-such-group'"),
    ("64123", "uid 64123 has no account"),
])
def test_unknown_user_stops_the_start_on_stderr(accounts, world, foreground, user, says):
    d = Daemon(world, accounts["with"], ["--user", user], foreground=foreground)
    try:
        rc = d.proc.wait(TIMEOUT)
    finally:
        stop_process(d.proc, signal.SIGKILL)
    assert rc == 1, "scardd --user %s exited %s:\n%s" % (user, rc, d.text())
    assert says in d.text(), d.text()
    assert not os.path.exists(d.socket), "a socket was bound before --user was checked"


def test_socket_group_and_mode_decide_who_connects(accounts, world, daemons):
    g = accounts["sock"]
    d = Daemon(world, accounts["with"], ["--user", "pcscd"], socket_opts=":mode=0660,group=scardd-sock")
    daemons.append(d)
    d.wait_ready()
    st = os.stat(d.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == g, (oct(st.st_mode), st.st_gid)
    assert "mode=0660, group=scardd-sock" in d.text(), d.text()
    outsider = client(d.socket)
    assert outsider["establish"] == SCARD_E_NO_SERVICE, outsider
    assert_served(client(d.socket, groups=[g]))
    d.stop()


def test_socket_group_unknown_stops_the_start(accounts, world):
    d = Daemon(world, accounts["with"], [], socket_opts=":group=scardd-no-such-group")
    try:
        rc = d.proc.wait(TIMEOUT)
    finally:
        stop_process(d.proc, signal.SIGKILL)
    assert rc == 1 and "no such group 'scardd-no-such-group'" in d.text(), (rc, d.text())
    assert not os.path.exists(world / "run" / "pcscd.comm")


def test_sysusers_and_tmpfiles_entries(accounts, world, daemons):
    """The account the sysusers.d entry makes cannot log in; the tmpfiles.d
    entry gives it /run/pcscd, so scardd running as it removes its socket and
    pid file when it stops (in a directory of root's they stay, and the next
    start replaces them)."""
    assert accounts["shell"] in ("/usr/sbin/nologin", "/sbin/nologin"), accounts["shell"]
    root = accounts["with"]
    res = subprocess.run(["systemd-tmpfiles", "--root", str(root), "--create", str(TMPFILES)],
                         capture_output=True, text=True, timeout=TIMEOUT)
    try:
        assert res.returncode == 0, res.stderr
        run = root / "run" / "pcscd"
        st = os.stat(run)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            accounts["uid"], accounts["gid"], 0o755), (st.st_uid, st.st_gid, oct(st.st_mode))
        d = Daemon(world, root, ["--user", "pcscd"], socket=run / "pcscd.comm").wait_ready()
        daemons.append(d)
        assert_dropped_for_good(d.status(), accounts["uid"], accounts["gid"])
        assert (run / "pcscd.pid").exists()
        assert_served(client(d.socket))
        d.stop()
        assert sorted(os.listdir(run)) == [], "left in the account's directory: %s" % os.listdir(run)
    finally:
        shutil.rmtree(root / "run", ignore_errors=True)
