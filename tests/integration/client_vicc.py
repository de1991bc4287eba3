#!/usr/bin/python3
"""Debian's vicc card, started the way vicc's own launcher does, with one fix.

    client_vicc.py --type iso7816|cryptoflex --port PORT

Debian 12's vsmartcard-vpicc gives its cryptoflex card a str ATR, which
Python 3 cannot send (vicc dies with "can't concat str to bytes" as soon as
vpcd asks for the ATR). We hand it the same ATR as bytes; nothing else about
the card changes. Needs vicc's module dir and a `Crypto` alias for Cryptodome
on PYTHONPATH (client_env.Card.env() provides both).
"""
import argparse
import logging

from virtualsmartcard.VirtualSmartcard import VirtualICC


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--type", default="iso7816")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    icc = VirtualICC(None, args.type, "127.0.0.1", args.port, logginglevel=logging.CRITICAL)
    if isinstance(icc.os.atr, str):
        icc.os.atr = icc.os.atr.encode("latin-1")
    try:
        icc.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
