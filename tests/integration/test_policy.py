"""scardd's access policy (docs/POLICY.md), enforced on real clients.

One scardd (as root, so it sees every client's /proc) with ifd-virtual
readers "Virtual Reader 00 00" and "00 01" and a "SIM Bank" reader, each
with a card, and a policy file the tests rewrite and make it read again
(SIGHUP). Clients are Debian's libpcsclite and ours, under pyscard, run as
other uids and groups (setpriv), inside bubblewrap sandboxes with a
/.flatpak-info, and in namespaces of their own (unshare); pcsc_scan and
opensc-tool too. Every client run is a fresh process: libpcsclite reads
PCSCLITE_CSOCK_NAME once.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import IS_PCSCD, SANITIZED
from scardd_argv import scardd_argv
from thread_state import wait_in_event_wait
from virtual_env import (BUILD, PYTHON, SCARD, SCARDD, LineReader, VirtualDaemon,
                         _die_with_parent)

HERE = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.skipif(IS_PCSCD, reason="scardd-only: scardd's access policy"),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                       reason="environment: needs root and setpriv to run clients as other uids"),
]

TIMEOUT = 30
OK = 0
SV = 0x8010006A        # SCARD_W_SECURITY_VIOLATION: what a denial answers
UNKNOWN = 0x80100009   # SCARD_E_UNKNOWN_READER: a reader the client may not see
INVALID_HANDLE = 0x80100003
CANCELLED = 0x80100002
FEATURE_REQUEST = 0x42000D48  # CM_IOCTL_GET_FEATURE_REQUEST: ifd-virtual answers it
OTHER_CODE = 0x42000D49

VR0, VR1 = "Virtual Reader 00 00", "Virtual Reader 00 01"

# Debian's libpcsclite (or ours, by LD_LIBRARY_PATH) under pyscard: every
# call on every reader of argv[1] (JSON), the results as JSON.
PROBE = r'''
import json, sys
from smartcard import scard as s
names = json.loads(sys.argv[1])
def c(hr):
    return hr & 0xFFFFFFFF
out = {}
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
out["establish"] = c(hr)
if hr == 0:
    hr, readers = s.SCardListReaders(ctx, [])
    out["readers"] = readers if hr == 0 else []
    for n in names:
        r = out[n] = {}
        hr, st = s.SCardGetStatusChange(ctx, 0, [(n, s.SCARD_STATE_UNAWARE)])
        r["state"] = c(hr)
        for mode in ("SHARED", "EXCLUSIVE", "DIRECT"):
            m = r[mode] = {}
            protocols = 0 if mode == "DIRECT" else s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1
            hr, card, proto = s.SCardConnect(ctx, n, getattr(s, "SCARD_SHARE_" + mode), protocols)
            m["connect"] = c(hr)
            if hr != 0:
                continue
            if mode != "DIRECT":
                m["transmit"] = c(s.SCardTransmit(card, proto, [0x00, 0xA4, 0x04, 0x00, 0x00])[0])
            m["control"] = c(s.SCardControl(card, 0x42000D48, [])[0])
            m["control_other"] = c(s.SCardControl(card, 0x42000D49, [])[0])
            hr = s.SCardBeginTransaction(card)
            m["begin"] = c(hr)
            if hr == 0:
                s.SCardEndTransaction(card, s.SCARD_LEAVE_CARD)
            s.SCardDisconnect(card, s.SCARD_LEAVE_CARD)
print(json.dumps(out))
'''

# A client that keeps a handle: one command a stdin line, one answer a line.
HOLDER = r'''
import sys, threading
from smartcard import scard as s
reader, share = sys.argv[1], getattr(s, "SCARD_SHARE_" + sys.argv[2])
out_lock = threading.Lock()

def say(*words):
    # one write per line: print() from two threads can interleave word and newline
    with out_lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()

hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
hr, card, proto = s.SCardConnect(ctx, reader, share, s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
say("HELD", hr & 0xFFFFFFFF)
wait_ctx = None

def wait(name):
    hr, st = s.SCardGetStatusChange(wait_ctx, 0, [(name, s.SCARD_STATE_UNAWARE)])
    cur = st[0][1] & ~s.SCARD_STATE_CHANGED
    say("WAITING", wait_ctx, threading.get_native_id())
    hr, st = s.SCardGetStatusChange(wait_ctx, 60000, [(name, cur)])
    say("WOKE", hr & 0xFFFFFFFF, st[0][1])

for line in sys.stdin:
    w = line.split(None, 1)
    if w[0] == "transmit":
        say("TRANSMIT", s.SCardTransmit(card, proto, [0x00, 0xA4, 0x04, 0x00, 0x00])[0] & 0xFFFFFFFF)
    elif w[0] == "status":
        say("STATUS", s.SCardStatus(card)[0] & 0xFFFFFFFF)
    elif w[0] == "wait":
        hr, wait_ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        threading.Thread(target=wait, args=(w[1].strip(),)).start()
    elif w[0] == "cancel":
        say("CANCEL", s.SCardCancel(wait_ctx) & 0xFFFFFFFF)
'''

# The wire itself (tests/integration/pcsc_raw.py): CMD_VERSION, then what argv asks.
RAW = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import pcsc_raw as raw
out = {}
c = raw.Connection(sys.argv[2])
if sys.argv[3] == "cancel":
    # SCardCancel as pcsc-lite sends it: a connection of its own, no CMD_VERSION
    out["cancel"] = c.cancel(int(sys.argv[4]))
else:
    _, _, out["version"] = c.call(raw.CMD_VERSION, 4, 4, 0)
    try:
        out["establish"] = c.establish()[0]
    except (raw.Closed, ConnectionError) as e:
        out["establish"] = "closed"
print(json.dumps(out))
'''


# --- the daemon and its policy ----------------------------------------------------

class PolicyDaemon(VirtualDaemon):
    def __init__(self, policy_text="allow uid=0 all\n", **kw):
        super().__init__("scardd", readers=2, cards={0: "builtin", 1: "builtin"},
                         extra_instances=[{"friendly": "SIM Bank", "readers": 1,
                                           "cards": {0: "builtin"}}], **kw)
        self.dir.chmod(0o755)  # other uids reach the socket below it
        self.policy = self.dir / "policy.conf"
        self.policy.write_text(policy_text)
        self.policy.chmod(0o644)
        self.args += ["--policy", str(self.policy)]

    def names(self):
        return [r["name"] for r in self.scard_json("list")["readers"]]

    def log_count(self, text):
        return self.log.count(text)

    def reload(self, text=None, expect="read again"):
        """Writes the policy (None: leaves the file as it is), sends SIGHUP
        and waits for the log line saying what came of it."""
        if text is not None:
            tmp = self.dir / "policy.conf.new"
            tmp.write_text(text)
            tmp.chmod(0o644)
            os.replace(tmp, self.policy)
        before = self.log_count(expect)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while self.log_count(expect) == before:
            assert self.proc.poll() is None, "scardd exited:\n" + self.log[-3000:]
            assert time.monotonic() < deadline, "no %r after SIGHUP:\n%s" % (expect, self.log[-3000:])
            time.sleep(0.05)


@pytest.fixture(scope="module")
def pd():
    d = PolicyDaemon()
    try:
        d.start()
        assert d.names() == [VR0, VR1, "SIM Bank 01 00"], d.names()
        yield d
    finally:
        d.cleanup()


SIM = "SIM Bank 01 00"
ALL_READERS = [VR0, VR1, SIM]


def as_user(uid, groups=()):
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
            "--groups=" + ",".join(map(str, groups)) if groups else "--clear-groups", "--"]


def client_env(d, lib):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=d.socket)
    env.pop("LD_LIBRARY_PATH", None)
    if lib == "ours":
        if SANITIZED:
            pytest.skip("sanitizer: an instrumented libpcsclite cannot load into Debian's python")
        env["LD_LIBRARY_PATH"] = str(BUILD / "src" / "client")
    return env


def run(d, argv, uid, groups=(), lib="debian", wrap=()):
    res = subprocess.run(list(wrap) + as_user(uid, groups) + argv, env=client_env(d, lib),
                         capture_output=True, text=True, timeout=TIMEOUT, cwd="/",
                         preexec_fn=_die_with_parent)
    return res


def probe(d, uid, groups=(), lib="debian", wrap=(), names=ALL_READERS):
    res = run(d, [PYTHON, "-c", PROBE, json.dumps(names)], uid, groups, lib, wrap)
    assert res.returncode == 0, "client uid %d (%s) failed %d:\n%s\n%s" % (
        uid, lib, res.returncode, res.stderr, d.log[-2000:])
    return json.loads(res.stdout)


def raw_probe(d, uid, *args):
    res = run(d, [PYTHON, "-c", RAW, str(HERE), d.socket] + [str(a) for a in args], uid)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def expected(rights, everything):
    """What PROBE finds on one reader with these rights (None: not visible):
    what a client with every right found there (`everything`: root's), or
    the denial."""
    if rights is None:
        return {"state": UNKNOWN, "SHARED": {"connect": UNKNOWN},
                "EXCLUSIVE": {"connect": UNKNOWN}, "DIRECT": {"connect": UNKNOWN}}
    if "all" in rights:
        rights = {"list", "shared", "exclusive", "direct", "transmit", "control"}
    out = {"state": everything["state"]}
    for mode in ("SHARED", "EXCLUSIVE", "DIRECT"):
        if mode.lower() not in rights:
            out[mode] = {"connect": SV}
            continue
        m = out[mode] = dict(everything[mode])
        if "transmit" in m and "transmit" not in rights:
            m["transmit"] = SV
        if not rights & {"control", "control=feature"}:
            m["control"] = SV
        if "control" not in rights:
            m["control_other"] = SV
    return out


@pytest.fixture(scope="module")
def everything(pd):
    """Root's findings, with every right: the driver's own answers."""
    pd.reload("allow uid=0 all\n")
    out = probe(pd, 0)
    for name in ALL_READERS:
        for mode in ("SHARED", "EXCLUSIVE", "DIRECT"):
            assert out[name][mode]["connect"] == OK, out
            assert out[name][mode]["control"] == OK, out  # ifd-virtual's feature list
            assert out[name][mode]["control_other"] not in (OK, SV), out
        assert out[name]["SHARED"]["transmit"] == OK, out
    return out


MATRIX_POLICY = """\
# the allow/deny matrix
allow uid=0 all
allow uid=4001 all
allow uid=4002 reader="Virtual Reader 00 00" list shared transmit control=0x42000D48
allow uid=4002 list
allow group=4100 reader="SIM Bank*" shared exclusive transmit
deny reader="SIM Bank*"
allow uid=4004 exclusive direct control
allow uid=4003 list
"""

# uid, supplementary groups, rights on VR0, VR1 and the SIM bank (None: not seen)
MATRIX = [
    (4001, (), ["all"], ["all"], ["all"]),
    (4002, (), ["list", "shared", "transmit", "control=feature"], ["list"], ["list"]),
    (4003, (), ["list"], ["list"], None),
    (4004, (4100,), ["exclusive", "direct", "control"], ["exclusive", "direct", "control"],
     ["shared", "exclusive", "transmit"]),
    (4006, (4100,), None, None, ["shared", "exclusive", "transmit"]),
]


@pytest.mark.parametrize("lib", ["debian", "ours"])
def test_allow_deny_matrix(pd, everything, lib):
    pd.reload(MATRIX_POLICY)
    for uid, groups, *rights in MATRIX:
        out = probe(pd, uid, groups, lib)
        who = "uid %d groups %s (%s libpcsclite)" % (uid, groups, lib)
        assert out["establish"] == OK, (who, out)
        want_seen = [n for n, r in zip(ALL_READERS, rights) if r is not None]
        assert out["readers"] == want_seen, (who, out["readers"])
        for name, r in zip(ALL_READERS, rights):
            want = expected(None if r is None else set(r), everything[name])
            assert out[name] == want, "%s on %s:\n got %s\nwant %s\n%s" % (
                who, name, out[name], want, pd.log[-1500:])
    # no rule fits uid 4005: refused outright, as pcscd's polkit refuses
    out = probe(pd, 4005, (), lib)
    assert out == {"establish": SV}, out
    log = pd.log
    assert "uid 4005 gid 4005 exe %s" % os.path.realpath(PYTHON) in log
    assert "connection: no rule of %s fits; SCARD_W_SECURITY_VIOLATION" % pd.policy in log
    assert ('SCardConnect(EXCLUSIVE) on "Virtual Reader 00 00": not granted by %s:4; '
            'SCARD_W_SECURITY_VIOLATION' % pd.policy) in log


def test_refused_client_gets_no_further_than_its_version(pd):
    pd.reload(MATRIX_POLICY)
    out = raw_probe(pd, 4005, "version")
    assert out == {"version": SV, "establish": "closed"}, out
    # the same probe as a client the policy admits
    out = raw_probe(pd, 4003, "version")
    assert out["version"] == OK and out["establish"] == OK, out


def test_pcsc_tools_and_opensc_see_what_the_policy_shows(pd):
    pd.reload(MATRIX_POLICY)
    res = run(pd, ["pcsc_scan", "-r"], 4003)
    assert res.returncode == 0, res.stdout + res.stderr
    assert VR0 in res.stdout and VR1 in res.stdout, res.stdout
    assert "SIM Bank" not in res.stdout, res.stdout
    res = run(pd, ["opensc-tool", "--list-readers"], 4006, groups=(4100,))
    assert SIM in res.stdout, res.stdout + res.stderr
    assert "Virtual Reader" not in res.stdout, res.stdout
    # refused: pcsc_scan cannot even establish a context
    res = run(pd, ["pcsc_scan", "-r"], 4005)
    assert res.returncode != 0
    assert "Virtual Reader" not in res.stdout + res.stderr


# --- sandboxes ----------------------------------------------------------------------

SANDBOX_POLICY = """\
allow uid=0 all
allow flatpak=org.example.Allowed reader="Virtual Reader 00 00" list shared transmit
deny sandbox=flatpak
allow container=namespaces reader="Virtual Reader 00 01" list
deny sandbox=container
allow uid=4001 all
"""


def bwrap(d, info=None):
    """bubblewrap as flatpak runs it, much reduced: its own root (a tmpfs)
    holding /usr, /etc, the daemon's socket, our build and a /.flatpak-info."""
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap is not installed: scripts/install-deps installs it")
    argv = ["bwrap", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--unshare-pid", "--unshare-ipc", "--die-with-parent"]
    for how, path in (("--bind", Path(d.socket).parent), ("--ro-bind", BUILD),
                      ("--ro-bind", HERE)):
        # bwrap makes missing parents 0700: the client's uid must get through
        for parent in reversed(path.parents[:-1]):
            if str(parent) != "/tmp":
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += [how, str(path), str(path)]
    if info is not None:
        path = d.dir / ("flatpak-info-%d" % len(list(d.dir.glob("flatpak-info-*"))))
        path.write_text(info)
        path.chmod(0o644)
        argv += ["--ro-bind", str(path), "/.flatpak-info"]
    return argv + ["--"]


FLATPAK_INFO = "[Application]\nname=%s\nruntime=runtime/org.freedesktop.Platform/x86_64/23.08\n"


@pytest.mark.parametrize("lib", ["debian", "ours"])
def test_flatpak_sandboxes(pd, everything, lib):
    pd.reload(SANDBOX_POLICY)
    allowed = probe(pd, 4001, lib=lib, wrap=bwrap(pd, FLATPAK_INFO % "org.example.Allowed"))
    assert allowed["establish"] == OK, allowed
    assert allowed["readers"] == [VR0], allowed
    assert allowed[VR0] == expected({"list", "shared", "transmit"}, everything[VR0]), allowed[VR0]
    assert allowed[VR1] == expected(None, None) and allowed[SIM] == expected(None, None)
    other = probe(pd, 4001, lib=lib, wrap=bwrap(pd, FLATPAK_INFO % "org.example.Other"))
    assert other == {"establish": SV}, other
    # a runtime run without an app names none: still a flatpak sandbox
    runtime = probe(pd, 4001, lib=lib, wrap=bwrap(pd, "[Runtime]\nname=org.gnome.Platform\n"))
    assert runtime == {"establish": SV}, runtime
    # the same uid outside the sandbox
    host = probe(pd, 4001, lib=lib)
    assert host["readers"] == ALL_READERS, host
    assert host[VR1] == expected({"all"}, everything[VR1]), host
    log = pd.log
    assert ", flatpak org.example.Other): connection: denied by %s:3" % pd.policy in log
    assert ", flatpak ?): connection: denied by %s:3" % pd.policy in log


@pytest.mark.parametrize("how", ["bwrap", "unshare"])
def test_own_namespaces_are_a_container(pd, everything, how):
    pd.reload(SANDBOX_POLICY)
    wrap = bwrap(pd) if how == "bwrap" else ["unshare", "--pid", "--fork", "--mount",
                                             "--mount-proc", "--"]
    out = probe(pd, 4001, wrap=wrap)
    assert out["establish"] == OK, out
    assert out["readers"] == [VR1], out
    assert out[VR1] == expected({"list"}, everything[VR1]), out[VR1]
    assert out[VR0] == expected(None, None), out[VR0]
    assert ", container namespaces): SCardConnect(SHARED) on \"Virtual Reader 00 01\": " \
           "not granted by %s:4" % pd.policy in pd.log


# --- reloading ----------------------------------------------------------------------

def holder(d, uid, reader, share="SHARED", groups=()):
    p = subprocess.Popen(as_user(uid, groups) + [PYTHON, "-c", HOLDER, reader, share],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=client_env(d, "debian"), cwd="/",
                         preexec_fn=_die_with_parent)
    lines = LineReader(p)
    line = lines.wait_for(lambda l: l.startswith("HELD"), TIMEOUT)
    assert line.split() == ["HELD", "0"], line
    return p, lines


def start_wait(p, lines, reader):
    """The holder's thread waits on reader, registered with the daemon: its context."""
    p.stdin.write("wait %s\n" % reader)
    p.stdin.flush()
    _, ctx, tid = lines.wait_for(lambda l: l.startswith("WAITING"), TIMEOUT).split()
    assert wait_in_event_wait(int(tid), pid=p.pid), "the waiter never got to its event wait"
    return int(ctx)


def ask(p, lines, command, prefix):
    p.stdin.write(command + "\n")
    p.stdin.flush()
    return lines.wait_for(lambda l: l.startswith(prefix), TIMEOUT).split()


def test_reload_changes_rights_without_dropping_clients(pd):
    full = "allow uid=0 all\nallow uid=4001 all\n"
    pd.reload(full)
    p, lines = holder(pd, 4001, VR0)
    try:
        assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(OK)]
        # transmit taken away: the handle stays, its next transmit is denied
        pd.reload("allow uid=0 all\nallow uid=4001 list shared\n")
        assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(SV)]
        assert ask(p, lines, "status", "STATUS") == ["STATUS", str(OK)]
        # a broken file keeps what was read before, and says where it is broken
        pd.reload("allow uid=0 all\nallow uid=4001 lst\n", expect="stays in force")
        assert "%s:2: unknown word 'lst'" % pd.policy in pd.log
        assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(SV)]
        # so does a file that is gone
        os.unlink(pd.policy)
        pd.reload(expect="is gone")
        assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(SV)]
        # given back: the same handle transmits again
        pd.reload(full)
        assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(OK)]
        # a reader taken out of its sight: a wait on it ends, as if the reader left
        start_wait(p, lines, VR1)
        pd.reload("allow uid=0 all\nallow uid=4001 reader=\"Virtual Reader 00 00\" all\n")
        woke = lines.wait_for(lambda l: l.startswith("WOKE"), TIMEOUT).split()
        assert woke[1] == str(OK), woke
        assert int(woke[2]) & 0x4, "state %s: SCARD_STATE_UNKNOWN expected" % woke[2]
        assert probe(pd, 4001, names=[VR0])["readers"] == [VR0]
        assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(OK)]
        assert p.poll() is None
    finally:
        p.kill()
        p.wait()


