"""Our libpcsclite asks a 4:6 daemon for its reader array in one round trip.

pcsc-lite 2.5's protocol splits the array into a length query (0x16) and
the array itself (0x17). Asked one after the other, SCardListReaders waits
for the daemon twice, and SCardStatus, which also asks for the handle's
status, three times. Our library writes those requests at once and reads
every answer, in order, whatever the answers are.

A fake daemon tells the two apart without timing: one write puts the
requests in the socket together, so the others are already queued when
the daemon takes 0x16 and has not answered it yet; asked one after the
other, nothing is. Its array names a reader whose name and ATR the client
must report, and its status answers carry results the client must return,
so a client that reads an answer out of turn fails too. On 4:4/4:5 nothing
may follow the fixed array request (0x12): the library tells Fedora's
48-record array from upstream's 16 by what is left to read after it.
"""
import socket
import struct
import subprocess

import pytest

import pcsc_raw
from client_env import our_lib
from conftest import SANITIZED
from one_client_daemon import canned_answer, one_client_daemon, recv_exact, run_client

READER = "Pipelined Reader 00 00"
ATR = bytes([0x3B, 0x80, 0x80, 0x01, 0x01])
LENGTH, ARRAY, LEGACY_ARRAY = (pcsc_raw.CMD_GET_READERS_STATE_SIZE,
                               pcsc_raw.CMD_GET_READERS_STATE_ARRAY, pcsc_raw.CMD_GET_READERS_STATE)
STATUS = pcsc_raw.SCARD_STATUS
NO_MEMORY = 0x80100006

# ListReaders once, then (with "status") connect and SCardStatus twice; one
# line per call: its result, and for a successful one what it reported.
CLIENT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
ctx = ctypes.c_long(0)
rv = lib.SCardEstablishContext(2, None, None, ctypes.byref(ctx))
assert rv == 0, "SCardEstablishContext: 0x%08X" % (rv & 0xFFFFFFFF)
buf = ctypes.create_string_buffer(1024)
n = ctypes.c_ulong(len(buf))
rv = lib.SCardListReaders(ctx, None, buf, ctypes.byref(n))
print("%08X" % (rv & 0xFFFFFFFF), buf.raw[:n.value].split(b"\0")[0].decode() if rv == 0 else "")
if sys.argv[2] == "status":
    card, proto = ctypes.c_long(0), ctypes.c_ulong(0)
    rv = lib.SCardConnect(ctx, buf, 2, 3, ctypes.byref(card), ctypes.byref(proto))
    assert rv == 0, "SCardConnect: 0x%08X" % (rv & 0xFFFFFFFF)
    for _ in range(2):
        name = ctypes.create_string_buffer(256)
        name_len, state, proto = ctypes.c_ulong(256), ctypes.c_ulong(0), ctypes.c_ulong(0)
        atr, atr_len = ctypes.create_string_buffer(33), ctypes.c_ulong(33)
        rv = lib.SCardStatus(card, name, ctypes.byref(name_len), ctypes.byref(state),
                             ctypes.byref(proto), atr, ctypes.byref(atr_len))
        print("%08X" % (rv & 0xFFFFFFFF),
              "%s %s" % (name.value.decode(), atr.raw[:atr_len.value].hex()) if rv == 0 else "")
lib.SCardReleaseContext(ctx)
"""

# Fails every realloc of 512 kB or more: a 4096-record array has no room.
REALLOC_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
void *realloc(void *p, size_t n)
{
	static void *(*real)(void *, size_t);
	if (!real)
		real = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	return n >= 512 * 1024 ? NULL : real(p, n);
}
"""


def reader_array(records):
    state = pcsc_raw.SCARD_PRESENT | pcsc_raw.SCARD_POWERED
    first = struct.pack(pcsc_raw.READER_STATE_FMT, READER.encode(), 1, state, 0, ATR,
                        len(ATR), pcsc_raw.SCARD_PROTOCOL_T1)
    return first + bytes(pcsc_raw.READER_STATE_SIZE * (records - 1))


def commands_queued(conn):
    """The commands of the requests already waiting on conn, unread."""
    try:
        ahead = conn.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return []
    cmds = []
    while len(ahead) >= 8:
        size, cmd = struct.unpack("<II", ahead[:8])
        cmds.append(cmd)
        ahead = ahead[8 + size:]
    return cmds


