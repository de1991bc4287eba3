"""A fake daemon for client-library tests: a socket served from a thread of
the test, one client, by a function of the test's own. What the function
raises (EOF aside: the client left) is kept for the test to report."""
import contextlib
import os
import socket
import struct
import subprocess
import threading

import pcsc_raw
from client_env import PYTHON


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def canned_answer(cmd, body, version):
    """The answer to cmd's request struct body from a daemon speaking
    version (major, minor) that grants everything: rv 0 in every struct."""
    fields = list(struct.unpack(pcsc_raw.FMT[cmd], body))
    if cmd == pcsc_raw.CMD_VERSION:
        fields[:2] = version
    elif cmd == pcsc_raw.SCARD_ESTABLISH_CONTEXT:
        fields[1] = 0x4321  # hContext
    elif cmd == pcsc_raw.SCARD_CONNECT:
        fields[4:6] = [0x5678, pcsc_raw.SCARD_PROTOCOL_T1]  # hCard, active protocol
    fields[-1] = 0  # rv: every struct ends with it
    return pcsc_raw.pack(cmd, *fields)


@contextlib.contextmanager
def one_client_daemon(path, serve):
    """Listens on path and calls serve(conn) for the first client; yields
    the list of errors, complete once the block has ended."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    errors = []

    def run():
        try:
            conn, _ = listener.accept()
            with conn:
                serve(conn)
        except EOFError:
            pass
        except Exception as e:  # reported by the test
            errors.append(repr(e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield errors
    finally:
        t.join(10)
        listener.close()


def run_client(path, code, *args, preload=None):
    """Runs python code (Debian's interpreter) against the daemon at path,
    with LD_PRELOAD=preload when given."""
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=path)
    if preload:
        env["LD_PRELOAD"] = str(preload)
    return subprocess.run([PYTHON, "-c", code] + [str(a) for a in args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
