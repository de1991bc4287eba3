#!/usr/bin/python3
"""Runs a command that detaches (daemon()) and reports on both halves.

    subreaper.py STDERR_FILE -- COMMAND...

As a child subreaper (PR_SET_CHILD_SUBREAPER) this process adopts the
detached grandchild, so its exit status can be known, which an ordinary
parent never learns. JSON lines on stdout:
    {"parent": PID, "exit": N}       the command itself has exited
    {"orphan": PID, "exit": N}       a detached descendant has exited
("exit" is negative for a signal). Exits once no child is left, or when
its stdin closes (then it SIGKILLs what is left, so nothing outlives a test).
"""
import ctypes
import json
import os
import signal
import sys
import threading

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1


def report(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def status_code(status):
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def kill_all_children():
    me = str(os.getpid())
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if ppid == me:
            try:
                os.kill(int(d), signal.SIGKILL)
            except OSError:
                pass


def watch_stdin():
    sys.stdin.read()
    kill_all_children()


def main():
    err_path, sep, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert sep == "--" and argv, __doc__
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1) != 0:
        report(error="prctl(PR_SET_CHILD_SUBREAPER): errno %d" % ctypes.get_errno())
        return 1
    threading.Thread(target=watch_stdin, daemon=True).start()
    with open(err_path, "wb") as err, open(os.devnull, "rb") as null:
        pid = os.fork()
        if pid == 0:
            os.dup2(null.fileno(), 0)
            os.dup2(err.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.execvp(argv[0], argv)
    while True:
        try:
            child, status = os.wait()
        except ChildProcessError:
            return 0
        if child == pid:
            report(parent=child, exit=status_code(status))
        else:
            report(orphan=child, exit=status_code(status))


if __name__ == "__main__":
    sys.exit(main())
