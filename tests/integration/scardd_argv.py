"""scardd's command line as the tests start it, in one place.

Started as root without --user, scardd becomes the account pcscd, and refuses
to start when there is none (drivers never run as root unless asked for). The
tests run as root with files only root reads, and most are not about
accounts: they ask for root explicitly here, so that they behave the same
with or without a pcscd account on the machine. The tests about accounts
(test_unprivileged.py, the unit command lines in test_systemd.py) build their
own command lines or pass keep_root=False.

No pytest import: bench/ and tests/fuzz/ use it too.
"""
import os


def asks_for_user(args):
    """True when args already choose the account (--user USER or --user=USER)."""
    return any(a == "--user" or a.startswith("--user=") for a in map(str, args))


def scardd_argv(binary, *args, keep_root=True):
    """[binary, *args] as strings, with `--user root` added when the tests run
    as root, keep_root is true and args choose no account of their own."""
    argv = [str(binary)] + [str(a) for a in args]
    if keep_root and os.geteuid() == 0 and not asks_for_user(argv[1:]):
        argv += ["--user", "root"]
    return argv
