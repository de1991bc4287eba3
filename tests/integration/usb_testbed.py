"""A umockdev testbed with synthetic USB devices, for the hotplug tests.

umockdev's preload library (umockdev-wrapper) redirects a process's /sys,
/dev and its udev netlink socket into a testbed directory ($UMOCKDEV_DIR).
The testbed itself must be built under the preload too, so it lives in a
helper process: this file run as `umockdev-wrapper python3 usb_testbed.py`,
driven by one JSON command per line on stdin, one JSON answer per line on
stdout. Daemons started with LD_PRELOAD=libumockdev-preload and the same
UMOCKDEV_DIR (scardd and Debian's pcscd alike) see the same devices and
every uevent: a device added with add_device() sends "add" for the device
and then each interface, as the kernel does; remove() sends "remove" for
each interface and then the device.

umockdev delivers uevents to a socket per listening process named after its
netlink descriptor ($UMOCKDEV_DIR/event<fd>); two daemons that happen to get
the same descriptor number would take each other's socket,
so one daemon is started with spare descriptors (spare_fds()), and
listeners() lets a test check that every daemon has its own.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

PRELOAD = "libumockdev-preload.so.0"
# umockdev's uevents are datagrams on a unix socket, which queues only
# net.unix.max_dgram_qlen (10) of them where the kernel's netlink socket holds
# hundreds; the testbed aborts when a daemon's queue is full. Daemons run in
# a network namespace of their own (unshare --net, root) with room for a
# burst; unix sockets bound to paths still reach them.
ROOMY_UEVENTS = "echo 512 > /proc/sys/net/unix/max_dgram_qlen"
WRAPPER = "/usr/bin/umockdev-wrapper"
PYTHON = "/usr/bin/python3"
ROOT_HUB = {"vid": 0x1D6B, "pid": 0x0002}  # Linux Foundation 2.0 root hub


def available():
    """None if a testbed can run here, else what is missing."""
    if not os.path.exists(WRAPPER):
        return "umockdev-wrapper (Debian: umockdev)"
    r = subprocess.run([PYTHON, "-c", "import gi; gi.require_version('UMockdev', '1.0'); "
                        "from gi.repository import UMockdev"], capture_output=True, text=True)
    if r.returncode != 0:
        return "the UMockdev GI binding (Debian: gir1.2-umockdev-1.0, python3-gi): " + r.stderr[-300:]
    return None


def preload_env(root, env=None):
    """The environment a program needs to see the testbed at root."""
    env = dict(os.environ if env is None else env)
    env["UMOCKDEV_DIR"] = str(root)
    env["LD_PRELOAD"] = PRELOAD + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    # an ASan-built daemon wants its runtime first; the preload must come first here
    opts = env.get("ASAN_OPTIONS", "")
    if "verify_asan_link_order" not in opts:
        env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "verify_asan_link_order=0"
    return env


class UsbTestbed:
    """The helper process and the devices it holds."""

    def __init__(self):
        self.proc = subprocess.Popen([WRAPPER, PYTHON, os.path.abspath(__file__), "serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self._read()
        self.root = Path(hello["root"])
        self.devices = {}  # (bus, address) -> syspath

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the umockdev helper ended (exit %s)" % self.proc.poll())
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError("umockdev helper: " + answer["error"])
        return answer

    def _ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def add_device(self, bus, address, vid, pid, interfaces, serial=None, product=None,
                   manufacturer=None, mode=0o666):
        """Plugs a device: interfaces is a list of dicts with num, cls (class
        number) and optionally name (its interface string). mode is its
        node's; None leaves the node out (a device gone before it is opened)."""
        a = self._ask(op="add", bus=bus, address=address, vid=vid, pid=pid, serial=serial,
                      product=product, manufacturer=manufacturer, mode=mode,
                      interfaces=interfaces)
        self.devices[(bus, address)] = a["syspath"]
        return a["syspath"]

    def remove_device(self, bus, address):
        self._ask(op="remove", syspath=self.devices.pop((bus, address)))

    def uevent(self, bus, address, action, interface=None):
        """Sends action for the device, or for one of its interfaces (by number)."""
        self._ask(op="uevent", syspath=self.devices[(bus, address)], action=action,
                  interface=interface)

    def node(self, bus, address):
        return self.root / ("dev/bus/usb/%03d/%03d" % (bus, address))

    def listeners(self):
        """The uevent sockets of the processes listening now."""
        return sorted(p.name for p in self.root.glob("event*"))

    def open_up(self):
        """Lets an unprivileged daemon into the testbed: read it, add its
        uevent socket, reach the preload's ioctl sockets. Device nodes keep
        their modes."""
        for dirpath, _, filenames in os.walk(self.root):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.chmod(path, 0o777)
        os.chmod(self.root, 0o1777)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def spare_fds(n):
    """n descriptors on /dev/null for Popen(pass_fds=...): a daemon started
    with them opens its own at higher numbers (see the module doc). Close
    them once the daemon runs."""
    return [os.open(os.devnull, os.O_RDONLY) for _ in range(n)]


