"""A private D-Bus system bus and a real polkitd for the polkit tests.

PolkitEnv starts dbus-daemon on a unix socket in a temporary directory (its
own permissive configuration, no service activation) and Debian's polkitd
connected to it, in a private mount namespace where the test's own action
and rules directories are bind-mounted over the compiled-in
/usr/share/polkit-1/actions, /etc/polkit-1/rules.d and
/usr/share/polkit-1/rules.d. The host's polkit files and its system bus are
never touched. Processes that should use this bus get
DBUS_SYSTEM_BUS_ADDRESS from env().

What polkitd (Debian 12, polkit 122) needs, found out here:
* root to start: it switches to the account `polkitd` at once and exits 1
  ("Error switching to user polkitd") when there is none; after that it
  reads the action and rules directories as that account (mode 0755/0644
  here; Debian's own rules directories are 0700 polkitd), and connects to
  the bus as that account (the socket's directory is 0755).
* --no-debug sends its stdout and stderr to /dev/null: it runs without it,
  its log in polkitd.log (polkit.log() from a rule goes there too).
* a subject of uid 0 is authorized for everything before any rule runs.
* a caller that is not root (and not the action's owner, annotation
  org.freedesktop.policykit.owner) may check only subjects of its own uid
  and may pass no details: anything else is refused with an error
  ("Only trusted callers (e.g. uid 0 or an action owner) ..."), not a
  "no".
* it notices changed action files by itself; the tests still restart it to
  change rules, so that no test waits for a reload.

Every rule file set here follows LOG_RULES (00-scardd-test-log.rules),
which has polkitd log each question its rules see; asks() reads them back.

If pytest dies, dbus-daemon gets SIGKILL (PR_SET_PDEATHSIG) and polkitd,
whose death signal its account switch cleared, exits when its bus goes.
"""
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import pcscd_ns
from virtual_env import _die_with_parent, stop_pid

POLKITD = "/usr/lib/polkit-1/polkitd"
DBUS_DAEMON = "/usr/bin/dbus-daemon"
DBUS_SEND = "/usr/bin/dbus-send"
PKCHECK = "/usr/bin/pkcheck"
# each program and the Debian package it comes with
PROGRAMS = {DBUS_DAEMON: "dbus-daemon", DBUS_SEND: "dbus-bin", POLKITD: "polkitd",
            PKCHECK: "polkitd", "/usr/bin/unshare": "util-linux"}
POLKIT_NAME = "org.freedesktop.PolicyKit1"
ACTION_PCSC = "org.debian.pcsc-lite.access_pcsc"
ACTION_CARD = "org.debian.pcsc-lite.access_card"
START_TIMEOUT = 30.0

# our directory -> where polkitd looks
MOUNTS = [("actions", "/usr/share/polkit-1/actions"),
          ("etc-rules.d", "/etc/polkit-1/rules.d"),
          ("share-rules.d", "/usr/share/polkit-1/rules.d")]

# pkcheck's exit codes
AUTHORIZED, NOT_AUTHORIZED = 0, 1

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""


def _action(action_id, text):
    yes = "".join("<%s>yes</%s>" % (k, k) for k in ("allow_any", "allow_inactive", "allow_active"))
    return ("  <action id=\"%s\">\n    <description>%s</description>\n"
            "    <message>scardd test: %s</message>\n    <defaults>%s</defaults>\n  </action>\n"
            % (action_id, text, text, yes))


# The two actions pcsc-lite's pcscd asks about, everyone allowed by default:
# the rules decide.
ACTIONS = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<!DOCTYPE policyconfig PUBLIC "-//freedesktop//DTD PolicyKit Policy Configuration '
           '1.0//EN"\n "http://www.freedesktop.org/standards/PolicyKit/1/policyconfig.dtd">\n'
           "<policyconfig>\n"
           + _action(ACTION_PCSC, "connect to the PC/SC daemon")
           + _action(ACTION_CARD, "use a smart card reader")
           + "</policyconfig>\n")

