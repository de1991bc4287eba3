#!/usr/bin/python3
"""Writes seed inputs for fuzz_client_build into corpus/client_build (or argv[1]).

First byte 0: an ELF shared object whose section headers the decoder reads
(ELF32/ELF64, both byte orders, a .bss of 16 or 48 records plus 300 bytes,
or none). First byte 1: /proc/PID/maps text of pcsc-lite clients.
"""
import os
import struct
import sys

RECORD = 184
STRTAB = b"\0.text\0.bss\0.shstrtab\0.bsx\0"


def elf(is64, big, bss, name=7):
    e = ">" if big else "<"
    word = "Q" if is64 else "I"
    eh, sh = (64, 64) if is64 else (52, 40)
    sh_off = (eh + len(STRTAB) + 7) & ~7
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 2 if big else 1, 1]) + bytes(9)
    hdr = ident + struct.pack(e + "HHI" + word * 3 + "IHHHHHH", 3, 62 if is64 else 3, 1,
                              0, 0, sh_off, 0, eh, 56 if is64 else 32, 0, sh, 4, 3)

    def shdr(n, typ, off, size):
        return struct.pack(e + "II" + word * 4 + "II" + word * 2, n, typ, 3, 0x1000, off, size,
                           0, 0, 1, 0)

    body = hdr + STRTAB
    body += bytes(sh_off - len(body))
    body += bytes(sh) + shdr(1, 1, eh, 4) + shdr(name, 8, eh, bss) + shdr(12, 3, eh, len(STRTAB))
    return b"\0" + body


MAPS_2X = (
    "55868b4c7000-55868b4c9000 r--p 00000000 fe:00 247134    /usr/bin/pcsc_scan\n"
    "7f00000000-7f00001000 r--p 00000000 fe:00 500    /usr/lib/libpcsclite.so.1.0.0\n"
    "7f10000000-7f10004000 r--p 00000000 fe:00 501    /usr/lib/libpcsclite_real.so.1.0.0\n"
    "7ffd1000-7ffd2000 rw-p 00000000 00:00 0          [stack]\n"
)
MAPS_1X = (
    "08048000-08049000 r-xp 00001000 103:02 42 /usr/lib/i386-linux-gnu/libpcsclite.so.1.0.0\n"
    "08050000-08051000 r--p 00000000 00:31 43 /run/user/1000/fuse/libpcsclite.so.1 (deleted)\n"
)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "client_build")
    os.makedirs(out, exist_ok=True)
    seeds = {
        "elf64le_16": elf(True, False, 16 * RECORD + 300),
        "elf32le_48": elf(False, False, 48 * RECORD + 300),
        "elf64be_48": elf(True, True, 48 * RECORD + 300),
        "elf32be_nobss": elf(False, True, 16 * RECORD + 300, name=22),
        "maps_2x": b"\1" + MAPS_2X.encode(),
        "maps_1x": b"\1" + MAPS_1X.encode(),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
