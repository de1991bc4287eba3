"""Our libpcsclite asks a 4:6 daemon for its reader array in one round trip.

pcsc-lite 2.5's protocol splits the array into a length query (0x16) and
the array itself (0x17). Asked one after the other, SCardListReaders waits
for the daemon twice, and SCardStatus, which also asks for the handle's
status, three times. Our library writes those requests at once and reads
every answer.

A fake 4:6 daemon tells the two apart without timing: one write puts the
requests in the socket together, so the others are already queued when
the daemon takes 0x16 and has not answered it yet; asked one after the
other, nothing is. It answers with a two-record array whose first reader's
name and ATR the client must report, so a client that misreads the
answers fails too.
"""
import socket
import struct

import pytest

import pcsc_raw
from client_env import our_lib
from conftest import SANITIZED
from one_client_daemon import canned_answer, one_client_daemon, recv_exact, run_client

READER = "Pipelined Reader 00 00"
RECORDS = 2
ATR = bytes([0x3B, 0x80, 0x80, 0x01, 0x01])

CLIENT = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
ctx = ctypes.c_long(0)
rv = lib.SCardEstablishContext(2, None, None, ctypes.byref(ctx))
assert rv == 0, "SCardEstablishContext: 0x%08X" % (rv & 0xFFFFFFFF)
for _ in range(int(sys.argv[2])):
    buf = ctypes.create_string_buffer(1024)
    n = ctypes.c_ulong(len(buf))
    rv = lib.SCardListReaders(ctx, None, buf, ctypes.byref(n))
    assert rv == 0, "SCardListReaders: 0x%08X" % (rv & 0xFFFFFFFF)
    print(buf.raw[:n.value].split(b"\0")[0].decode())
if sys.argv[3] == "status":
    card, proto = ctypes.c_long(0), ctypes.c_ulong(0)
    rv = lib.SCardConnect(ctx, buf, 2, 3, ctypes.byref(card), ctypes.byref(proto))
    assert rv == 0, "SCardConnect: 0x%08X" % (rv & 0xFFFFFFFF)
    name = ctypes.create_string_buffer(256)
    name_len, state, proto = ctypes.c_ulong(256), ctypes.c_ulong(0), ctypes.c_ulong(0)
    atr, atr_len = ctypes.create_string_buffer(33), ctypes.c_ulong(33)
    rv = lib.SCardStatus(card, name, ctypes.byref(name_len), ctypes.byref(state),
                         ctypes.byref(proto), atr, ctypes.byref(atr_len))
    assert rv == 0, "SCardStatus: 0x%08X" % (rv & 0xFFFFFFFF)
    print(name.value.decode(), atr.raw[:atr_len.value].hex())
lib.SCardReleaseContext(ctx)
"""


def reader_array():
    state = pcsc_raw.SCARD_PRESENT | pcsc_raw.SCARD_POWERED
    first = struct.pack(pcsc_raw.READER_STATE_FMT, READER.encode(), 1, state, 0, ATR,
                        len(ATR), pcsc_raw.SCARD_PROTOCOL_T1)
    return first + bytes(pcsc_raw.READER_STATE_SIZE * (RECORDS - 1))


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


def fake_46_daemon(queued):
    """Serves version (as 4:6), contexts, connect, status and the sized
    array; for each 0x16, queued gets the requests already waiting behind it."""
    def serve(conn):
        while True:
            size, cmd = struct.unpack("<II", recv_exact(conn, 8))
            if cmd == pcsc_raw.CMD_GET_READERS_STATE_SIZE:
                queued.append(commands_queued(conn))
                conn.sendall(struct.pack("<I", RECORDS))
                continue
            if cmd == pcsc_raw.CMD_GET_READERS_STATE_ARRAY:
                conn.sendall(reader_array())
                continue
            assert size == pcsc_raw.SIZE.get(cmd), "unexpected command 0x%02X" % cmd
            conn.sendall(canned_answer(cmd, recv_exact(conn, size), (4, 6)))
    return serve


ARRAY, STATUS = pcsc_raw.CMD_GET_READERS_STATE_ARRAY, pcsc_raw.SCARD_STATUS


@pytest.mark.parametrize("calls", [1, 3])
def test_list_readers_asks_length_and_array_at_once(tmp_path, calls):
    queued, out = run_against_fake(tmp_path, calls, "list")
    assert out[:calls] == [READER] * calls, out
    # every length query came with its array request behind it, in one write
    assert queued == [[ARRAY]] * calls, queued


def test_status_asks_array_and_status_at_once(tmp_path):
    queued, out = run_against_fake(tmp_path, 1, "status")
    assert out[1] == "%s %s" % (READER, ATR.hex()), out
    # ListReaders' and SCardConnect's own arrays, then SCardStatus's with its status
    assert queued[-1] == [ARRAY, STATUS], queued
    assert all(q[0] == ARRAY for q in queued), queued


def run_against_fake(tmp_path, calls, then):
    if SANITIZED:
        pytest.skip("sanitizer: an instrumented libpcsclite cannot load into Debian's python")
    path = str(tmp_path / "fake46.comm")
    queued = []
    with one_client_daemon(path, fake_46_daemon(queued)) as errors:
        r = run_client(path, CLIENT, our_lib(), calls, then)
    assert not errors, errors
    assert r.returncode == 0, r.stderr
    return queued, r.stdout.split("\n")