# Logs every question about a pcsc-lite action (rules never see uid 0's).
LOG_RULES = r"""
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.debian.pcsc-lite.") == 0)
        polkit.log("scardd-test-ask action=" + action.id + " pid=" + subject.pid +
                   " user=" + subject.user + " reader=" + JSON.stringify(action.lookup("reader")));
    return null;
});
"""
ASK = re.compile(r'scardd-test-ask action=(\S+) pid=(\d+) user=(\S+) reader=(.*)$')


def js_string(s):
    """s as a JavaScript string literal."""
    return '"%s"' % "".join(c if c.isalnum() or c in " ._-" else "\\u%04x" % ord(c) for c in s)


def rule(body):
    """A rules file's text: one rule whose function body is `body` (it sees
    `action` and `subject`; returning nothing leaves the answer to the
    action's defaults)."""
    return "polkit.addRule(function(action, subject) {\n%s\n    return null;\n});\n" % body


def deny(action_id, user=None, reader=None):
    """A rule that answers NO to action_id, for subjects of `user` (a name)
    only if given and for reader `reader` only if given."""
    cond = ["action.id == %s" % js_string(action_id)]
    if user is not None:
        cond.append("subject.user == %s" % js_string(user))
    if reader is not None:
        cond.append('action.lookup("reader") == %s' % js_string(reader))
    return rule("    if (%s)\n        return polkit.Result.NO;" % " && ".join(cond))


def unavailable():
    """Why no private polkitd can run here (a skip reason), or None."""
    for path, package in PROGRAMS.items():
        if not os.access(path, os.X_OK):
            return "missing-package: %s (Debian package %s)" % (path, package)
    for _, target in MOUNTS:
        if not os.path.isdir(target):
            return "missing-package: %s, where polkitd looks, is missing (reinstall polkitd)" % target
    try:
        pwd.getpwnam("polkitd")
    except KeyError:
        return ("missing-package: no account polkitd, which polkitd switches to (the polkitd "
                "package creates it)")
    if not pcscd_ns.private_mount_ok():
        return ("no-namespace: polkitd reads compiled-in directories; our own need a private "
                "mount namespace (root and unshare)")
    return None


def require():
    reason = unavailable()
    if reason:
        pytest.skip(reason)


