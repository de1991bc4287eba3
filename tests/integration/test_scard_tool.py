"""The scard tool: human and --json output, exit codes, against scardd and
Debian's pcscd with ifd-virtual readers."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from virtual_env import vd, fresh  # noqa: E402,F401 (fixtures)
from virtual_env import (BUILTIN_ATR, DAEMONS, DEMO_CARD, LineReader, SCARD,  # noqa: E402
                         VirtualDaemon, _die_with_parent, stop_pid)

ATR_SPACED = " ".join("%02X" % b for b in BUILTIN_ATR)
SELECT_AID = "00A4040007F0736361726464"
FCI = "6F13820138830250008407F07363617264648A0105"




def spaced(hexs):
    return " ".join(hexs[i:i + 2] for i in range(0, len(hexs), 2))


# ---- help and usage ----

def test_help_documents_exit_codes():
    r = subprocess.run([str(SCARD), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "Exit codes:" in r.stdout
    for code, word in ((3, "no PC/SC daemon"), (4, "reader not found"), (5, "no card"),
                       (6, "sharing violation"), (7, "status word"), (8, "control channel")):
        assert re.search(r"^\s+%d\s+.*%s" % (code, word), r.stdout, re.M), (code, r.stdout)


def test_usage_errors_exit_2():
    for argv in (["frobnicate"], [], ["send"], ["watch", "--count", "zero"],
                 ["virtual", "juggle", "0"], ["list", "extra"]):
        r = subprocess.run([str(SCARD)] + argv, capture_output=True, text=True)
        assert r.returncode == 2, (argv, r.stdout, r.stderr)
        assert r.stderr.startswith("scard: ") or r.stderr.startswith("usage"), r.stderr


def test_no_daemon_exit_3(tmp_path):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "nothing.comm"))
    for argv in (["list"], ["status"], ["send", "0", "00A40000"], ["watch", "--count", "1"],
                 ["virtual", "insert", "0"]):
        r = subprocess.run([str(SCARD)] + argv, capture_output=True, text=True, env=env,
                           timeout=30)
        assert r.returncode == 3, (argv, r.returncode, r.stderr)
        assert "no PC/SC daemon answers on %s" % (tmp_path / "nothing.comm") in r.stderr
        assert "0x8010" not in r.stderr   # words, not raw codes
    r = subprocess.run([str(SCARD), "--json", "status"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 3
    assert json.loads(r.stdout)["running"] is False


def test_socket_option_overrides_environment(fresh):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME="/nonexistent/pcscd.comm")
    r = fresh.scard("--socket", fresh.socket, "list", json=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["socket"] == fresh.socket


# ---- list ----

def test_list_human(fresh):
    r = fresh.scard("list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "0: Virtual Reader 00 00",
        "     card: present, not in use",
        "     ATR:  %s  (T=0, T=1)" % ATR_SPACED,
        "1: Virtual Reader 00 01",
        "     card: none",
    ]


def test_list_json(fresh):
    doc = fresh.scard_json("list")
    r0, r1 = doc["readers"]
    assert r0["name"] == "Virtual Reader 00 00" and r0["index"] == 0
    assert r0["card"] == "present" and r0["atr"] == BUILTIN_ATR.hex().upper()
    assert r0["protocols"] == ["T=0", "T=1"] and r0["held"] is None
    assert "PRESENT" in r0["state"]
    assert r1 == {"index": 1, "name": "Virtual Reader 00 01", "card": "absent", "atr": None,
                  "protocols": [], "held": None, "events": r1["events"], "state": ["EMPTY"]}
    assert doc["socket"] == fresh.socket


@pytest.mark.parametrize("share,word,text", [("EXCLUSIVE", "exclusive", "held exclusively"),
                                             ("SHARED", "shared", "in use (shared)")])
def test_list_shows_who_holds_the_card(fresh, share, word, text):
    holder = fresh.hold(fresh.reader(0), share)
    try:
        assert fresh.scard_json("list")["readers"][0]["held"] == word
        assert "card: present, " + text in fresh.scard("list").stdout
    finally:
        stop_pid(holder)
    deadline = time.monotonic() + 5
    while fresh.scard_json("list")["readers"][0]["held"] is not None:
        assert time.monotonic() < deadline, "holder's death not noticed"
        time.sleep(0.1)


def test_list_with_debian_client_library(fresh):
    """scard is a plain PC/SC program: LD_LIBRARY_PATH picks the libpcsclite."""
    r = fresh.scard("list", json=True, client_lib="debian")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["readers"][0]["atr"] == BUILTIN_ATR.hex().upper()
    st = json.loads(fresh.scard("status", json=True, client_lib="debian").stdout)
    assert st["client_library"].endswith("debian-lib/libpcsclite.so.1")


# SCardListReaders as if a reader came between the length query and the
# list: the first length it answers is five bytes short.
GROWING_LIST_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
long SCardListReaders(long ctx, const char *groups, char *readers, unsigned long *len)
{
	static long (*real)(long, const char *, char *, unsigned long *);
	static int shortened;
	if (!real)
		real = (long (*)(long, const char *, char *, unsigned long *))
			dlsym(RTLD_NEXT, "SCardListReaders");
	long rv = real(ctx, groups, readers, len);
	if (!readers && rv == 0 && !shortened && *len > 5) {
		*len -= 5;
		shortened = 1;
		fprintf(stderr, "shim: length shortened\n");
	}
	return rv;
}
"""


