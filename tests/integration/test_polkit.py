"""scardd and polkit: the questions pcsc-lite's pcscd asks polkitd
(org.debian.pcsc-lite.access_pcsc for each client connection,
org.debian.pcsc-lite.access_card with detail "reader" for each
SCardConnect), asked of a real polkitd on a private system bus
(polkit_env.py) with the tests' own rules.

scardd runs as root with ifd-virtual's two readers, a card in each; clients
are Debian's libpcsclite under pyscard, as root or as uid 65534 (setpriv).
polkitd answers yes for uid 0 before any rule runs, so the rules are about
uid 65534, and polkit_env's log rule shows which questions polkitd saw.
Debian's pcscd is built without polkit: scardd-only, but for the first two
tests, which check the harness alone.
"""
import json
import os
import pwd
import re
import shutil
import subprocess
import time

import pytest

from conftest import IS_PCSCD
from polkit_env import ACTION_CARD, ACTION_PCSC, AUTHORIZED, NOT_AUTHORIZED, deny, rule
from polkit_env import polkit_env  # noqa: F401 (fixture)
from virtual_env import PYTHON, SCARDD, VirtualDaemon, _die_with_parent, stop_pid

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="environment: needs root and setpriv to run clients as "
                                       "other uids")
scardd_only = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: Debian's pcscd has no polkit")

TIMEOUT = 30
OK = 0
SV = 0x8010006A  # SCARD_W_SECURITY_VIOLATION
NOBODY = 65534
NOBODY_NAME = pwd.getpwuid(NOBODY).pw_name
VR0, VR1 = "Virtual Reader 00 00", "Virtual Reader 00 01"
SELECT_MF = [0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]

# Debian's libpcsclite under pyscard: establishes a context, then connects
# as argv[1] (JSON: [[reader, share mode], ...]) says, transmitting on each
# handle it gets, and lists the readers at the end; prints JSON.
CLIENT = r'''
import json, os, sys
from smartcard import scard as s
def c(hr):
    return hr & 0xFFFFFFFF
out = {"pid": os.getpid(), "uid": os.getuid(), "connects": []}
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
out["establish"] = c(hr)
if hr == 0:
    for reader, mode in json.loads(sys.argv[1]):
        protocols = 0 if mode == "DIRECT" else s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1
        hr, card, proto = s.SCardConnect(ctx, reader, getattr(s, "SCARD_SHARE_" + mode), protocols)
        r = {"reader": reader, "mode": mode, "connect": c(hr)}
        if hr == 0:
            if mode != "DIRECT":
                r["transmit"] = c(s.SCardTransmit(card, proto, json.loads(sys.argv[2]))[0])
            s.SCardDisconnect(card, s.SCARD_LEAVE_CARD)
        out["connects"].append(r)
    hr, readers = s.SCardListReaders(ctx, [])
    out["list"], out["readers"] = c(hr), readers if hr == 0 else []
    s.SCardReleaseContext(ctx)
print(json.dumps(out))
'''

# A client that keeps a handle on argv[1] (SHARED): "transmit" on stdin
# transmits on it, one answer line each.
HOLDER = r'''
import json, sys
from smartcard import scard as s
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
hr, card, proto = s.SCardConnect(ctx, sys.argv[1], s.SCARD_SHARE_SHARED,
                                 s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
print("HELD", hr & 0xFFFFFFFF, flush=True)
for line in sys.stdin:
    print("TRANSMIT", s.SCardTransmit(card, proto, json.loads(sys.argv[2]))[0] & 0xFFFFFFFF,
          flush=True)
'''