class PolkitEnv:
    """A private system bus and (unless start(polkitd=False)) a polkitd on it
    with ACTIONS and the rules given ({file name: text}, or one text)."""

    def __init__(self, rules=None, actions=ACTIONS):
        self.dir = Path(tempfile.mkdtemp(prefix="scardd-polkit-"))
        self.dir.chmod(0o755)  # polkitd's account reaches the bus socket and the rules
        for name, _ in MOUNTS:
            (self.dir / name).mkdir(mode=0o755)
        self.socket = self.dir / "system_bus_socket"
        self.address = "unix:path=%s" % self.socket
        self.bus = None
        self.polkitd = None
        self.last_pkcheck = None  # the last pkcheck's CompletedProcess, for messages
        self._logs = []
        self._write(self.dir / "actions" / "org.debian.pcsc-lite.scardd-test.policy", actions)
        self._write(self.dir / "etc-rules.d" / "00-scardd-test-log.rules", LOG_RULES)
        self.set_rules(rules)

    @staticmethod
    def _write(path, text):
        path.write_text(text)
        path.chmod(0o644)

    def set_rules(self, rules):
        """Replaces the test rules (the log rule stays); a running polkitd
        reads them at its next start (restart_polkitd)."""
        rdir = self.dir / "etc-rules.d"
        for f in rdir.glob("50-*.rules"):
            f.unlink()
        if isinstance(rules, str):
            rules = {"50-scardd-test.rules": rules}
        for name, text in (rules or {}).items():
            assert name.startswith("50-") and name.endswith(".rules"), name
            self._write(rdir / name, text)

    def env(self, base=None):
        env = dict(os.environ if base is None else base)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        return env

    # -- life cycle --
    def start(self, polkitd=True):
        require()
        try:
            self.start_bus()
            if polkitd:
                self.start_polkitd()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _spawn(self, name, argv, env=None):
        log = open(self.dir / ("%s.log" % name), "ab")
        self._logs.append(log)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd="/", env=env,
                                preexec_fn=_die_with_parent)

    def start_bus(self):
        conf = self.dir / "bus.conf"
        self._write(conf, BUS_CONF % self.socket)
        self.bus = self._spawn("dbus-daemon", [DBUS_DAEMON, "--config-file=%s" % conf,
                                               "--nofork", "--nopidfile", "--nosyslog"])
        self._wait(lambda: self._bus_call("GetId").returncode == 0, self.bus, "dbus-daemon",
                   "the bus answering")

    def start_polkitd(self):
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                " && ".join('mount --bind "$%d" %s' % (i + 1, target)
                            for i, (_, target) in enumerate(MOUNTS))
                + ' && exec "$%d"' % (len(MOUNTS) + 1),
                "sh"] + [str(self.dir / name) for name, _ in MOUNTS] + [POLKITD]
        self.polkitd = self._spawn("polkitd", argv, env=self.env())
        self._wait(self.polkit_on_bus, self.polkitd, "polkitd", "%s on the bus" % POLKIT_NAME)

    def stop_polkitd(self):
        """Stops polkitd (the bus stays) and waits until its name is gone."""
        stop_pid(self.polkitd)
        self.polkitd = None
        if self.bus is not None:
            self._wait(lambda: not self.polkit_on_bus(), self.bus, "dbus-daemon",
                       "%s gone from the bus" % POLKIT_NAME)

    def restart_polkitd(self):
        self.stop_polkitd()
        self.start_polkitd()

    def stop(self):
        try:
            stop_pid(self.polkitd)
            stop_pid(self.bus)
        finally:
            self.polkitd = self.bus = None
            for f in self._logs:
                f.close()
            self._logs = []

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if self.bus is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def _wait(self, ready, proc, name, what, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError("%s exited (%s) before %s:\n%s"
                                   % (name, proc.returncode, what, self.log(name)[-3000:]))
            if time.monotonic() > deadline:
                raise RuntimeError("no %s after %.0f s:\n%s" % (what, timeout,
                                                                self.log(name)[-3000:]))
            time.sleep(0.1)

    # -- asking --
    def _bus_call(self, method, *args):
        return subprocess.run([DBUS_SEND, "--bus=%s" % self.address, "--print-reply",
                               "--reply-timeout=5000", "--dest=org.freedesktop.DBus",
                               "/org/freedesktop/DBus", "org.freedesktop.DBus." + method]
                              + list(args), capture_output=True, text=True, timeout=30)

    def polkit_on_bus(self):
        r = self._bus_call("NameHasOwner", "string:" + POLKIT_NAME)
        return r.returncode == 0 and "boolean true" in r.stdout

    def pkcheck(self, action_id, pid, details=None, user=None):
        """pkcheck's exit code for process pid (AUTHORIZED, NOT_AUTHORIZED,
        127 for an error), run as root or as uid `user`."""
        argv = [PKCHECK, "--action-id", action_id, "--process", str(pid)]
        for k, v in (details or {}).items():
            argv += ["--detail", k, v]
        if user is not None:
            argv = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups",
                    "--"] + argv
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=self.env(),
                           cwd="/", preexec_fn=_die_with_parent)
        self.last_pkcheck = r
        return r.returncode

    # -- what polkitd said --
    def log(self, name="polkitd"):
        try:
            return (self.dir / ("%s.log" % name)).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def asks(self):
        """Every question polkitd's rules saw, in order: dicts with action,
        pid (int), user and reader (None when the question had no reader)."""
        out = []
        for line in self.log().splitlines():
            m = ASK.search(line)
            if m:
                reader = m.group(4).strip()
                out.append({"action": m.group(1), "pid": int(m.group(2)), "user": m.group(3),
                            "reader": None if reader in ("undefined", "null")
                            else _json_string(reader)})
        return out


def _json_string(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


@pytest.fixture
def polkit_env():
    """Factory: polkit_env(rules=..., polkitd=True) -> a started PolkitEnv,
    stopped and removed at teardown."""
    made = []

    def make(rules=None, polkitd=True, actions=ACTIONS):
        env = PolkitEnv(rules, actions)
        made.append(env)
        return env.start(polkitd=polkitd)
    yield make
    for env in made:
        env.cleanup()
