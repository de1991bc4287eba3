"""pcsc_scan (pcsc-tools, Debian's libpcsclite1) against the daemon."""
import os
import re
import subprocess
import threading
import time

from conftest import READER0, READER1, VICC_ATR, spawn, stop_process


class Output:
    """Collects a child's stdout as it comes."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = b""
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return
            with self.lock:
                self.buf += chunk

    def text(self):
        with self.lock:
            return self.buf.decode(errors="replace").replace("\r", "\n")

    def wait_for(self, pattern, start=0, timeout=30):
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.text(), start)
            if m:
                return m
            if self.proc.poll() is not None and not self.t.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError("pattern %r not seen in pcsc_scan output:\n%s" % (pattern, self.text()[-3000:]))


def start_scan(daemon):
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=daemon.socket)
    # stdbuf: pcsc_scan writes to a pipe here; keep it unbuffered so nothing
    # is lost when we stop it
    p = spawn(["stdbuf", "-o0", "-e0", "pcsc_scan", "-n"], stdout=subprocess.PIPE,
              stderr=subprocess.STDOUT, env=env)
    return p, Output(p)


def atr_text(atr):
    return " ".join("%02X" % b for b in atr)


def test_pcsc_scan_lists_readers_card_and_atr(daemon):
    daemon.card(0, stock=True).insert()
    p, out = start_scan(daemon)
    try:
        out.wait_for(r"0: %s" % re.escape(READER0))
        out.wait_for(r"1: %s" % re.escape(READER1))
        m = out.wait_for(r"Reader 0: %s\s+Event number: \d+\s+Card state: Card inserted,\s+ATR: %s"
                         % (re.escape(READER0), re.escape(atr_text(VICC_ATR))))
        out.wait_for(r"Reader 1: %s\s+Event number: \d+\s+Card state: Card removed" % re.escape(READER1))
        assert m
    finally:
        stop_process(p, timeout=5)


def test_pcsc_scan_reports_removal_and_insertion(daemon):
    card = daemon.card(0, stock=True)
    card.insert()
    p, out = start_scan(daemon)
    try:
        m = out.wait_for(r"Reader 0: %s\s+Event number: (\d+)\s+Card state: Card inserted" % re.escape(READER0))
        ev0 = int(m.group(1))
        card.remove()
        m = out.wait_for(r"Reader 0: %s\s+Event number: (\d+)\s+Card state: Card removed" % re.escape(READER0),
                         start=m.end())
        ev1 = int(m.group(1))
        assert ev1 > ev0, "event number must grow on removal"
        card.insert()
        m = out.wait_for(r"Reader 0: %s\s+Event number: (\d+)\s+Card state: Card inserted,\s+ATR: %s"
                         % (re.escape(READER0), re.escape(atr_text(VICC_ATR))), start=m.end())
        assert int(m.group(1)) > ev1, "event number must grow on insertion"
        assert p.poll() is None, "pcsc_scan must still be running"
    finally:
        stop_process(p, timeout=5)


def test_pcsc_scan_sees_second_slot(daemon):
    daemon.card(1, stock=True).insert()
    p, out = start_scan(daemon)
    try:
        out.wait_for(r"Reader 1: %s\s+Event number: \d+\s+Card state: Card inserted,\s+ATR: %s"
                     % (re.escape(READER1), re.escape(atr_text(VICC_ATR))))
        out.wait_for(r"Reader 0: %s\s+Event number: \d+\s+Card state: Card removed" % re.escape(READER0))
    finally:
        stop_process(p, timeout=5)