def polkit_built():
    """Whether this scardd asks polkit: its --help lists --disable-polkit,
    and not among the pcscd options it ignores."""
    if not SCARDD.exists():
        pytest.fail("scardd not built: %s missing (set SCARDD_BUILD)" % SCARDD, pytrace=False)
    r = subprocess.run([str(SCARDD), "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    m = re.search(r"--disable-polkit\b(.*?)(?=\n\s*-|\Z)", r.stdout + r.stderr, re.S)
    return bool(m) and "ignored" not in m.group(1)


class PolkitDaemon(VirtualDaemon):
    """scardd with two readers, a card in each, on the system bus at
    bus_address; its directory reachable for other uids."""

    def __init__(self, bus_address=None, args=(), policy=None):
        super().__init__("scardd", readers=2, cards={0: "builtin", 1: "builtin"}, args=args)
        self.dir.chmod(0o755)
        # None: a socket path where nothing listens, so no bus at all
        self.bus_address = bus_address or "unix:path=%s" % (self.dir / "no_bus_socket")
        if policy is not None:
            path = self.dir / "policy.conf"
            path.write_text(policy)
            path.chmod(0o644)
            self.args += ["--policy", str(path)]

    def env(self, client_lib=None):
        env = super().env(client_lib)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        return env

    def start(self, expect_readers=None):
        super().start(expect_readers)
        run = self.dir / "run"
        if run.is_dir():
            run.chmod(0o755)
        return self

    def lines(self, *words):
        """The log lines holding every one of words."""
        return [ln for ln in self.log.splitlines() if all(w in ln for w in words)]


@pytest.fixture
def scardd():
    """Factory: scardd(bus_address, args, policy) -> a started PolkitDaemon
    (stopped and removed at teardown; a sanitizer report in its log fails
    the test)."""
    made = []

    def start(bus_address, args=(), policy=None):
        if IS_PCSCD:
            pytest.skip("scardd-only: Debian's pcscd has no polkit")
        if not polkit_built():
            pytest.skip("not-built: scardd built without polkit (its --help has no "
                        "--disable-polkit of its own)")
        d = PolkitDaemon(bus_address, args, policy)
        made.append(d)
        return d.start()
    yield start
    errors = []
    for d in reversed(made):
        try:
            d.cleanup()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


def as_user(uid):
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", "--"]


def client(d, uid=None, connects=()):
    """Runs CLIENT as root (uid None) or as uid; its JSON output."""
    env = d.env()
    env.pop("LD_LIBRARY_PATH", None)  # Debian's libpcsclite
    argv = [PYTHON, "-c", CLIENT, json.dumps([list(c) for c in connects]), json.dumps(SELECT_MF)]
    r = subprocess.run((as_user(uid) if uid is not None else []) + argv, env=env,
                       capture_output=True, text=True, timeout=TIMEOUT, cwd="/",
                       preexec_fn=_die_with_parent)
    assert r.returncode == 0, "client (uid %s) failed %d:\n%s\n%s" % (
        uid, r.returncode, r.stderr, d.log[-3000:])
    return json.loads(r.stdout)


def connects(out):
    """{(reader, mode): connect result} of one CLIENT run."""
    return {(c["reader"], c["mode"]): c["connect"] for c in out["connects"]}


def sleeper(uid):
    """A process of uid to ask polkitd about (stopped by the caller)."""
    return subprocess.Popen(as_user(uid) + ["sleep", "600"], cwd="/", preexec_fn=_die_with_parent)


def wait_until(what, cond, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, "no %s within %d s" % (what, timeout)
        time.sleep(0.2)


# --- the harness alone ------------------------------------------------------------------

def test_harness_polkitd_applies_rules_about_readers(polkit_env):
    """The private polkitd reads our action file and rules, sees the
    reader detail, and leaves the host's polkit directories alone; uid 0 is
    authorized before any rule runs."""
    host = {p: sorted(os.listdir(p)) for p in ("/usr/share/polkit-1/actions",
                                               "/usr/share/polkit-1/rules.d")}
    pk = polkit_env(deny(ACTION_CARD, reader="X"))
    other = sleeper(NOBODY)
    try:
        assert pk.pkcheck(ACTION_CARD, other.pid, {"reader": "X"}) == NOT_AUTHORIZED, \
            pk.last_pkcheck
        assert pk.pkcheck(ACTION_CARD, other.pid, {"reader": "Y"}) == AUTHORIZED, pk.last_pkcheck
        assert pk.pkcheck(ACTION_PCSC, other.pid) == AUTHORIZED, pk.last_pkcheck
        assert pk.pkcheck(ACTION_CARD, os.getpid(), {"reader": "X"}) == AUTHORIZED, \
            pk.last_pkcheck
    finally:
        stop_pid(other)
    assert [(a["action"], a["pid"], a["user"], a["reader"]) for a in pk.asks()] == [
        (ACTION_CARD, other.pid, NOBODY_NAME, "X"),
        (ACTION_CARD, other.pid, NOBODY_NAME, "Y"),
        (ACTION_PCSC, other.pid, NOBODY_NAME, None),
    ], pk.log()
    assert {p: sorted(os.listdir(p)) for p in host} == host
    # and without polkitd on the bus, pkcheck gets an error, not an answer
    pk.stop_polkitd()
    assert pk.pkcheck(ACTION_PCSC, os.getpid()) not in (AUTHORIZED, NOT_AUTHORIZED)


def test_harness_unprivileged_caller_may_not_ask_for_others(polkit_env):
    """What scardd's account must be for its questions: polkitd lets a
    caller that is not root ask only about its own uid and without details
    (an error otherwise, neither yes nor no)."""
    pk = polkit_env(rule(""))
    root_proc = sleeper(0)
    try:
        assert pk.pkcheck(ACTION_PCSC, root_proc.pid, user=NOBODY) not in (
            AUTHORIZED, NOT_AUTHORIZED)
        assert "Only trusted callers" in pk.last_pkcheck.stderr, pk.last_pkcheck
    finally:
        stop_pid(root_proc)
    own = sleeper(NOBODY)
    try:
        assert pk.pkcheck(ACTION_PCSC, own.pid, user=NOBODY) == AUTHORIZED, pk.last_pkcheck
        assert pk.pkcheck(ACTION_CARD, own.pid, {"reader": "Y"}, user=NOBODY) not in (
            AUTHORIZED, NOT_AUTHORIZED)
        assert "details" in pk.last_pkcheck.stderr, pk.last_pkcheck
    finally:
        stop_pid(own)


# --- scardd asking polkitd ----------------------------------------------------------------

@scardd_only
def test_access_pcsc_refused_closes_that_client_only(polkit_env, scardd):
    """A client polkitd refuses access_pcsc cannot establish a context
    (scardd closes its connection and logs it); polkitd was asked about that
    client's process; root's client is served meanwhile."""
    pk = polkit_env(deny(ACTION_PCSC, user=NOBODY_NAME))
    d = scardd(pk.address)
    before = len(d.lines("polkit", "access_pcsc"))
    out = client(d, NOBODY, [(VR0, "SHARED")])
    assert out["establish"] != OK, out
    assert out["connects"] == [], out
    assert len(d.lines("polkit", "access_pcsc")) > before, d.log[-3000:]
    assert {"action": ACTION_PCSC, "pid": out["pid"], "user": NOBODY_NAME, "reader": None} \
        in pk.asks(), pk.log()
    root = client(d, None, [(VR0, "SHARED"), (VR1, "SHARED")])
    assert root["establish"] == OK and connects(root) == {(VR0, "SHARED"): OK,
                                                          (VR1, "SHARED"): OK}, root
    assert d.proc.poll() is None


@scardd_only
def test_access_card_refused_for_one_reader(polkit_env, scardd):
    """access_card refused for one reader answers SCARD_W_SECURITY_VIOLATION
    to that SCardConnect only (any share mode): the client's context and
    its other reader work, another client's handle keeps working, root
    connects to that reader; polkitd got each reader's name."""
    pk = polkit_env(deny(ACTION_CARD, user=NOBODY_NAME, reader=VR1))
    d = scardd(pk.address)
    holder = subprocess.Popen(as_user(NOBODY) + [PYTHON, "-c", HOLDER, VR0, json.dumps(SELECT_MF)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=d.env(), cwd="/",
                              preexec_fn=_die_with_parent)
    try:
        held = holder.stdout.readline().split()
        if held != ["HELD", "0"]:
            stop_pid(holder)
            pytest.fail("holder: %r %s" % (held, holder.stderr.read()))
        out = client(d, NOBODY, [(VR1, "SHARED"), (VR0, "SHARED"), (VR1, "EXCLUSIVE"),
                                 (VR1, "DIRECT")])
        assert out["establish"] == OK, out
        assert connects(out) == {(VR1, "SHARED"): SV, (VR0, "SHARED"): OK,
                                 (VR1, "EXCLUSIVE"): SV, (VR1, "DIRECT"): SV}, out
        assert [c.get("transmit") for c in out["connects"]] == [None, OK, None, None], out
        assert out["list"] == OK and set(out["readers"]) == {VR0, VR1}, out
        holder.stdin.write("transmit\n")
        holder.stdin.flush()
        assert holder.stdout.readline().split() == ["TRANSMIT", "0"]
    finally:
        stop_pid(holder)
    root = client(d, None, [(VR1, "SHARED")])
    assert connects(root) == {(VR1, "SHARED"): OK}, root
    assert d.lines("access_card", VR1), d.log[-3000:]
    assert not d.lines("access_card", VR0), d.log[-3000:]
    asks = [(a["action"], a["reader"]) for a in pk.asks() if a["pid"] == out["pid"]]
    assert asks == [(ACTION_PCSC, None), (ACTION_CARD, VR1), (ACTION_CARD, VR0),
                    (ACTION_CARD, VR1), (ACTION_CARD, VR1)], pk.log()


@scardd_only
def test_no_bus_the_policy_alone_decides(scardd):
    """With no system bus at all, scardd serves clients as its access policy
    says, and says once that polkit gives no answer."""
    d = scardd(None, policy='allow uid=0 all\nallow uid=%d reader="%s" all\nallow uid=%d list\n'
               % (NOBODY, VR0, NOBODY))
    for _ in range(3):
        out = client(d, NOBODY, [(VR0, "SHARED"), (VR1, "SHARED")])
        assert out["establish"] == OK, out
        assert connects(out) == {(VR0, "SHARED"): OK, (VR1, "SHARED"): SV}, out
    assert d.lines("policy:", VR1), d.log[-3000:]
    assert not d.lines("polkit", VR1), d.log[-3000:]
    assert len(d.lines("polkit", "no answer")) == 1, d.log[-3000:]


@scardd_only
def test_polkitd_gone_serves_everyone_and_back_checks_again(polkit_env, scardd):
    """polkitd stopping leaves scardd serving every client (no policy file:
    all of them), logged once; when polkitd is back, its rules apply
    again."""
    pk = polkit_env(deny(ACTION_CARD, user=NOBODY_NAME, reader=VR1))
    d = scardd(pk.address)
    out = client(d, NOBODY, [(VR1, "SHARED")])
    assert connects(out) == {(VR1, "SHARED"): SV}, out
    pk.stop_polkitd()
    for _ in range(3):
        out = client(d, NOBODY, [(VR0, "SHARED"), (VR1, "SHARED")])
        assert out["establish"] == OK, out
        assert connects(out) == {(VR0, "SHARED"): OK, (VR1, "SHARED"): OK}, out
    assert len(d.lines("polkit", "no answer")) == 1, d.log[-3000:]
    pk.start_polkitd()

    # scardd asks again a while after its last unanswered question
    def refused_again():
        out = client(d, NOBODY, [(VR1, "SHARED")])
        return out if connects(out)[(VR1, "SHARED")] == SV else None
    refused = wait_until("refusal from the restarted polkitd", refused_again)
    assert (ACTION_CARD, VR1) in [(a["action"], a["reader"]) for a in pk.asks()
                                  if a["pid"] == refused["pid"]], pk.log()
    out = client(d, NOBODY, [(VR0, "SHARED")])
    assert connects(out) == {(VR0, "SHARED"): OK}, out


@scardd_only
def test_disable_polkit_never_asks(polkit_env, scardd):
    """--disable-polkit: polkitd, whose rules refuse everything, is never
    asked, and every client is served."""
    deny_all = rule('    if (action.id.indexOf("org.debian.pcsc-lite.") == 0)\n'
                    '        return polkit.Result.NO;')
    pk = polkit_env(deny_all)
    d = scardd(pk.address, ["--disable-polkit"])
    out = client(d, NOBODY, [(VR0, "SHARED"), (VR1, "EXCLUSIVE")])
    assert out["establish"] == OK, out
    assert connects(out) == {(VR0, "SHARED"): OK, (VR1, "EXCLUSIVE"): OK}, out
    assert pk.asks() == [], pk.log()
    # the rule did refuse: polkitd answers no about another such process
    other = sleeper(NOBODY)
    try:
        assert pk.pkcheck(ACTION_PCSC, other.pid) == NOT_AUTHORIZED, pk.last_pkcheck
    finally:
        stop_pid(other)
    assert not d.lines("access_card", VR0) and not d.lines("access_card", VR1), d.log[-3000:]


def shipped_actions(owner):
    """The action file the build installs, its owner made `owner`."""
    path = SCARDD.parents[2] / "polkit" / "org.debian.pcsc-lite.policy"
    if not path.is_file():
        pytest.skip("not-built: no polkit action file in this build")
    text = path.read_text()
    assert "unix-user:pcscd" in text
    return text.replace("unix-user:pcscd", "unix-user:%s" % owner)


@scardd_only
@pytest.mark.parametrize("owner", [True, False], ids=["actions-owned", "actions-not-owned"])
def test_unprivileged_scardd_needs_to_own_the_actions(polkit_env, scardd, owner):
    """scardd running as another account than root asks polkitd about a root
    client. The actions as the build installs them, owned by scardd's
    account: polkitd answers (yes). Owned by someone else: polkitd refuses
    to answer such a caller, and scardd refuses the client (as pcscd does
    on any error), saying why, instead of serving it unchecked."""
    pk = polkit_env(actions=shipped_actions(NOBODY_NAME if owner else "root"))
    d = PolkitDaemon(pk.address, ["--user", "%d:%d" % (NOBODY, NOBODY)])
    for path in (d.dir, *d.dir.iterdir()):  # the driver, as nobody, makes its control socket here
        os.chown(path, NOBODY, NOBODY)
    if not owner:  # its readers cannot be listed through it: the log says when it serves
        d.wait_readers = lambda count, timeout=20: wait_until(
            "scardd serving", lambda: "serving clients" in d.log, timeout)
    try:
        d.start()
        out = client(d, None, [(VR0, "SHARED")])
        if owner:
            assert out["establish"] == OK and connects(out) == {(VR0, "SHARED"): OK}, out
            assert not d.lines("polkit", "refused"), d.log[-3000:]
        else:
            assert out["establish"] != OK, out
            refusals = d.lines("polkit", "access_pcsc refused", "(polkitd:")
            assert refusals, d.log[-3000:]
            assert not d.lines("no answer"), d.log[-3000:]
    finally:
        d.cleanup()


# root: a transaction on argv[1], ended when stdin says so
TRANSACTION = r'''
import sys
from smartcard import scard as s
hr, ctx = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
hr, card, proto = s.SCardConnect(ctx, sys.argv[1], s.SCARD_SHARE_SHARED,
                                 s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
print("BEGIN", s.SCardBeginTransaction(card) & 0xFFFFFFFF, flush=True)
sys.stdin.readline()
print("END", s.SCardEndTransaction(card, s.SCARD_LEAVE_CARD) & 0xFFFFFFFF, flush=True)
sys.stdin.readline()
'''


@scardd_only
def test_connect_waiting_for_a_transaction_is_asked_about_once(polkit_env, scardd):
    """A connect polkit allowed, which then waits for another client's
    transaction to end, is not asked about again when it goes on (a user
    with an auth_admin rule would be prompted twice)."""
    pk = polkit_env(deny(ACTION_CARD, user=NOBODY_NAME, reader=VR1))
    d = scardd(pk.address)
    tx = subprocess.Popen([PYTHON, "-c", TRANSACTION, VR0], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=d.env(),
                          preexec_fn=_die_with_parent)
    waiter = None
    try:
        assert tx.stdout.readline().split() == ["BEGIN", "0"]
        waiter = subprocess.Popen(as_user(NOBODY) + [PYTHON, "-c", CLIENT,
                                                     json.dumps([[VR0, "SHARED"]]),
                                                     json.dumps(SELECT_MF)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=d.env(), cwd="/", preexec_fn=_die_with_parent)
        # its connect reached the lock: polkit has answered it and the log shows it parked
        wait_until("the connect asked about", lambda: [a for a in pk.asks()
                                                      if a["pid"] == waiter.pid
                                                      and a["action"] == ACTION_CARD])
        assert waiter.poll() is None, waiter.stderr.read()
        tx.stdin.write("\n")
        tx.stdin.flush()
        assert tx.stdout.readline().split() == ["END", "0"]
        out, err = waiter.communicate(timeout=TIMEOUT)
        assert waiter.returncode == 0, err
        assert connects(json.loads(out)) == {(VR0, "SHARED"): OK}, out
        asked = [a["action"] for a in pk.asks() if a["pid"] == waiter.pid]
        assert asked == [ACTION_PCSC, ACTION_CARD], pk.log()
    finally:
        for p in (tx, waiter):
            if p is not None:
                stop_pid(p)
