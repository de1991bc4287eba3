"""Builds one pcsc-lite release (its upstream tarball, as Debian ships it) into
a peer directory: lib/libpcsclite.so.1 (2.x: plus libpcsclite_real.so.1,
which the 2.x libpcsclite.so.1 dlopens: use LD_LIBRARY_PATH, not an rpath)
and sbin/pcscd.

Minimal builds: no libudev, libusb, polkit, systemd, USB or documentation;
serial (reader.conf.d) readers only. Every pcscd keeps pcsc-lite's default
ipcdir /run/pcscd (it always binds /run/pcscd/pcscd.comm), so the tests run
it in a private mount namespace, as they run Debian's pcscd.
"""
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path


class BuildError(Exception):
    pass


class MissingTool(BuildError):
    pass


def need_tools(tools):
    """tools: {command: Debian package}."""
    missing = ["%s (Debian package %s)" % (t, p) for t, p in tools.items() if not shutil.which(t)]
    if missing:
        raise MissingTool("missing build tools: " + ", ".join(missing))


def unpack(tarball, work):
    """The tarball's single top directory, unpacked as `work`."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    with tarfile.open(tarball) as t:
        for m in t.getmembers():
            parts = Path(m.name).parts
            if len(parts) < 2 or ".." in parts or m.name.startswith("/"):
                continue
            m.name = str(Path(*parts[1:]))
            if m.issym() or m.islnk():
                if Path(m.linkname).is_absolute() or ".." in Path(m.linkname).parts[:-1]:
                    continue
                if m.islnk():
                    m.linkname = str(Path(*Path(m.linkname).parts[1:]))
            t.extract(m, work)
    return work


def protocol_minor(src):
    """PROTOCOL_VERSION_MINOR as the release's src/winscard_msg.h defines it."""
    h = Path(src) / "src" / "winscard_msg.h"
    m = re.search(r"^#define\s+PROTOCOL_VERSION_MINOR\s+(\d+)\b", h.read_text(errors="replace"), re.M)
    if not m:
        raise BuildError("%s defines no PROTOCOL_VERSION_MINOR" % h)
    return int(m.group(1))


def set_max_readers(src, count):
    """Fedora's change, made at build time: PCSCLITE_MAX_READERS_CONTEXTS."""
    h = Path(src) / "src" / "PCSC" / "pcsclite.h.in"
    text, n = re.subn(r"^(#define\s+PCSCLITE_MAX_READERS_CONTEXTS\s+)\d+", r"\g<1>%d" % count,
                      h.read_text(), flags=re.M)
    if n != 1:
        raise BuildError("could not set PCSCLITE_MAX_READERS_CONTEXTS to %d in %s" % (count, h))
    h.write_text(text)


def run_logged(cmd, cwd, log, env):
    with open(log, "a") as f:
        f.write("$ %s\n" % " ".join(cmd))
        f.flush()
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env,
                           stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        tail = Path(log).read_text(errors="replace").splitlines()[-40:]
        raise BuildError("%s failed (exit %d) in %s; log %s:\n%s"
                         % (cmd[0], r.returncode, cwd, log, "\n".join(tail)))


def copy_lib(built, dest):
    """The library file itself under its soname: one file, no symlink."""
    shutil.copy2(Path(built).resolve(), dest)


def build_autotools(src, out, jobs, log, env):
    need_tools({"make": "make", "flex": "flex"})
    run_logged(["./configure", "--quiet", "--prefix=/usr", "--sysconfdir=/etc",
                "--enable-ipcdir=/run/pcscd", "--enable-usbdropdir=/usr/lib/pcsc/drivers",
                "--disable-libudev", "--disable-libusb", "--disable-libsystemd", "--disable-polkit",
                "--disable-usb", "--disable-documentation", "--disable-static"], src, log, env)
    run_logged(["make", "-s", "-j%d" % jobs, "-C", "src", "pcscd", "libpcsclite.la"], src, log, env)
    # pcscd links no in-tree library: src/pcscd is the program itself
    shutil.copy2(src / "src" / "pcscd", out / "sbin" / "pcscd")
    copy_lib(src / "src" / ".libs" / "libpcsclite.so.1", out / "lib" / "libpcsclite.so.1")


def build_meson(src, out, jobs, log, env):
    need_tools({"meson": "meson", "ninja": "ninja-build", "flex": "flex", "pod2man": "perl"})
    run_logged(["meson", "setup", "--buildtype=debugoptimized", "--prefix=/usr", "--sysconfdir=/etc",
                "-Dlibsystemd=false", "-Dlibudev=false", "-Dlibusb=false", "-Dpolkit=false",
                "-Dusb=false", "-Dserial=true", "-Dipcdir=/run/pcscd",
                "-Dserialconfdir=/etc/reader.conf.d", "-Dusbdropdir=/usr/lib/pcsc/drivers", "_build"],
               src, log, env)
    targets = ["pcscd", "pcsclite:shared_library"]
    real = (src / "meson.build").read_text().find("pcsclite_real") >= 0
    if real:
        targets.append("pcsclite_real:shared_library")
    run_logged(["meson", "compile", "-C", "_build", "-j", str(jobs)] + targets, src, log, env)
    shutil.copy2(src / "_build" / "pcscd", out / "sbin" / "pcscd")
    copy_lib(src / "_build" / "libpcsclite.so.1", out / "lib" / "libpcsclite.so.1")
    if real:
        copy_lib(src / "_build" / "libpcsclite_real.so.1", out / "lib" / "libpcsclite_real.so.1")


def check_built(out, readers):
    """The daemon reports what it was built with."""
    pcscd = out / "sbin" / "pcscd"
    r = subprocess.run([str(pcscd), "--version"], capture_output=True, text=True)
    v = r.stdout + r.stderr
    if r.returncode != 0:
        raise BuildError("%s --version failed: %s" % (pcscd, v))
    m = re.search(r"ipcdir=(\S+)", v)
    if m and m.group(1) != "/run/pcscd":
        raise BuildError("%s: ipcdir is %s, not /run/pcscd" % (pcscd, m.group(1)))
    m = re.search(r"PCSCLITE_MAX_READERS_CONTEXTS: (\d+)", v)
    if m and int(m.group(1)) != readers:
        raise BuildError("%s was built with %s readers, not %d" % (pcscd, m.group(1), readers))


def build(src, out, readers, jobs, log):
    """Builds the unpacked release `src` into `out` (lib/, sbin/)."""
    src, out = Path(src), Path(out)
    need_tools({"cc": "gcc"})
    (out / "lib").mkdir(parents=True)
    (out / "sbin").mkdir()
    if readers != 16:
        set_max_readers(src, readers)
    env = dict(os.environ, LC_ALL="C")
    if (src / "meson.build").exists():
        build_meson(src, out, jobs, log, env)
    else:
        build_autotools(src, out, jobs, log, env)
    check_built(out, readers)