@pytest.mark.parametrize("client_lib", [None, "debian"])
def test_list_when_a_reader_comes_between_length_and_list(fresh, tmp_path, client_lib):
    """The list outgrows the length asked just before it (a reader added in
    between: SCARD_E_INSUFFICIENT_BUFFER); scard asks again instead of
    failing, with either client library."""
    if os.environ.get("SCARDD_SANITIZED"):
        pytest.skip("sanitizer: an LD_PRELOAD shim cannot load before ASan's runtime")
    src, shim = tmp_path / "shim.c", tmp_path / "shim.so"
    src.write_text(GROWING_LIST_SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    env = dict(fresh.env(client_lib), LD_PRELOAD=str(shim))
    r = fresh.scard("list", json=True, env=env)
    assert "shim: length shortened" in r.stderr, r.stderr  # the shim was in the way
    assert r.returncode == 0, r.stderr
    assert [x["name"] for x in json.loads(r.stdout)["readers"]] == \
        ["Virtual Reader 00 00", "Virtual Reader 00 01"], r.stdout


# ---- status ----

def test_status_human(fresh):
    r = fresh.scard("status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "socket:    %s (PCSCLITE_CSOCK_NAME)" % fresh.socket in out
    assert re.search(r"^daemon:    %s, pid %d, uid 0$" % (fresh.kind, fresh.proc.pid), out, re.M)
    assert "protocol:  4:4\n" in out
    assert "readers:   2\n" in out
    assert "  0: Virtual Reader 00 00  (card present)" in out
    assert "  1: Virtual Reader 00 01  (card absent)" in out


def test_status_json(fresh):
    st = fresh.scard_json("status")
    assert st["running"] is True
    assert st["daemon"] == {"pid": fresh.proc.pid, "uid": 0, "name": fresh.kind}
    assert st["protocol"] == "4:4" and st["accepts_4_4"] is True
    assert [r["name"] for r in st["readers"]] == ["Virtual Reader 00 00", "Virtual Reader 00 01"]
    assert [r["card"] for r in st["readers"]] == ["present", "absent"]
    if fresh.kind == "pcscd":
        assert st["scardd"] is None  # pcscd has no status report: it closes the connection
    else:
        assert st["scardd"]["pid"] == fresh.proc.pid
        assert [s["path"] for s in st["scardd"]["sockets"]] == [fresh.socket]
        assert st["scardd"]["clients"] == []  # scard's own connections are not listed


# pyscard: reader 0 exclusively, in a transaction; reader 1 direct (no card)
HOLDER = """
import sys
from smartcard.scard import *
hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
hr, h0, p0 = SCardConnect(ctx, %r, SCARD_SHARE_EXCLUSIVE, SCARD_PROTOCOL_T1)
assert hr == 0, hex(hr & 0xFFFFFFFF)
assert SCardBeginTransaction(h0) == 0
hr, h1, p1 = SCardConnect(ctx, %r, SCARD_SHARE_DIRECT, 0)
assert hr == 0, hex(hr & 0xFFFFFFFF)
print("HELD", flush=True)
sys.stdin.read()
"""


def test_status_who_holds_my_card(vd):
    """scard status from scardd: each client's card handles (share mode,
    protocol, transaction) and, for every reader in use, whose it is; a
    client of another user is shown as such, not by id."""
    if vd.kind == "pcscd":
        pytest.skip("scardd-only: pcscd has no status report")
    vd.reset_cards()
    r0, r1 = vd.reader(0), vd.reader(1)
    holder = vd.spawn_py(HOLDER % (r0, r1))
    try:
        line = holder.stdout.readline()
        assert line.strip() == "HELD", (line, holder.stderr.read() if holder.poll() is not None else "")
        st = vd.scard_json("status")["scardd"]
        mine = [c for c in st["clients"] if c["pid"] == holder.pid]
        assert len(mine) == 1, st["clients"]
        c = mine[0]
        assert c["cards"] == 2
        assert sorted(c["handles"], key=lambda h: h["reader"]) == [
            {"reader": r0, "share": "exclusive", "protocol": "T=1", "transaction": True},
            {"reader": r1, "share": "direct", "protocol": None, "transaction": False}]
        use = {u["name"]: u for u in st["readers_in_use"]}
        assert use[r0] == {"name": r0, "handles": 1, "exclusive": c["id"], "transaction": c["id"]}
        assert use[r1] == {"name": r1, "handles": 1, "exclusive": None, "transaction": None}
        assert st["cards_left_out"] == 0

        out = vd.scard("status").stdout
        assert '      "%s": exclusive, T=1, in a transaction\n' % r0 in out, out
        assert '      "%s": direct\n' % r1 in out, out
        assert "readers in use:\n" in out
        assert '  "%s": 1 handle; exclusive to client %d; in a transaction of client %d\n' % (
            r0, c["id"], c["id"]) in out, out

        if os.geteuid() == 0 and shutil.which("setpriv"):
            env = vd.env()
            for d in (vd.dir, vd.dir / "run"):  # (the test's private directories)
                os.chmod(d, 0o755)
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "--", str(SCARD), "--json", "status"], capture_output=True,
                               text=True, env=env, timeout=30, cwd="/")
            assert r.returncode == 0, r.stderr
            other = json.loads(r.stdout)["scardd"]
            assert other["clients"] == [] and other["clients_hidden"] >= 1
            use = {u["name"]: u for u in other["readers_in_use"]}
            assert use[r0]["exclusive"] == "hidden" and use[r0]["transaction"] == "hidden"
    finally:
        holder.kill()
        holder.wait()
    # released with the client: nothing in use any more
    for _ in range(100):
        st = vd.scard_json("status")["scardd"]
        if not st["readers_in_use"]:
            break
        time.sleep(0.05)
    assert st["readers_in_use"] == [], st