class LatePolicyDaemon(PolicyDaemon):
    """scardd started without a policy, at its default path (/etc/scardd/
    policy.conf) in a mount namespace of its own where /etc is an overlay:
    the test writes the file there (nsenter) and sends SIGHUP."""

    def __init__(self):
        super().__init__()
        self.args.remove("--policy")
        self.args.remove(str(self.policy))
        self.args.append("--disable-polkit")  # polkit alone would not judge clients by group
        upper, work = self.dir / "etc-upper", self.dir / "etc-work"
        upper.mkdir()
        work.mkdir()
        self.wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$0,workdir=$1" /etc '
                     '&& shift && exec "$@"', str(upper), str(work)]

    def write_default_policy(self, text):
        subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--", "sh", "-c",
                        "mkdir -p /etc/scardd && cat > /etc/scardd/policy.conf.new && "
                        "chmod 644 /etc/scardd/policy.conf.new && "
                        "mv /etc/scardd/policy.conf.new /etc/scardd/policy.conf"],
                       input=text, text=True, check=True, timeout=TIMEOUT)


def test_policy_that_appears_later_judges_clients_already_connected():
    """Without a policy scardd reads no more of a client than its pid, uid and
    gid; a policy that appears at SIGHUP judges the clients connected before
    it by everything a policy can name (here: a supplementary group)."""
    if not shutil.which("nsenter"):
        pytest.skip("missing-package: nsenter (util-linux)")
    d = LatePolicyDaemon()
    held = []
    try:
        try:
            d.start()
        except RuntimeError as e:
            if "overlay" in str(e) or "unshare" in str(e):
                pytest.skip("no-namespace: an overlay on /etc in a private mount namespace: %s"
                            % e)
            raise
        assert "no policy file /etc/scardd/policy.conf" in d.log, d.log[-2000:]
        member = holder(d, 4005, VR0, groups=(4100,))
        stranger = holder(d, 4006, VR0)
        held = [member[0], stranger[0]]
        for p, lines in (member, stranger):
            assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(OK)]
        d.write_default_policy("allow uid=0 all\nallow group=4100 all\n")
        d.reload(expect="read again")
        assert ask(*member, "transmit", "TRANSMIT") == ["TRANSMIT", str(OK)], d.log[-2000:]
        assert ask(*stranger, "transmit", "TRANSMIT") == ["TRANSMIT", str(SV)], d.log[-2000:]
        assert all(p.poll() is None for p in held)
    finally:
        for p in held:
            p.kill()
            p.wait()
        d.cleanup()


