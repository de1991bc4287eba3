"""opensc-tool (OpenSC, Debian's libpcsclite1) against the daemon."""
import os
import re
import subprocess

from conftest import READER0, READER1, VICC_ATR


def opensc(daemon, *args, timeout=60):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=daemon.socket)
    return subprocess.run(["opensc-tool"] + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def reader_rows(out):
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(\d+)\s+(Yes|No)\s+.*?(Virtual PCD 00 0\d)\s*$", line)
        if m:
            rows[m.group(3)] = (int(m.group(1)), m.group(2))
    return rows


def test_list_readers_with_card(daemon):
    daemon.card(0, stock=True).insert()
    r = opensc(daemon, "-l")
    assert r.returncode == 0, r.stderr
    rows = reader_rows(r.stdout)
    assert rows.get(READER0, (None, None))[1] == "Yes", r.stdout
    assert rows.get(READER1, (None, None))[1] == "No", r.stdout


def test_list_readers_follows_removal(daemon):
    card = daemon.card(0, stock=True)
    card.insert()
    card.remove()
    r = opensc(daemon, "-l")
    assert r.returncode == 0, r.stderr
    rows = reader_rows(r.stdout)
    assert rows[READER0][1] == "No" and rows[READER1][1] == "No", r.stdout


def test_atr(daemon):
    daemon.card(0, stock=True).insert()
    r = opensc(daemon, "-a")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ":".join("%02x" % b for b in VICC_ATR) in r.stdout


def test_atr_by_reader_name(daemon):
    daemon.card(1, stock=True).insert()
    r = opensc(daemon, "-r", READER1, "-a")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ":".join("%02x" % b for b in VICC_ATR) in r.stdout


def test_atr_without_card_fails(daemon):
    daemon.card(0, stock=True).insert()
    r = opensc(daemon, "-r", "1", "-a")
    assert r.returncode != 0
    assert "Card not present" in r.stdout + r.stderr


def test_no_daemon_no_readers(test_dir):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(test_dir / "nothing-here.comm"))
    r = subprocess.run(["opensc-tool", "-l"], env=env, capture_output=True, text=True, timeout=60)
    assert "Virtual PCD" not in r.stdout