# ---- send ----

def test_send_t0_get_response_human(fresh):
    r = fresh.scard("send", "--t0", "0", SELECT_AID)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "reader Virtual Reader 00 00, protocol T=0"
    assert lines[1] == "> " + spaced(SELECT_AID)
    assert lines[2] == "< 61 15   more data available: GET RESPONSE"
    assert lines[3] == "> 00 C0 00 00 15   (GET RESPONSE for 61xx)"
    assert lines[4] == "< %s 90 00   success" % spaced(FCI)


def test_send_t0_wrong_le_retried(fresh):
    r = fresh.scard("send", "--t0", "Reader 00 00", "00A4080C0450005001", "00 B0 00 00 00")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "< 6C 16   wrong Le: SW2 gives the exact length" in out
    assert "> 00 B0 00 00 16   (same command, Le from 6Cxx)" in out
    assert "< %s 90 00   success" % spaced(b"Hello from ifd-virtual".hex().upper()) in out


def test_send_raw_does_not_follow_up(fresh):
    r = fresh.scard("send", "--t0", "--raw", "0", SELECT_AID)
    assert r.returncode == 7
    assert r.stdout.count("> ") == 1 and "< 61 15" in r.stdout


def test_send_json_t1(fresh):
    doc = fresh.scard_json("send", "--t1", "0", SELECT_AID + "00", "00A4020C025001",
                           "00B0000005")
    assert doc["reader"] == "Virtual Reader 00 00" and doc["protocol"] == "T=1"
    a = doc["apdus"]
    assert [x["sw"] for x in a] == ["9000", "9000", "9000"]
    assert a[0]["data"] == FCI and len(a[0]["exchanges"]) == 1
    assert a[2]["data"] == b"Hello".hex().upper()
    assert a[2]["sw_text"] == "success"
    assert a[1]["exchanges"][0] == {"command": "00A4020C025001", "response": "9000",
                                    "why": None}


