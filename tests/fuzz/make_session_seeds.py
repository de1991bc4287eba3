#!/usr/bin/python3
"""Writes seed inputs for fuzz_session: whole conversations of three clients.

With FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION the daemon hands out ids
1, 2, 3 ... in order, so the seeds can name the handles they will get.
"""
import os
import struct
import sys

READER = b"Stub Reader 00 00"


def msg(cmd, body=b""):
    return struct.pack("<II", len(body), cmd) + body


def version():
    return msg(0x11, struct.pack("<iiI", 4, 4, 0))


def establish():
    return msg(0x01, struct.pack("<III", 0, 0, 0))


def connect(ctx, share=2, proto=3):
    name = READER.ljust(128, b"\0")
    return msg(0x04, struct.pack("<I", ctx) + name + struct.pack("<IIiII", share, proto, 0, 0, 0))


def card_cmd(cmd, card, *fields):
    return msg(cmd, struct.pack("<i" + "I" * len(fields), card, *fields))


def transmit(card, apdu):
    body = struct.pack("<iIIIIIII", card, 2, 16, len(apdu), 2, 16, 258, 0)
    return msg(0x09, body) + apdu


def chunk(client, data):
    out = b""
    while data:
        part, data = data[:255], data[255:]
        out += bytes([client, len(part)]) + part
    return out


def seeds():
    # ids: contexts and cards are numbered in the order they are created
    yield "shared", (chunk(0, version() + establish() + connect(1)) +
                     chunk(0, transmit(2, b"\x00\x84\x00\x00\x08")) +
                     chunk(0, card_cmd(0x0B, 2, 0)) + chunk(0, card_cmd(0x06, 2, 1, 0)))
    yield "transaction", (chunk(0, version() + establish() + connect(1)) +
                          chunk(1, version() + establish() + connect(3)) +
                          chunk(0, card_cmd(0x07, 2, 0)) +
                          chunk(1, card_cmd(0x07, 4, 0)) +
                          chunk(0, card_cmd(0x08, 2, 1, 0)) +
                          chunk(1, card_cmd(0x08, 4, 0, 0)))
    yield "exclusive", (chunk(0, version() + establish() + connect(1, share=1)) +
                        chunk(1, version() + establish() + connect(3)) +
                        chunk(0, card_cmd(0x05, 2, 2, 3, 1, 0, 0)))
    yield "wait_cancel", (chunk(0, version() + establish() + msg(0x13)) +
                          chunk(1, msg(0x0D, struct.pack("<iI", 1, 0))) +
                          chunk(2, version() + establish() + connect(2)))
    yield "attrib_control", (chunk(0, version() + establish() + connect(1, share=3, proto=0)) +
                             chunk(0, msg(0x0F, struct.pack("<iI", 2, 0x10100) + b"\0" * 264 +
                                          struct.pack("<II", 264, 0))) +
                             chunk(0, msg(0x0A, struct.pack("<iIIIII", 2, 0x42000001, 3, 10, 0, 0))
                                   + b"abc"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                             "corpus", "session")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
