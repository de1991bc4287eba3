"""bench/ideal_daemon, the ceiling bench/run prints beside the daemons:
it must speak the real protocol to the real client libraries, or the
ceiling it gives would be a number about something else. No timing is
asserted, only that the runs bench/run makes succeed and that what it
does not serve is refused, not answered wrongly."""
import os
import socket
import subprocess

import pytest

import pcsc_raw
from client_env import DEBIAN_LIB, build_dir, our_lib
from conftest import SANITIZED, spawn, stop_process

READERS = ["Instant 0 00 00", "Instant 1 01 00"]


@pytest.fixture(params=["threads", "epoll", "uring", "uring-loop"])
def ideal(tmp_path, request):
    if SANITIZED:
        pytest.skip("sanitizer: bench/ is not built under ASan/UBSan (its driver loads into pcscd)")
    binary = build_dir() / "bench" / "ideal_daemon"
    if not binary.exists():
        pytest.fail("%s missing: build the tree (meson builds bench/ in a plain build)" % binary)
    sock = str(tmp_path / "ideal.comm")
    mode = [] if request.param == "threads" else ["--" + request.param]
    proc = spawn([str(binary)] + mode + [sock] + READERS, stderr=subprocess.PIPE)

    def listening():
        if proc.poll() == 3:
            pytest.skip("environment: %s" % proc.stderr.read().strip())
        assert proc.poll() is None, "ideal_daemon exited: %s" % proc.stderr.read()
        return os.path.exists(sock) or None
    pcsc_raw.wait_for(listening, 10, what="ideal_daemon's socket")
    yield proc, sock, request.param
    assert proc.poll() is None, "ideal_daemon exited: %s" % proc.stderr.read()
    stop_process(proc)


@pytest.mark.parametrize("lib", ["debian", "ours"])
def test_client_libraries_transmit_through_it(ideal, lib):
    proc, sock, _ = ideal
    path = DEBIAN_LIB if lib == "debian" else str(our_lib())
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=sock)
    r = subprocess.run([str(build_dir() / "bench" / "transmit_load"), path, "0.3", str(proc.pid)]
                       + READERS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    # transmit_load exits 1 on any failed call or an answer other than 90 00
    assert r.returncode == 0, r.stderr
    counts = dict(line.split() for line in r.stdout.splitlines())
    assert float(counts["transmits"]) >= 2 * 100, r.stdout  # beyond each client's warm-up
    # every request finds the daemon asleep waiting for it: counted over all
    # its threads, those serving a client included (a thread per client
    # ends at the disconnect, and its count must be read before that)
    assert "daemon_wakeups_per_transmit" in counts, r.stdout  # /proc/PID/task read
    assert float(counts["daemon_wakeups_per_transmit"]) > 0, r.stdout


def test_a_client_that_fails_ends_the_load_run(ideal):
    """A transmit_load client that fails (here: its reader is not served)
    ends the run with an error: the others' pipe ends do not keep the
    parent waiting for it."""
    proc, sock, _ = ideal
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=sock)
    try:
        r = subprocess.run([str(build_dir() / "bench" / "transmit_load"), DEBIAN_LIB, "0.3",
                            str(proc.pid), READERS[0], "No Such Reader 00 00"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("transmit_load waited on a client that had failed")
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "SCardConnect" in r.stderr and "failed to start" in r.stderr, r.stderr


def test_connect_cycles_through_it(ideal):
    proc, sock, _ = ideal
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=sock)
    r = subprocess.run([str(build_dir() / "bench" / "connect_cycle"), DEBIAN_LIB, READERS[0], "0.3"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    # connect_cycle exits 1 on any failed call; it warms up with 20 cycles first
    assert r.returncode == 0, r.stderr
    cycles = float(r.stdout.split()[1])
    assert cycles > 0, r.stdout
    assert proc.poll() is None


def test_it_answers_only_what_it_serves(ideal):
    proc, sock, mode = ideal
    with pcsc_raw.RawClient(sock) as c:
        ctx = c.hello()
        fds = [os.readlink("/proc/%d/fd/%s" % (proc.pid, fd)) for fd in os.listdir("/proc/%d/fd" % proc.pid)]
        # each mode is what it says: a ring serves the client, or an epoll loop, or neither
        assert ("anon_inode:[io_uring]" in fds) == mode.startswith("uring"), fds
        assert ("anon_inode:[eventpoll]" in fds) == (mode == "epoll"), fds
        states = c.readers_state()
        assert [s.name for s in states if s.present] == READERS
        assert c.connect(ctx, "No such reader")[0] == pcsc_raw.SCARD_E_UNKNOWN_READER
        rv, card, protocol = c.connect(ctx, READERS[1])
        assert (rv, protocol) == (0, pcsc_raw.SCARD_PROTOCOL_T1)
        assert c.transmit(card, b"\x00\xa4\x04\x00") == (0, b"\x90\x00")
        assert c.transmit(card, b"\x00\xa4\x04\x00", recv_len=1)[0] == \
            pcsc_raw.SCARD_E_INSUFFICIENT_BUFFER
        c.send(c.message(pcsc_raw.SCARD_STATUS, card, 0))  # not part of the ceiling
        assert c.wait_closed(), "a command it does not serve must end the connection"
    with pcsc_raw.RawClient(sock) as c:  # the next client is served as before
        assert c.hello() != 0


def test_clients_leaving_unanswered_are_let_go(ideal):
    """Clients that ask and close before the answer: the daemon's send then
    fails, and each client's descriptor must still be closed."""
    proc, sock, _ = ideal
    fds = lambda: len(os.listdir("/proc/%d/fd" % proc.pid))  # noqa: E731
    before = fds()
    for _ in range(50):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock)
            s.sendall(pcsc_raw.message(pcsc_raw.CMD_VERSION, 4, 4, 0))
    pcsc_raw.wait_for(lambda: fds() == before or None, 10,
                      what="ideal_daemon back to %d descriptors (has %d)" % (before, fds()))
    with pcsc_raw.RawClient(sock) as c:  # and it still serves
        assert c.hello() != 0