def test_send_json_t0_exchanges(fresh):
    doc = fresh.scard_json("send", "--t0", "0", SELECT_AID)
    ex = doc["apdus"][0]["exchanges"]
    assert [e["command"] for e in ex] == [SELECT_AID, "00C0000015"]
    assert ex[1]["why"] == "GET RESPONSE for 61xx"
    assert doc["apdus"][0]["data"] == FCI


def test_send_script_file_and_sw_error(fresh, tmp_path):
    script = tmp_path / "verify.apdu"
    script.write_text("# select, then a wrong PIN\n"
                      "00 A4 04 0C 07 F0 73 63 61 72 64 64\n"
                      "\n"
                      "00 20 00 81 04 39 39 39 39   # wrong\n")
    r = fresh.scard("send", "-f", script, "0", json=True)
    assert r.returncode == 7, r.stderr       # a status word other than 90 00
    doc = json.loads(r.stdout)
    assert [x["sw"] for x in doc["apdus"]] == ["9000", "63C2"]
    assert "tries left" in doc["apdus"][1]["sw_text"]
    # from stdin, human output explains the SW
    r = fresh.scard("send", "-f", "-", "0", input="00200081\n")
    assert r.returncode == 7
    assert "< 63 C2   verification failed: SW2 low nibble gives tries left" in r.stdout


def test_send_bad_apdu_exit_2(fresh, tmp_path):
    for apdu in ("00A4", "zz", "00A40"):
        r = fresh.scard("send", "0", apdu)
        assert r.returncode == 2, (apdu, r.stderr)
        assert "is not an APDU" in r.stderr
    r = fresh.scard("send", "-f", tmp_path / "missing", "0")
    assert r.returncode == 2 and "cannot open" in r.stderr


def test_send_unknown_reader_exit_4(fresh):
    r = fresh.scard("send", "No Such Reader", "00A40000")
    assert r.returncode == 4
    assert "no reader matches 'No Such Reader'" in r.stderr
    r = fresh.scard("send", "7", "00A40000")
    assert r.returncode == 4 and "no reader number 7" in r.stderr
    r = fresh.scard("send", "Virtual", "00A40000")   # ambiguous
    assert r.returncode == 4 and "matches 2 readers" in r.stderr


def test_send_no_card_exit_5(fresh):
    r = fresh.scard("send", "1", "00A40000")
    assert r.returncode == 5
    assert "there is no card in the reader" in r.stderr
    fresh.scard("virtual", "mute", "0")
    r = fresh.scard("send", "0", "00A40000")
    assert r.returncode == 5
    assert "mute card" in r.stderr, r.stderr


def test_send_sharing_violation_exit_6(fresh):
    holder = fresh.hold(fresh.reader(0), "EXCLUSIVE")
    try:
        r = fresh.scard("send", "0", "00A4000C023F00")
        assert r.returncode == 6, (r.stdout, r.stderr)
        assert "another application holds the reader exclusively" in r.stderr
        r = fresh.scard("send", "--exclusive", "1", "00A4000C023F00")
        assert r.returncode == 5  # other reader: not blocked, just empty
    finally:
        stop_pid(holder)


# ---- virtual ----

def test_virtual_status(fresh):
    doc = fresh.scard_json("virtual", "status")
    rs = doc["readers"]
    assert [(r["reader"], r["slot"], r["card"]) for r in rs] == [
        ("Virtual Reader 00 00", 0, "present"), ("Virtual Reader 00 01", 1, "absent")]
    assert rs[0]["file"] == "builtin" and rs[0]["mute"] is False
    r = fresh.scard("virtual", "status", "1")
    assert r.returncode == 0
    assert re.match(r"Virtual Reader 00 01\s+card absent\s+mute no\s+fast no", r.stdout)


def test_virtual_insert_json_and_wait(fresh):
    doc = fresh.scard_json("virtual", "insert", "1", DEMO_CARD)
    assert doc["ok"] is True and doc["reader"] == "Virtual Reader 00 01" and doc["slot"] == 1
    assert doc["daemon_saw_it"] is True
    assert doc["control"] == fresh.control
    # waited for the daemon: the very next look sees the card
    assert fresh.scard_json("list")["readers"][1]["card"] == "present"
    doc = fresh.scard_json("virtual", "remove", "Reader 00 01")
    assert doc["message"] == "removed" and doc["daemon_saw_it"] is True
    assert fresh.scard_json("list")["readers"][1]["card"] == "absent"


