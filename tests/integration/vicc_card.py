#!/usr/bin/python3
"""A vicc (vsmartcard-vpicc) card for the integration tests.

Runs Debian's vicc machinery (virtualsmartcard.VirtualSmartcard.VirtualICC,
which speaks vpcd's TCP protocol) with its stock ISO 7816 card, plus two test
hooks the stock card lacks (and one fix: whole-frame reads from vpcd):

* --atr HEX   answer-to-reset to present (default: vicc's own T=1 ATR);
              e.g. a T=0 card or a T=0/T=1 dual-protocol card.
* INS 0xEE    "echo": with P1=P2=0 the answer is the command data; otherwise
              the answer is (P1<<8|P2) bytes of the pattern (i*7+3)&0xFF.
              Always 90 00. Needs an Le (short or extended) like any case-4
              APDU on this card.

The caller must put vicc's module dir and a `Crypto` alias for Cryptodome on
PYTHONPATH (conftest.vicc_env() does that).
"""
import argparse
import logging
import socket
import struct
import sys

from virtualsmartcard.VirtualSmartcard import VirtualICC
from virtualsmartcard.SWutils import SW

ECHO_INS = 0xEE


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except InterruptedError:
            continue
        if not chunk:
            logging.info("Virtual PCD shut down")
            raise socket.error("EOF")
        buf += chunk
    return buf


def _recv_from_vpcd(self):
    # Stock vicc reads a message with a single recv(), which on a busy
    # loopback can return part of a large APDU; read the whole frame.
    size = struct.unpack("!H", _recv_exact(self.sock, 2))[0]
    return size, (_recv_exact(self.sock, size) if size else None)


VirtualICC._VirtualICC__recvFromVPICC = _recv_from_vpcd


def pattern(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", "-P", type=int, required=True)
    ap.add_argument("--host", "-H", default="127.0.0.1")
    ap.add_argument("--atr", help="ATR as hex")
    ap.add_argument("--verbose", "-v", action="count", default=0)
    args = ap.parse_args()

    level = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING,
             3: logging.INFO}.get(args.verbose, logging.DEBUG)
    icc = VirtualICC(None, "iso7816", args.host, args.port,
                     logginglevel=level)
    if args.atr:
        icc.os.atr = bytes.fromhex(args.atr)

    def echo(p1, p2, data):
        n = (p1 << 8) | p2
        return SW["NORMAL"], (pattern(n) if n else bytes(data))

    icc.os.ins2handler[ECHO_INS] = echo
    try:
        icc.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