# --- start-up --------------------------------------------------------------------------

def start_with_policy(tmp_path, policy_path):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    return subprocess.run(scardd_argv(SCARDD, "--foreground", "--socket", tmp_path / "s.comm",
                                      "--config-dir", conf, "--policy", policy_path),
                          capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=_die_with_parent)


HOSTILE = {
    "unknown-word": (b"allow uid=0 all\n\n# fine so far\nallow uid=1000 shraed\n",
                     ":4: unknown word 'shraed'"),
    "nul": (b"allow uid=0 all\nallow uid=1\x00 all\n", ":2: control character 0x00"),
    "escape": (b"allow reader=\"\x1b]0;pwned\x07\" all\n", ":1: control character 0x1b"),
    "long-line": (b"allow uid=0 all\nallow reader=" + b"x" * 5000 + b" list\n",
                  ":2: line longer than 4096 bytes"),
    "binary": (bytes(range(256)) * 4, ":1: control character 0x00"),
    "quote": (b"allow reader=\"never closed list\n",
              ":1: a quoted value without its closing quote"),
    "unknown-user": (b"allow user=no-such-user-here all\n", ":1: unknown user 'no-such-user-here'"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_broken_policy_stops_the_start(tmp_path, name):
    text, message = HOSTILE[name]
    path = tmp_path / "policy.conf"
    path.write_bytes(text)
    res = start_with_policy(tmp_path, path)
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert str(path) + message in res.stderr, res.stderr
    assert not (tmp_path / "s.comm").exists()


def test_policy_that_cannot_be_read_stops_the_start(tmp_path):
    res = start_with_policy(tmp_path, tmp_path / "none.conf")
    assert res.returncode == 1 and "none.conf: No such file or directory" in res.stderr, res.stderr
    # a FIFO nobody writes to is refused at once, not waited on
    os.mkfifo(tmp_path / "fifo")
    res = start_with_policy(tmp_path, tmp_path / "fifo")
    assert res.returncode == 1 and "not a regular file" in res.stderr, res.stderr
    big = tmp_path / "big.conf"
    big.write_bytes(b"# padding\n" * 200000)
    res = start_with_policy(tmp_path, big)
    assert res.returncode == 1 and "at most 1048576 bytes" in res.stderr, res.stderr


def test_documented_example_policy_runs(tmp_path):
    """docs/policy.conf.example names a user and a group; with them made up
    here (scardd looks names up once, at start-up), scardd runs with it."""
    text = (HERE.parents[1] / "docs" / "policy.conf.example").read_text()
    text = text.replace("user=modem", "uid=4900").replace("group=scard", "group=4900")
    path = tmp_path / "policy.conf"
    path.write_text(text)
    conf = tmp_path / "conf"
    conf.mkdir()
    p = subprocess.Popen(scardd_argv(SCARDD, "--foreground", "--info", "--socket", tmp_path / "s.comm",
                                     "--config-dir", conf, "--policy", path),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent)
    try:
        lines = LineReader(p)
        lines.wait_for(lambda l: "rule(s)" in l, TIMEOUT)
        assert any("policy %s: 8 rule(s)" % path in l for l in lines.lines), lines.lines
    finally:
        p.terminate()
        assert p.wait(TIMEOUT) == 0


# --- a denied client cannot change what others see or hold ----------------------------

def test_denied_client_cannot_touch_other_clients(pd):
    pd.reload("allow uid=0 all\nallow uid=4001 all\ndeny reader=\"SIM Bank*\"\n"
              "allow uid=4003 list\n")
    p, lines = holder(pd, 4001, VR0, "EXCLUSIVE")
    try:
        wait_ctx = start_wait(p, lines, VR1)
        before = pd.scard_json("list")
        # everything uid 4003 may try on the reader it can see, and on the one it cannot
        out = probe(pd, 4003, names=[VR0, SIM])
        assert out["readers"] == [VR0, VR1], out
        for mode in ("SHARED", "EXCLUSIVE", "DIRECT"):
            assert out[VR0][mode] == {"connect": SV}, out[VR0]
            assert out[SIM][mode] == {"connect": UNKNOWN}, out[SIM]
        # SCardCancel of the holder's wait, as pcsc-lite sends it, from another process
        assert raw_probe(pd, 4003, "cancel", wait_ctx) == {"cancel": INVALID_HANDLE}
        # also from another process of the holder's own uid
        assert raw_probe(pd, 4001, "cancel", wait_ctx) == {"cancel": INVALID_HANDLE}
        assert pd.scard_json("list") == before
        assert ask(p, lines, "transmit", "TRANSMIT") == ["TRANSMIT", str(OK)]
        # the wait goes on: a card event ends it, not a cancel
        r = pd.scard("virtual", "remove", VR1)
        assert r.returncode == 0, r.stderr
        woke = lines.wait_for(lambda l: l.startswith("WOKE"), TIMEOUT).split()
        assert woke[1] == str(OK), woke
        # the holder's own process may cancel its own wait
        start_wait(p, lines, VR1)
        mark = len(lines.lines)
        p.stdin.write("cancel\n")
        p.stdin.flush()
        # the two answers, in whichever order its threads print them
        deadline = time.monotonic() + TIMEOUT
        while not ({"CANCEL", "WOKE"} <= {l.split()[0] for l in lines.lines[mark:]}):
            assert time.monotonic() < deadline, lines.lines
            time.sleep(0.05)
        said = {l.split()[0]: l.split() for l in lines.lines[mark:]}
        assert said["CANCEL"] == ["CANCEL", str(OK)], said
        assert said["WOKE"][1] == str(CANCELLED), said
    finally:
        p.kill()
        p.wait()
        r = pd.scard("virtual", "insert", VR1, "builtin")
        assert r.returncode == 0, r.stderr


# --- scardd without root ----------------------------------------------------------------

UNPRIVILEGED_POLICY = """\
allow uid=0 all
allow uid=4007 exe=/usr/bin/python3* all
allow group=4100 all
allow uid=4003 list
"""


@pytest.fixture
def world():
    """A directory every user can traverse (pytest's tmp_path is not)."""
    d = Path(tempfile.mkdtemp(prefix="scardd-policy-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_policy_of_a_daemon_without_root(world):
    """scardd as an account of its own (--user) knows every client's uid and
    groups (from the socket), not other users' executables (their /proc
    needs their rights): docs/POLICY.md, "What scardd can see without root".
    It reads the policy again on SIGHUP as that account."""
    import pcsc_raw as raw
    from virtual_env import DRIVER, reader_stanza, virtual_conf
    (world / "ctl").mkdir()
    (world / "ctl").chmod(0o1777)  # the driver, running as the account, binds there
    conf = world / "virtual.conf"
    conf.write_text(virtual_conf(1, str(world / "ctl" / "virtual.sock"), {0: "builtin"}))
    (world / "conf").mkdir()
    (world / "conf" / "virtual").write_text(reader_stanza("Virtual Reader", conf, DRIVER))
    policy = world / "policy.conf"
    policy.write_text(UNPRIVILEGED_POLICY)
    policy.chmod(0o644)
    sock = str(world / "run" / "pcscd.comm")
    log = world / "scardd.log"
    with open(log, "wb") as f:
        p = subprocess.Popen([str(SCARDD), "--foreground", "--info", "--user", "64123:64124",
                              "--socket", sock, "-c", str(world / "conf"), "--policy", str(policy)],
                             stdout=f, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    d = type("D", (), {"socket": sock, "log": property(lambda self: log.read_text())})()
    try:
        def ready():
            assert p.poll() is None, log.read_text()
            return VR0 in [rs.name for rs in raw.readers_state(sock)]
        raw.wait_for(ready, TIMEOUT, what="scardd serving %s" % VR0)
        assert Path("/proc/%d/status" % p.pid).read_text().count("\t64123") >= 4
        member = probe(d, 4001, groups=(4100,), names=[VR0])
        assert member["readers"] == [VR0] and member[VR0]["SHARED"]["transmit"] == OK, member
        watcher = probe(d, 4003, names=[VR0])
        assert watcher["readers"] == [VR0], watcher
        assert watcher[VR0]["SHARED"] == {"connect": SV}, watcher
        # its executable cannot be seen: exe= does not fit, nothing else does
        assert probe(d, 4007, names=[VR0]) == {"establish": SV}
        assert probe(d, 4005, names=[VR0]) == {"establish": SV}
        # read again as the account
        before = log.read_text().count("read again")
        policy.write_text(UNPRIVILEGED_POLICY.replace("uid=4003 list", "uid=4003 list shared"))
        p.send_signal(signal.SIGHUP)
        raw.wait_for(lambda: log.read_text().count("read again") > before, TIMEOUT,
                     what="the policy read again")
        watcher = probe(d, 4003, names=[VR0])
        assert watcher[VR0]["SHARED"]["connect"] == OK, watcher
    finally:
        p.terminate()
        assert p.wait(TIMEOUT) == 0, log.read_text()


def test_status_shows_only_what_the_policy_shows(pd):
    """scard status from scardd follows the policy: who holds a reader is told
    only to clients that may see that reader, and a client the policy
    refuses outright gets no report at all."""
    pd.reload(MATRIX_POLICY)
    p, lines = holder(pd, 0, VR0, "EXCLUSIVE")
    try:
        def status(uid, groups=()):
            r = run(pd, [str(SCARD), "--json", "status"], uid, groups)
            return json.loads(r.stdout)["scardd"]
        seen = {u["name"]: u for u in status(4001)["readers_in_use"]}
        assert seen[VR0]["exclusive"] == "hidden", seen  # root's client: not named
        assert VR0 not in {u["name"] for u in status(4006, (4100,))["readers_in_use"]}
        assert status(4005) is None  # refused outright: the connection is closed
        assert status(0)["readers_in_use"][0]["name"] == VR0
    finally:
        p.kill()
        p.wait()
