"""A clean Debian 12 (bookworm) minbase root for the package test
(test_deb.py).

debootstrap makes it once (about 3 minutes) and it is kept as a tarball in
SCARDD_DEB_CACHE (default ~/.cache/scardd/deb-root), named by suite,
architecture and day: bookworm-minbase-amd64-YYYYMMDD.tar.gz. A tarball
younger than SCARDD_DEB_ROOT_DAYS (7) is unpacked instead; older ones are
replaced. The .debs apt and debootstrap download are kept in the cache's
debs/ and copied into each root's apt cache, so a rerun downloads nothing
(copied, not shared: test runs side by side would wait on apt's lock).
SCARDD_DEB_MIRROR picks the archive (default http://deb.debian.org/debian).

Commands run in the root with chroot, each in a private mount namespace
(unshare -m) holding the root's /proc and /dev: the mounts go with the
namespace, nothing of it stays on the machine.
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SUITE = "bookworm"
ARCH = "amd64"
MIRROR = os.environ.get("SCARDD_DEB_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("SCARDD_DEB_CACHE", Path.home() / ".cache" / "scardd" / "deb-root"))
MAX_AGE_DAYS = float(os.environ.get("SCARDD_DEB_ROOT_DAYS", "7"))
DEBOOTSTRAP_TIMEOUT = 1200

# Inside the namespace: the root's mounts, then the command. bind_run puts the
# root's /run on /run, for a program of the machine's (systemd-socket-activate)
# that binds a path the chrooted daemon must see at the same place.
NS_SCRIPT = r'''
set -e
root=$1 bind_run=$2
shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
if [ "$bind_run" = 1 ]; then mount --bind "$root/run" /run; fi
exec "$@"
'''

# What a command in the root sees of the environment: nothing of the test's
# (PCSCLITE_CSOCK_NAME above all).
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
       "DEBIAN_FRONTEND": "noninteractive", "TERM": "dumb"}


def _tarballs():
    return sorted(CACHE.glob("%s-minbase-%s-*.tar.gz" % (SUITE, ARCH)))


def _bootstrap(tarball):
    """debootstrap into a directory next to the cache, then pack it."""
    work = CACHE / ("building-%d" % os.getpid())
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    try:
        r = subprocess.run(["debootstrap", "--variant=minbase", "--arch=" + ARCH,
                            "--cache-dir=" + str(CACHE / "debs"), SUITE, str(root), MIRROR],
                           capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT)
        if r.returncode != 0:
            pytest.fail("download-failed: debootstrap %s from %s (exit %d):\n%s"
                        % (SUITE, MIRROR, r.returncode, (r.stdout + r.stderr)[-4000:]), pytrace=False)
        # maintainer scripts in the root start no service (Debian's build
        # chroots do the same); the test starts scardd itself
        rc = root / "usr" / "sbin" / "policy-rc.d"
        rc.write_text("#!/bin/sh\nexit 101\n")
        rc.chmod(0o755)
        for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            deb.unlink()  # kept in debs/ already
        part = tarball.with_suffix(".part")
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-czf", str(part), "."], check=True)
        os.replace(part, tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cached_tarball():
    """The newest tarball if it is young enough, else a new one (older removed)."""
    if not shutil.which("debootstrap"):
        pytest.skip("missing-package: debootstrap (scripts/install-deps --tests installs it)")
    (CACHE / "debs").mkdir(parents=True, exist_ok=True)
    have = _tarballs()
    if have and time.time() - have[-1].stat().st_mtime < MAX_AGE_DAYS * 86400:
        return have[-1]
    tarball = CACHE / ("%s-minbase-%s-%s.tar.gz" % (SUITE, ARCH, time.strftime("%Y%m%d")))
    _bootstrap(tarball)
    for old in _tarballs():
        if old != tarball:
            old.unlink()
    return tarball


def _copy_debs(src, dst):
    """The .debs of src that dst lacks, linked where both are on one file
    system, else copied (then renamed: each appears whole)."""
    for deb in src.glob("*.deb"):
        target = dst / deb.name
        if target.exists():
            continue
        part = dst / (deb.name + ".part")
        try:
            os.link(deb, part)
        except OSError:
            shutil.copyfile(deb, part)
        os.replace(part, target)


class Root:
    """One unpacked root; run() and popen() execute commands in it."""

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def unpack(cls, dest):
        dest = Path(dest)
        dest.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "-xzf", str(cached_tarball())],
                       check=True)
        # the machine's resolver, for apt in the root
        shutil.copyfile("/etc/resolv.conf", dest / "etc" / "resolv.conf")
        root = cls(dest)
        _copy_debs(CACHE / "debs", root.archives)
        return root

    @property
    def archives(self):
        return self.file("/var/cache/apt/archives")

    def argv(self, cmd, host_prefix=(), bind_run=False, chroot_opts=()):
        """cmd in the root; host_prefix: a program of the machine's that
        execs `chroot ROOT cmd` (it runs outside the root, in the namespace);
        chroot_opts: --userspec and the like."""
        return (["unshare", "--mount", "--propagation", "private", "sh", "-c", NS_SCRIPT, "sh",
                 str(self.path), "1" if bind_run else "0"]
                + list(host_prefix) + ["chroot"] + list(chroot_opts) + [str(self.path)] + list(cmd))

    def run(self, cmd, check=True, timeout=600, **kw):
        r = subprocess.run(self.argv(cmd), env=ENV, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout, **kw)
        if check and r.returncode != 0:
            pytest.fail("in the root: %s: exit %d\n%s" % (" ".join(cmd), r.returncode,
                                                          (r.stdout + r.stderr)[-6000:]), pytrace=False)
        return r

    def sh(self, script, **kw):
        return self.run(["sh", "-c", script], **kw)

    def file(self, path):
        """A path inside the root, seen from the machine."""
        return self.path / str(path).lstrip("/")

    def apt_install(self, *args):
        """apt-get install; if the cached package lists are behind the
        archive (a file gone), once more after apt-get update."""
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + list(args)
        r = self.run(cmd, check=False)
        if r.returncode != 0:
            self.run(["apt-get", "update", "-q"])
            r = self.run(cmd)
        _copy_debs(self.archives, CACHE / "debs")
        return r
