"""Whether a thread is really waiting, read from /proc instead of guessed by
sleeping. A thread inside SCardGetStatusChange's wait for the daemon's event
sits in poll() with a finite timeout (Debian's libpcsclite and ours, also for
INFINITE); the library reads ordinary replies with an infinite poll() or a
recv(). So "in poll() with a finite timeout" means the wait is registered
with the daemon: a cancel, an event or a daemon crash from then on must end
it. Linux x86_64 only (the syscall number), like the tests."""
import time

SYS_POLL = 7


def in_event_wait(tid, pid="self"):
    """True if thread tid (a native id) of process pid is blocked in an event wait."""
    try:
        with open("/proc/%s/task/%d/syscall" % (pid, tid)) as f:
            fields = f.read().split()
    except OSError:
        return False
    return len(fields) > 3 and fields[0] == str(SYS_POLL) and 0 < int(fields[3], 16) < 1 << 31


def wait_in_event_wait(tid, timeout=30.0, pid="self"):
    """Waits until thread tid is in its event wait; False if it never got there."""
    deadline = time.monotonic() + timeout
    while not in_event_wait(tid, pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