def test_virtual_with_explicit_control_socket(fresh):
    r = fresh.scard("virtual", "--control", fresh.control, "insert", "1", "builtin")
    assert r.returncode == 0, r.stderr
    r = fresh.scard("virtual", "--control", fresh.control, "status", json=True)
    assert [x["card"] for x in json.loads(r.stdout)["readers"]] == ["present", "present"]
    env = dict(fresh.env(), SCARD_VIRTUAL_CONTROL=fresh.control)
    r = fresh.scard("virtual", "remove", "1", env=env)
    assert r.returncode == 0, r.stderr


def test_virtual_with_debian_client_library(fresh):
    """The control socket is found through SCardGetAttrib: Debian's library
    refuses a buffer longer than MAX_BUFFER_SIZE, which scard must not ask for
    (the Debian package's scard runs on Debian's libpcsclite1)."""
    r = fresh.scard("virtual", "insert", "1", "builtin", client_lib="debian")
    assert r.returncode == 0, r.stderr
    assert fresh.scard_json("list")["readers"][1]["card"] == "present"


def test_virtual_errors(fresh, tmp_path):
    r = fresh.scard("virtual", "--control", tmp_path / "none.sock", "remove", "0")
    assert r.returncode == 8
    assert "cannot reach the ifd-virtual control socket" in r.stderr
    r = fresh.scard("virtual", "--control", fresh.control, "remove", "5")
    assert r.returncode == 8 and "no reader 5 here" in r.stderr
    r = fresh.scard("virtual", "insert", "0", tmp_path / "missing.card")
    assert r.returncode == 2 and "cannot read card file" in r.stderr
    r = fresh.scard("virtual", "insert", "Nope")
    assert r.returncode == 4


# ---- watch ----

def spawn_scard(d, *args):
    return subprocess.Popen([str(SCARD)] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=d.env(),
                            preexec_fn=_die_with_parent)


def test_watch_json_insert_remove(fresh):
    p = spawn_scard(fresh, "--json", "watch")
    try:
        lines = LineReader(p)
        first = json.loads(lines.wait_for(lambda l: "Reader 00 01" in l))
        assert first["event"] == "no card"
        fresh.scard("virtual", "insert", "1", "builtin")
        ev = json.loads(lines.wait_for(lambda l: "inserted" in l))
        assert ev["reader"] == "Virtual Reader 00 01" and ev["card"] == "present"
        assert ev["atr"] == BUILTIN_ATR.hex().upper()
        fresh.scard("virtual", "remove", "1")
        ev = json.loads(lines.wait_for(lambda l: "removed" in l))
        assert ev["event"] == "card removed" and ev["atr"] is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        stop_pid(p)


def test_watch_count(fresh):
    """--count N: exit after N changes. The control socket is named, so no
    PC/SC connection (which would itself be a change) is made by scard virtual."""
    p = spawn_scard(fresh, "--json", "watch", "--count", "2", "--timeout", "30")
    try:
        lines = LineReader(p)
        lines.wait_for(lambda l: "Reader 00 01" in l)
        for action in ("insert", "remove"):
            r = fresh.scard("virtual", "--control", fresh.control, action, "1")
            assert r.returncode == 0, r.stderr
            lines.wait_for(lambda l: action[:-1] in l)
        assert p.wait(10) == 0
        events = [json.loads(l)["event"] for l in lines.lines]
        assert events[-2:] == ["card inserted", "card removed"]
    finally:
        stop_pid(p)


def test_watch_human_and_sigint(fresh):
    p = spawn_scard(fresh, "watch")
    try:
        lines = LineReader(p)
        lines.wait_for(lambda l: "Virtual Reader 00 00" in l and "card present" in l)
        fresh.scard("virtual", "insert", "1", "builtin")
        line = lines.wait_for(lambda l: "card inserted" in l)
        assert re.match(r"\d\d:\d\d:\d\d\.\d{3}  Virtual Reader 00 01\s+card inserted  ATR " +
                        re.escape(ATR_SPACED), line), line
        fresh.scard("virtual", "mute", "1")
        lines.wait_for(lambda l: "card mute" in l)
        p.send_signal(signal.SIGINT)
        assert p.wait(5) == 0
    finally:
        stop_pid(p)


def test_watch_timeout(fresh):
    t0 = time.monotonic()
    r = fresh.scard("watch", "--timeout", "0.5", json=True)
    assert r.returncode == 0
    assert time.monotonic() - t0 > 0.4  # it waited the timeout it was given
    assert [json.loads(l)["event"] for l in r.stdout.splitlines()] == ["card present", "no card"]
