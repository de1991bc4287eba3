#!/usr/bin/python3
"""What systemd does with a socket unit (Accept=no) and its service, where
systemd is not PID 1 (this machine, containers):

    socket_activator.py --log FILE --listen PATH [--listen PATH]... -- COMMAND...

It binds and listens on each PATH (mode 0666) and keeps them. Whenever one
has a connection waiting and no service runs, it starts COMMAND with the
sockets as descriptors 3, 4, ... and LISTEN_FDS, LISTEN_PID (the service's
own pid) and LISTEN_FDNAMES set, as sd_listen_fds(3) describes; COMMAND's
output goes to FILE. When the service exits, the sockets stay here, and the
next connection starts it again. (systemd-socket-activate execs the service
in its own place, so it cannot show that.) JSON lines on stdout:
    {"listening": [PATH, ...]}
    {"started": PID}
    {"exited": PID, "status": N}       N negative for a signal
On SIGTERM, or when its stdin closes, it stops the service (SIGTERM, then
SIGKILL after 20 s) and exits; the socket files stay, as systemd's do.
"""
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1


class Stop(Exception):
    pass


def report(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def parse(argv):
    log, paths = None, []
    while argv and argv[0] != "--":
        opt, value, argv = argv[0], argv[1], argv[2:]
        if opt == "--log":
            log = value
        elif opt == "--listen":
            paths.append(value)
        else:
            raise SystemExit("socket_activator: unknown option %s" % opt)
    if not argv or not argv[1:] or not log or not paths:
        raise SystemExit(__doc__)
    return log, paths, argv[1:]


def listen(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o666)
    s.listen(128)
    return s


def start(command, socks, paths, log):
    pid = os.fork()
    if pid:
        return pid
    try:
        die_with_parent()
        # above every target number first, so that no dup2 overwrites a source
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 100) for s in socks]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i, inheritable=True)
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_PID=str(os.getpid()),
                   LISTEN_FDNAMES=":".join(os.path.basename(p) for p in paths))
        os.execve(command[0], command, env)
    finally:
        os._exit(127)


def status_of(st):
    return os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st)


def main():
    log, paths, command = parse(sys.argv[1:])
    die_with_parent()

    def on_term(signo, frame):
        raise Stop()
    signal.signal(signal.SIGTERM, on_term)
    socks = [listen(p) for p in paths]
    report(listening=paths)
    child = None
    try:
        while True:
            ready, _, _ = select.select(socks + [sys.stdin], [], [])
            if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
                return
            child = start(command, socks, paths, log)
            report(started=child)
            _, st = os.waitpid(child, 0)
            report(exited=child, status=status_of(st))
            child = None
    except Stop:
        pass
    finally:
        if child:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.kill(child, signal.SIGTERM)
            signal.signal(signal.SIGALRM, lambda *a: os.kill(child, signal.SIGKILL))
            signal.alarm(20)
            _, st = os.waitpid(child, 0)
            report(exited=child, status=status_of(st))


if __name__ == "__main__":
    main()