# --- the helper process -----------------------------------------------------------

def serve():
    import gi
    gi.require_version("UMockdev", "1.0")
    from gi.repository import UMockdev

    tb = UMockdev.Testbed.new()
    root = tb.get_root_dir()
    interfaces_of = {}  # device syspath -> [interface syspaths]

    def node_file(bus, address, mode):
        path = Path(root) / ("dev/bus/usb/%03d/%03d" % (bus, address))
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is not None:  # None: a device gone before anyone opens it
            path.write_bytes(b"")
            os.chmod(path, mode)
        return "/dev/bus/usb/%03d/%03d" % (bus, address)

    def add_usb_device(parent, name, bus, address, vid, pid, serial, product, manufacturer, mode):
        devname = node_file(bus, address, mode)
        attrs = ["idVendor", "%04x" % vid, "idProduct", "%04x" % pid, "busnum", str(bus),
                 "devnum", str(address), "dev", "189:%d" % ((bus - 1) * 128 + address - 1),
                 "bDeviceClass", "00"]
        for key, value in (("serial", serial), ("product", product),
                           ("manufacturer", manufacturer)):
            if value is not None:
                attrs += [key, value]
        props = ["DEVTYPE", "usb_device", "DEVNAME", devname, "BUSNUM", "%03d" % bus,
                 "DEVNUM", "%03d" % address, "PRODUCT", "%x/%x/100" % (vid, pid)]
        return tb.add_device("usb", name, parent, attrs, props)

    def add_interfaces(dev, name, interfaces):
        paths = []
        for itf in interfaces:
            attrs = ["bInterfaceNumber", "%02x" % itf["num"], "bInterfaceClass", "%02x" % itf["cls"],
                     "bAlternateSetting", " 0"]
            if itf.get("name") is not None:
                attrs += ["interface", itf["name"]]
            props = ["DEVTYPE", "usb_interface", "INTERFACE", "%d/0/0" % itf["cls"]]
            path = tb.add_device("usb", "%s:1.%d" % (name, itf["num"]), dev, attrs, props)
            if not path:
                raise RuntimeError("cannot add interface %d of %s" % (itf["num"], name))
            paths.append(path)
        interfaces_of[dev] = paths

    # root hubs, as a real bus has them: interfaces no bundle lists
    hubs = {}

    def hub(bus):
        if bus not in hubs:
            hubs[bus] = add_usb_device(None, "usb%d" % bus, bus, 1, ROOT_HUB["vid"],
                                       ROOT_HUB["pid"], "0000:00:%02x.0" % bus, "Root hub",
                                       "Linux", 0o644)
            add_interfaces(hubs[bus], "%d-0" % bus, [{"num": 0, "cls": 9}])
        return hubs[bus]

    def reply(**kw):
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    reply(root=root)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            op = cmd["op"]
            if op == "add":
                parent = hub(cmd["bus"])
                name = "%d-%d" % (cmd["bus"], cmd["address"])
                dev = add_usb_device(parent, name, cmd["bus"], cmd["address"], cmd["vid"],
                                     cmd["pid"], cmd["serial"], cmd["product"],
                                     cmd["manufacturer"], cmd["mode"])
                if not dev:
                    raise RuntimeError("cannot add device " + name)
                add_interfaces(dev, name, cmd["interfaces"])
                reply(syspath=dev)
            elif op == "remove":
                dev = cmd["syspath"]
                for itf in interfaces_of.pop(dev, []):
                    tb.uevent(itf, "remove")
                    tb.remove_device(itf)
                tb.uevent(dev, "remove")
                tb.remove_device(dev)
                reply(ok=True)
            elif op == "uevent":
                path = cmd["syspath"]
                if cmd.get("interface") is not None:
                    path = [p for p in interfaces_of[path]
                            if p.endswith(".%d" % cmd["interface"])][0]
                tb.uevent(path, cmd["action"])
                reply(ok=True)
            else:
                reply(error="unknown op %r" % op)
        except Exception as e:  # the test reads the reason
            reply(error="%s: %s" % (type(e).__name__, e))


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