class FakeDaemon:
    """Serves version (as minor), contexts, connect, status and the reader
    array. queued gets, for each array request that starts a fetch (0x16,
    or 0x12 on 4:4/4:5), the requests already waiting behind it. counts:
    the lengths 0x16 announces in turn (2 when none are left); status_rvs:
    the results of the status answers in turn (0 when none are left)."""

    def __init__(self, minor, counts=(), status_rvs=()):
        self.minor = minor
        self.counts, self.status_rvs = list(counts), list(status_rvs)
        self.queued = []
        self.records = 2

    def __call__(self, conn):
        while True:
            size, cmd = struct.unpack("<II", recv_exact(conn, 8))
            if cmd == LENGTH:
                self.queued.append(commands_queued(conn))
                self.records = self.counts.pop(0) if self.counts else 2
                conn.sendall(struct.pack("<I", self.records))
            elif cmd == ARRAY:
                conn.sendall(reader_array(self.records))
            elif cmd == LEGACY_ARRAY:
                self.queued.append(commands_queued(conn))
                conn.sendall(reader_array(pcsc_raw.PCSCLITE_MAX_READERS_CONTEXTS))
            elif cmd == STATUS:
                card, _ = struct.unpack(pcsc_raw.FMT[cmd], recv_exact(conn, size))
                rv = self.status_rvs.pop(0) if self.status_rvs else 0
                conn.sendall(pcsc_raw.pack(cmd, card, rv))
            else:
                assert size == pcsc_raw.SIZE.get(cmd), "unexpected command 0x%02X" % cmd
                conn.sendall(canned_answer(cmd, recv_exact(conn, size), (4, self.minor)))


def run_against(tmp_path, fake, then, preload=None):
    if SANITIZED:
        pytest.skip("sanitizer: an instrumented libpcsclite cannot load into Debian's python")
    path = str(tmp_path / "fake.comm")
    with one_client_daemon(path, fake) as errors:
        r = run_client(path, CLIENT, our_lib(), then, preload=preload)
    assert not errors, errors
    assert r.returncode == 0, r.stderr
    return [line.rstrip() for line in r.stdout.splitlines()]


def test_list_readers_asks_length_and_array_at_once(tmp_path):
    fake = FakeDaemon(6)
    assert run_against(tmp_path, fake, "list") == ["00000000 " + READER]
    # the length query came with its array request behind it, in one write
    assert fake.queued == [[ARRAY]]


def test_status_asks_array_and_status_at_once(tmp_path):
    fake = FakeDaemon(6, status_rvs=[pcsc_raw.SCARD_W_RESET_CARD])
    out = run_against(tmp_path, fake, "status")
    # the status answer's own result, then a plain one: each answer read in its turn
    assert out == ["00000000 " + READER, "%08X" % pcsc_raw.SCARD_W_RESET_CARD,
                   "00000000 %s %s" % (READER, ATR.hex())], out
    assert fake.queued == [[ARRAY], [ARRAY, STATUS], [ARRAY, STATUS]]


def test_status_answer_read_when_the_array_has_no_room(tmp_path):
    """The status answer behind an array the library cannot hold is still
    taken off the stream: the next call gets its own answers."""
    shim_c, shim = tmp_path / "shim.c", tmp_path / "realloc_shim.so"
    shim_c.write_text(REALLOC_SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(shim_c), "-ldl"], check=True)
    fake = FakeDaemon(6, counts=[2, 4096])
    out = run_against(tmp_path, fake, "status", preload=shim)
    assert out == ["00000000 " + READER, "%08X" % NO_MEMORY,
                   "00000000 %s %s" % (READER, ATR.hex())], out
    assert fake.queued == [[ARRAY], [ARRAY, STATUS], [ARRAY, STATUS]]


@pytest.mark.parametrize("minor", [4, 5])
def test_nothing_follows_a_fixed_array_request(tmp_path, minor):
    fake = FakeDaemon(minor, status_rvs=[pcsc_raw.SCARD_W_RESET_CARD])
    out = run_against(tmp_path, fake, "status")
    assert out == ["00000000 " + READER, "%08X" % pcsc_raw.SCARD_W_RESET_CARD,
                   "00000000 %s %s" % (READER, ATR.hex())], out
    assert fake.queued == [[], [], []]
