"""The fault-injection driver (tests/drivers/ifd_fault.c) under the conftest
daemon: scardd, or Debian's pcscd with SCARDD_TEST_DAEMON=pcscd, so a test
learns what pcsc-lite answers to the same misbehaving driver.

`fault_daemon(readers, extra_args=())` starts the daemon over the stanzas of
FaultReaders made by `fault_reader(name, ...)` (fault_driver.FaultReader,
plus inject/clear for the error and garbage-length controls) and waits until
it lists them. Clients are the test's own pyscard (PCSCLITE_CSOCK_NAME is
the session socket every conftest daemon binds).
"""
import os
import threading

import pytest

import pcsc_raw
from conftest import IS_PCSCD, PCSCD_SOCKET, SOCKET, Daemon
from fault_driver import DRIVER, FaultReader

# ifdhandler.h
IFD = {
    "IFD_ERROR_TAG": 600,
    "IFD_ERROR_NOT_SUPPORTED": 606,
    "IFD_PROTOCOL_NOT_SUPPORTED": 607,
    "IFD_ERROR_POWER_ACTION": 608,
    "IFD_COMMUNICATION_ERROR": 612,
    "IFD_RESPONSE_TIMEOUT": 613,
    "IFD_NOT_SUPPORTED": 614,
    "IFD_ICC_NOT_PRESENT": 616,
    "IFD_NO_SUCH_DEVICE": 617,
    "IFD_ERROR_INSUFFICIENT_BUFFER": 618,
}


class InjectingReader(FaultReader):
    """A FaultReader whose calls can be made to fail or to lie about lengths."""

    def inject(self, control, value):
        """control: transmit_rc, control_rc, attr_rc (an IFD name or number),
        transmit_len, control_len, attr_len, tag_len ("N" or "+N")."""
        value = IFD.get(value, value)
        tmp = self.dir / (".%s.tmp" % control)
        tmp.write_text("%s\n" % value)
        tmp.rename(self.dir / control)

    def clear(self, control):
        self._flag(control, False)

    def vanish(self, on=True):
        self._flag("vanish", on)

    def release(self):
        super().release()
        self.vanish(False)


class FaultDaemon(Daemon):
    """conftest's Daemon over fault-driver stanzas instead of vpcd's."""

    def __init__(self, test_dir, readers, extra_args=(), names=None, socket_path=SOCKET):
        super().__init__(test_dir, socket_path=socket_path, extra_args=extra_args)
        for f in self.confdir.iterdir():
            f.unlink()
        (self.confdir / "fault").write_text("".join(r.stanza() for r in readers))
        self.fault_readers = readers
        self.readers = list(names) if names is not None else [r.reader() for r in readers]


def check_stopped(d):
    """Stops d; fails the test if it died early or (scardd) exited non-zero."""
    crashed = not d.alive()
    rc = d.stop()
    if d.socket != PCSCD_SOCKET and os.path.exists(d.socket) \
            and not pcsc_raw.socket_alive(d.socket):
        os.unlink(d.socket)
    if crashed:
        pytest.fail("%s died during the test (exit %s); log tail:\n%s"
                    % (d.kind, rc, d.log_tail()), pytrace=False)
    if not IS_PCSCD and rc != 0:
        pytest.fail("scardd exited %s on SIGTERM (sanitizer report?); log tail:\n%s"
                    % (rc, d.log_tail()), pytrace=False)


@pytest.fixture
def fault_reader(test_dir):
    """Factory of InjectingReaders in the test's directory (released at teardown)."""
    if not DRIVER.exists():
        pytest.fail("fault driver not built: %s missing" % DRIVER, pytrace=False)
    made = []

    def make(name="Fault", **kw):
        r = InjectingReader(test_dir, name, **kw)
        r.index = sum(1 for o in made if not o.fail_open) if not r.fail_open else None
        made.append(r)
        return r
    yield make
    for r in made:
        r.release()


@pytest.fixture
def fault_daemon(test_dir, fault_reader):
    """Factory: fault_daemon(readers, extra_args=(), names=None, socket_path=SOCKET)
    starts the daemon over those readers and waits until it lists names (by
    default each reader's first slot); it is stopped (and checked) at teardown."""
    made = []

    def start(readers, extra_args=(), names=None, socket_path=SOCKET):
        assert not any(d.alive() for d in made), "one daemon at a time: pcscd has one socket"
        d = FaultDaemon(test_dir, readers, extra_args, names, socket_path)
        made.append(d)
        d.start()
        return d
    yield start
    for d in made:
        for r in d.fault_readers:
            r.release()  # a driver stuck in a call would hold up the stop
        check_stopped(d)


@pytest.fixture
def contexts():
    """Factory of in-process PC/SC contexts, like conftest's new_ctx but
    without its vpcd daemon (released at teardown)."""
    from smartcard import scard
    made = []

    def make():
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hr == 0, "SCardEstablishContext: 0x%08X" % (hr & 0xFFFFFFFF)
        made.append(ctx)
        return ctx
    yield make
    # a call still blocked on a context holds its lock in libpcsclite:
    # release from a side thread, never hang the teardown
    t = threading.Thread(target=lambda: [scard.SCardReleaseContext(c) for c in made], daemon=True)
    t.start()
    t.join(10)
