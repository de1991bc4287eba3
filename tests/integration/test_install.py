"""`meson install` into a DESTDIR, listed and checked (issue 11, item 1).

The source tree is configured once into a temporary build directory with
--prefix=/usr, built and installed into one DESTDIR; then reconfigured with
--prefix=/opt/scardd (only the few files that include config.h rebuild) and
installed into another. Each installation is then checked as a packager and
a developer would use it: the whole list of installed files against the one
expected here (every file inside DESTDIR and under the prefix), libpcsclite.pc
read by pkg-config and compared with Debian's, an application and a reader
driver built from the installed headers with the .pc's flags (the driver
installed into the .pc's usbdropdir and serialconfdir, as CCID's build does)
and run with the installed scardd and library, and the man pages rendered by
groff and man without a warning.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pcsc_raw as raw  # noqa: E402
from conftest import IS_PCSCD, SESSION_TMP, spawn, stop_process  # noqa: E402
from scardd_argv import scardd_argv  # noqa: E402
from virtual_env import BUILTIN_ATR  # noqa: E402

REPO = HERE.parents[1]
PREFIXES = ["/usr", "/opt/scardd"]
HEADERS = {"debuglog.h", "ifdhandler.h", "pcsclite.h", "reader.h", "winscard.h", "wintypes.h"}
MAN_PAGES = ["man8/scardd.8", "man1/scard.1", "man5/reader.conf.5"]
BUILD_TIMEOUT = 900
# meson's polkit=auto finds it as pkg-config does
HAVE_POLKIT = subprocess.run(["pkg-config", "--exists", "polkit-gobject-1"]).returncode == 0

pytestmark = pytest.mark.skipif(IS_PCSCD, reason="scardd-only: installs scardd's own tree")


def run(argv, timeout=120, check=True, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, "%s exited %d:\n%s%s" % (argv, r.returncode, r.stdout[-3000:],
                                                           r.stderr[-3000:])
    return r


def pc_file_fields(text):
    """A .pc file's variables and fields (Name: ...), unexpanded."""
    variables, fields = {}, {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*([=:])\s*(.*)$", line)
        if m and not line.startswith("#"):
            (variables if m.group(2) == "=" else fields)[m.group(1)] = m.group(3).strip()
    return variables, fields


class Install:
    """One `meson install` into DESTDIR dest with the given prefix."""

    def __init__(self, prefix, build, dest):
        self.prefix, self.dest = prefix, dest
        logged = [Path(line) for line in (build / "meson-logs" / "install-log.txt").read_text().splitlines()
                  if line and not line.startswith("#")]
        # files and links; the directories meson made are listed too, DESTDIR's parents included
        self.log = [str(p) for p in logged if p.is_symlink() or not p.is_dir()]
        self.log_dirs = [p for p in logged if p.is_dir() and not p.is_symlink()]
        planned = json.loads(run(["meson", "introspect", build, "--installed"]).stdout)
        self.planned = sorted(planned.values())
        options = json.loads(run(["meson", "introspect", build, "--buildoptions"]).stdout)
        opt = {o["name"]: o["value"] for o in options}
        self.libdir = os.path.join(prefix, opt["libdir"])
        self.sysconfdir = os.path.join(prefix, opt["sysconfdir"])
        self.files = sorted("/" + str(p.relative_to(dest)) for p in dest.rglob("*")
                            if p.is_file() or p.is_symlink())

    def path(self, installed):
        """Where an installed absolute path is inside DESTDIR."""
        return self.dest / installed.lstrip("/")

    # what the prefix rule (meson_options.txt) makes of this prefix
    def drivers_dir(self):
        return os.path.join(self.prefix, "lib/pcsc/drivers")

    def config_dir(self):
        return os.path.join(self.sysconfdir, "reader.conf.d")

    def scardd(self):
        return self.path(os.path.join(self.prefix, "sbin/scardd"))

    def expected(self):
        """Every file this installation must hold, and nothing else."""
        p, lib = self.prefix, self.libdir
        bundle = self.drivers_dir() + "/ifd-virtual.bundle/Contents/"
        return ({p + "/sbin/scardd", p + "/bin/scard",
                 lib + "/libpcsclite.so", lib + "/libpcsclite.so.1", lib + "/libpcsclite.so.1.0.0",
                 lib + "/pkgconfig/libpcsclite.pc",
                 bundle + "Info.plist", bundle + "Linux/libifd-virtual.so",
                 p + "/lib/sysusers.d/scardd.conf", p + "/lib/tmpfiles.d/scardd.conf",
                 p + "/lib/udev/rules.d/92-scardd.rules",
                 p + "/share/doc/scardd/LICENSE",
                 p + "/share/doc/scardd/policy.conf.example"}
                | {p + "/include/PCSC/" + h for h in HEADERS}
                | {p + "/share/man/" + m for m in MAN_PAGES}
                | {p + "/share/scardd/ifd-virtual/" + f
                   for f in ("ifd-virtual", "virtual.conf", "demo.card", "CARD-FORMAT.md")}
                | ({p + "/share/polkit-1/actions/org.debian.pcsc-lite.policy"} if HAVE_POLKIT
                   else set()))

    def units(self):
        """The systemd units systemd/meson.build installed, if the tree has one."""
        return {f for f in self.files if f.startswith(self.prefix + "/lib/systemd/system/scardd.")}

    def pkg_config(self, *args, relocate=False):
        """pkg-config on the installed .pc alone; relocate: with ${prefix} moved into DESTDIR."""
        # system directories (-L/usr/lib/...) are not dropped from the answer
        env = dict(os.environ, PKG_CONFIG_LIBDIR=str(self.path(self.libdir) / "pkgconfig"),
                   PKG_CONFIG_ALLOW_SYSTEM_LIBS="1", PKG_CONFIG_ALLOW_SYSTEM_CFLAGS="1")
        env.pop("PKG_CONFIG_PATH", None)
        extra = ["--define-variable=prefix=%s" % self.path(self.prefix)] if relocate else []
        return run(["pkg-config"] + extra + list(args) + ["libpcsclite"], env=env).stdout.strip()


@pytest.fixture(scope="module")
def installs():
    missing = [t for t in ("meson", "ninja", "gcc", "pkg-config", "groff", "man", "readelf")
               if not shutil.which(t)]
    if missing:
        pytest.skip("missing-package: %s (scripts/install-deps --tests)" % ", ".join(missing))
    root = Path(tempfile.mkdtemp(prefix="install-", dir=SESSION_TMP))
    build = root / "build"
    # unit tests off and no optimisation: only what is installed matters here
    run(["meson", "setup", "--prefix=/usr", "-Dtests=disabled", "-Dbuildtype=plain", build, REPO],
        timeout=BUILD_TIMEOUT)
    result = {}
    for prefix in PREFIXES:
        if prefix != "/usr":
            run(["meson", "configure", build, "-Dprefix=" + prefix])
        run(["ninja", "-C", build], timeout=BUILD_TIMEOUT)
        dest = root / ("dest" + prefix.replace("/", "_"))
        run(["meson", "install", "-C", build, "--no-rebuild"], env=dict(os.environ, DESTDIR=str(dest)),
            timeout=BUILD_TIMEOUT)
        result[prefix] = Install(prefix, build, dest)
    yield result
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=PREFIXES)
def inst(request, installs):
    return installs[request.param]


def test_every_file_inside_destdir_and_prefix(inst):
    """What meson installed is all in DESTDIR and all there, and all of it
    under the prefix (with --prefix=/usr too: nothing in /etc, /lib or /run)."""
    assert inst.log, "meson's install log lists nothing"
    outside = [p for p in inst.log if not p.startswith(str(inst.dest) + "/")]
    outside += [str(d) for d in inst.log_dirs if d != inst.dest and inst.dest not in d.parents
                and d not in inst.dest.parents]
    assert outside == [], "installed outside DESTDIR %s" % inst.dest
    logged = sorted("/" + os.path.relpath(p, inst.dest) for p in inst.log)
    assert logged == inst.files, "install log and DESTDIR's files differ"
    outside = [p for p in inst.files + inst.planned if not p.startswith(inst.prefix + "/")]
    assert outside == [], "installed outside the prefix %s" % inst.prefix


def test_polkit_actions_owned_by_the_daemon_user(inst):
    """Built with polkit: pcsc-lite's two action ids, allowed by default, owned
    by pcscd (the account scardd runs as), so that polkitd lets it ask about
    other users' processes."""
    if not HAVE_POLKIT:
        pytest.skip("not-built: no polkit-gobject-1 in this build's environment")
    text = inst.path(inst.prefix + "/share/polkit-1/actions/org.debian.pcsc-lite.policy").read_text()
    for action in ("org.debian.pcsc-lite.access_pcsc", "org.debian.pcsc-lite.access_card"):
        assert '<action id="%s">' % action in text
    assert text.count("unix-user:pcscd</annotate>") == 2, text
    assert text.count("<allow_any>yes</allow_any>") == 2, text
    if shutil.which("xmllint"):
        run(["xmllint", "--noout", str(inst.path(inst.prefix + "/share/polkit-1/actions/"
                                                   "org.debian.pcsc-lite.policy"))])


def test_installed_files_listed(inst):
    """The installation is exactly the expected list (systemd units added when
    the tree has systemd/meson.build), with working links."""
    units = inst.units()
    if not (REPO / "systemd" / "meson.build").is_file():
        assert units == set()
    assert set(inst.files) - units == inst.expected(), (
        "missing: %s; unexpected: %s" % (sorted(inst.expected() - set(inst.files)),
                                          sorted(set(inst.files) - units - inst.expected())))
    headers = {os.path.basename(f) for f in inst.files if f.startswith(inst.prefix + "/include/")}
    assert headers == HEADERS

    # the development link and the soname link name the same library
    lib = inst.path(inst.libdir)
    for link in ("libpcsclite.so", "libpcsclite.so.1"):
        assert (lib / link).is_symlink(), link
        assert not os.path.isabs(os.readlink(lib / link)), link  # still right outside DESTDIR
    assert (lib / "libpcsclite.so").resolve() == (lib / "libpcsclite.so.1.0.0").resolve()
    assert (lib / "libpcsclite.so.1").resolve() == (lib / "libpcsclite.so.1.0.0").resolve()
    dyn = run(["readelf", "-dW", lib / "libpcsclite.so.1"]).stdout
    assert "Library soname: [libpcsclite.so.1]" in dyn

    # executables are executable, data is not
    for f in inst.files:
        mode = os.lstat(inst.path(f)).st_mode
        if os.path.islink(inst.path(f)):
            continue
        executable = f.endswith((".so", ".so.1.0.0")) or "/bin/" in f or "/sbin/" in f
        assert bool(mode & 0o111) == executable, "%s: mode %o" % (f, mode & 0o7777)

    license_text = inst.path(inst.prefix + "/share/doc/scardd/LICENSE").read_text()
    assert license_text == (REPO / "LICENSE").read_text()
    assert license_text.startswith("BSD 3-Clause License\n")
    assert "Neither the name of the copyright holder" in license_text  # the third clause

    # the tree's entries, as the tree has them
    for installed, source in (("/lib/sysusers.d/scardd.conf", "systemd/scardd.sysusers.conf"),
                              ("/lib/tmpfiles.d/scardd.conf", "systemd/scardd.tmpfiles.conf"),
                              ("/lib/udev/rules.d/92-scardd.rules", "udev/92-scardd.rules")):
        assert inst.path(inst.prefix + installed).read_text() == (REPO / source).read_text(), installed


def test_example_stanza_names_the_installation(inst):
    """The example reader.conf.d stanza points at the installed bundle, with
    this prefix's paths."""
    stanza = inst.path(inst.prefix + "/share/scardd/ifd-virtual/ifd-virtual").read_text()
    libpath = re.search(r"^LIBPATH\s+(\S+)$", stanza, re.M).group(1)
    assert libpath == inst.drivers_dir() + "/ifd-virtual.bundle/Contents/Linux/libifd-virtual.so"
    assert inst.path(libpath).is_file()
    device = re.search(r"^DEVICENAME\s+(\S+)$", stanza, re.M).group(1)
    assert device == inst.sysconfdir + "/scardd/virtual.conf"
    assert inst.config_dir() in stanza  # where to copy it


def test_headers_are_libpcsclite_devs():
    """The header set is the one Debian's libpcsclite-dev installs, read from
    the package where one (of any architecture) is installed."""
    r = run(["dpkg-query", "-W", "-f", "${Package}:${Architecture} ${Status}\n", "libpcsclite-dev:*"],
            check=False)
    pkgs = [line.split()[0] for line in r.stdout.splitlines() if line.endswith("install ok installed")]
    if not pkgs:
        pytest.skip("missing-package: libpcsclite-dev (any architecture) to compare headers with")
    listed = run(["dpkg-query", "-L", pkgs[0]]).stdout.splitlines()
    debian = {os.path.basename(f) for f in listed if f.startswith("/usr/include/PCSC/") and f.endswith(".h")}
    assert debian == HEADERS


def test_pkgconfig_file(inst):
    """libpcsclite.pc: pcsc-lite's variables, this build's paths, every path
    under the prefix (serialconfdir under sysconfdir, which is /etc for
    /usr), naming what is installed there, and the pcsc-lite interface level
    as Version (the value the installed pcsclite.h names), which CCID's
    `libpcsclite >= 1.8.3` check accepts."""
    header = inst.path(inst.prefix + "/include/PCSC/pcsclite.h").read_text()
    api = re.search(r'#define PCSCLITE_VERSION_NUMBER "([0-9.]+)"', header).group(1)
    assert inst.pkg_config("--modversion") == api
    inst.pkg_config("--atleast-version=1.8.3")
    values = {v: inst.pkg_config("--variable=" + v)
              for v in ("prefix", "exec_prefix", "libdir", "includedir", "usbdropdir", "serialconfdir")}
    assert values == {"prefix": inst.prefix, "exec_prefix": inst.prefix, "libdir": inst.libdir,
                      "includedir": inst.prefix + "/include/PCSC", "usbdropdir": inst.drivers_dir(),
                      "serialconfdir": inst.config_dir()}
    for name, value in values.items():
        under = inst.sysconfdir if name == "serialconfdir" else inst.prefix
        assert value == under or value.startswith(under + "/"), (name, value)
    assert inst.path(values["libdir"]).joinpath("libpcsclite.so").exists()
    assert inst.path(values["includedir"]).joinpath("winscard.h").is_file()
    assert inst.path(values["usbdropdir"]).joinpath("ifd-virtual.bundle", "Contents", "Info.plist").is_file()

    version = run([inst.scardd(), "--version"]).stdout.split()
    assert version == ["scardd", inst.pkg_config("--variable=scardd_version")]
    assert inst.pkg_config("--cflags").split() == ["-I%s/include/PCSC" % inst.prefix, "-pthread"]
    assert inst.pkg_config("--libs").split() == ["-L" + inst.libdir, "-lpcsclite"]
    # paths hang off ${prefix}, so the file moves with it
    assert inst.pkg_config("--cflags", relocate=True).split()[0] == \
        "-I%s" % inst.path(inst.prefix + "/include/PCSC")

    # scardd's compiled-in defaults are the .pc's directories
    help_text = run([inst.scardd(), "--help"]).stdout
    assert "(default %s)" % inst.drivers_dir() in help_text
    assert "(default %s)" % inst.config_dir() in help_text
    assert "/run/pcscd/pcscd.comm" in help_text  # the socket follows no prefix


def test_pkgconfig_file_matches_debians(installs):
    """With --prefix=/usr the .pc has every variable Debian's libpcsclite-dev's
    has, with the same values (libdir apart: the architecture), and the same
    flags: a driver or application build cannot tell them apart."""
    debian_pcs = sorted(Path("/usr/lib").glob("*-linux-gnu*/pkgconfig/libpcsclite.pc"))
    if not debian_pcs:
        pytest.skip("missing-package: libpcsclite-dev (any architecture) to compare the .pc with")
    inst = installs["/usr"]
    ours_vars, ours = pc_file_fields(inst.path(inst.libdir + "/pkgconfig/libpcsclite.pc").read_text())
    deb_vars, deb = pc_file_fields(debian_pcs[0].read_text())
    arch_dir = debian_pcs[0].parent.parent.name
    for name, value in deb_vars.items():
        assert name in ours_vars, "Debian's .pc has %s, ours not" % name
        if name == "libdir":
            assert value == "${prefix}/lib/" + arch_dir
            assert ours_vars[name].startswith("${prefix}/lib/"), ours_vars[name]
        else:
            assert ours_vars[name] == value, name
    for field in ("Name", "Libs", "Cflags"):
        assert ours[field] == deb[field], field


APP = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <winscard.h>

/* Prints the library it runs with, then the readers and the ATR in the one
 * named argv[1], if any. */
int main(int argc, char **argv)
{
	Dl_info info;
	if (dladdr((void *)SCardEstablishContext, &info))
		printf("library %s\n", info.dli_fname);
	SCARDCONTEXT ctx;
	LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	printf("establish 0x%08lX\n", (unsigned long)rv);
	if (rv != SCARD_S_SUCCESS)
		return 0;
	char readers[1024];
	DWORD len = sizeof readers;
	rv = SCardListReaders(ctx, NULL, readers, &len);
	for (char *r = readers; rv == SCARD_S_SUCCESS && *r; r += strlen(r) + 1)
		printf("reader %s\n", r);
	SCARDHANDLE card;
	DWORD proto;
	if (argc > 1 && SCardConnect(ctx, argv[1], SCARD_SHARE_SHARED, SCARD_PROTOCOL_ANY, &card,
				     &proto) == SCARD_S_SUCCESS) {
		BYTE atr[MAX_ATR_SIZE];
		DWORD atr_len = sizeof atr, state, name_len = 0;
		if (SCardStatus(card, NULL, &name_len, &state, &proto, atr, &atr_len) == SCARD_S_SUCCESS) {
			printf("atr ");
			for (DWORD i = 0; i < atr_len; i++)
				printf("%02X", atr[i]);
			printf("\n");
		}
		SCardDisconnect(card, SCARD_LEAVE_CARD);
	}
	SCardReleaseContext(ctx);
	return 0;
}
"""

# A reader driver with no card: it logs through the daemon, as drivers do.
DRIVER = r"""
#include <debuglog.h>
#include <ifdhandler.h>
#include <reader.h>

#define UNUSED(x) (void)(x)

RESPONSECODE IFDHCreateChannelByName(DWORD Lun, LPSTR DeviceName)
{
	Log3(PCSC_LOG_INFO, "tiny driver opens lun %lu on %s", (unsigned long)Lun, DeviceName);
	return IFD_SUCCESS;
}
RESPONSECODE IFDHCreateChannel(DWORD Lun, DWORD Channel)
{
	Log3(PCSC_LOG_INFO, "tiny driver opens lun %lu, channel %lu", (unsigned long)Lun,
	     (unsigned long)Channel);
	return IFD_SUCCESS;
}
RESPONSECODE IFDHCloseChannel(DWORD Lun)
{
	UNUSED(Lun);
	return IFD_SUCCESS;
}
RESPONSECODE IFDHGetCapabilities(DWORD Lun, DWORD Tag, PDWORD Length, PUCHAR Value)
{
	UNUSED(Lun);
	if (Tag == TAG_IFD_SLOTS_NUMBER && *Length >= 1) {
		*Value = 1;
		*Length = 1;
		return IFD_SUCCESS;
	}
	return IFD_ERROR_TAG;
}
RESPONSECODE IFDHSetCapabilities(DWORD Lun, DWORD Tag, DWORD Length, PUCHAR Value)
{
	UNUSED(Lun), UNUSED(Tag), UNUSED(Length), UNUSED(Value);
	return IFD_ERROR_TAG;
}
RESPONSECODE IFDHSetProtocolParameters(DWORD Lun, DWORD Protocol, UCHAR Flags, UCHAR PTS1,
				       UCHAR PTS2, UCHAR PTS3)
{
	UNUSED(Lun), UNUSED(Protocol), UNUSED(Flags), UNUSED(PTS1), UNUSED(PTS2), UNUSED(PTS3);
	return IFD_SUCCESS;
}
RESPONSECODE IFDHPowerICC(DWORD Lun, DWORD Action, PUCHAR Atr, PDWORD AtrLength)
{
	UNUSED(Lun), UNUSED(Action), UNUSED(Atr);
	*AtrLength = 0;
	return IFD_ERROR_POWER_ACTION;
}
RESPONSECODE IFDHTransmitToICC(DWORD Lun, SCARD_IO_HEADER SendPci, PUCHAR TxBuffer, DWORD TxLength,
			       PUCHAR RxBuffer, PDWORD RxLength, PSCARD_IO_HEADER RecvPci)
{
	UNUSED(Lun), UNUSED(SendPci), UNUSED(TxBuffer), UNUSED(TxLength), UNUSED(RxBuffer),
		UNUSED(RecvPci);
	*RxLength = 0;
	return IFD_COMMUNICATION_ERROR;
}
RESPONSECODE IFDHControl(DWORD Lun, DWORD dwControlCode, PUCHAR TxBuffer, DWORD TxLength,
			 PUCHAR RxBuffer, DWORD RxLength, LPDWORD pdwBytesReturned)
{
	UNUSED(Lun), UNUSED(TxBuffer), UNUSED(TxLength), UNUSED(RxBuffer), UNUSED(RxLength);
	*pdwBytesReturned = 0;
	if (dwControlCode == CM_IOCTL_GET_FEATURE_REQUEST)
		return IFD_SUCCESS; /* no features */
	LogXxd(PCSC_LOG_ERROR, "tiny driver: unknown control ", TxBuffer, (int)TxLength);
	return IFD_ERROR_NOT_SUPPORTED;
}
RESPONSECODE IFDHICCPresence(DWORD Lun)
{
	UNUSED(Lun);
	return IFD_ICC_NOT_PRESENT;
}
"""

CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror"]


def pcsc_headers_used(inst, source, flags):
    """The PC/SC headers gcc reads for source with flags (gcc -M)."""
    deps = run(["gcc", "-M"] + flags + [source]).stdout.replace("\\\n", " ").split()
    return [d for d in deps if "/PCSC/" in d]


def private_mount_ok():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return r.returncode == 0


def install_driver(inst, root, drv):
    """What a reader driver's build does with the .pc (CCID's serial driver,
    for one): the library into usbdropdir, a stanza naming it into
    serialconfdir, both under DESTDIR root. Returns the stanza's LIBPATH."""
    usbdropdir = inst.pkg_config("--variable=usbdropdir")
    serialconfdir = inst.pkg_config("--variable=serialconfdir")
    libpath = usbdropdir + "/serial/libtiny.so"
    target = root / libpath.lstrip("/")
    target.parent.mkdir(parents=True)
    shutil.copy(drv, target)
    stanza = root / serialconfdir.lstrip("/") / "tiny"
    stanza.parent.mkdir(parents=True, exist_ok=True)
    stanza.write_text('FRIENDLYNAME "Tiny Reader"\nDEVICENAME tiny-device\nLIBPATH %s\n' % libpath)
    return libpath


def test_application_and_driver_build_and_run(inst, test_dir):
    """An application and a reader driver, built with the installed headers and
    the .pc's flags (nothing from the system's /usr/include/PCSC), the driver
    installed where the .pc's usbdropdir and serialconfdir say. The installed
    scardd, with its compiled-in directories alone (no -c, no --drivers-dir),
    finds there the driver's stanza, the ifd-virtual bundle and the example
    ifd-virtual stanza as installed (DEVICENAME edited, as its comment asks),
    and serves the application running with the installed library.

    To run at the installation's own paths, the DESTDIR tree plus the driver
    is mounted over them in a private mount namespace: /usr's driver and
    reader.conf.d directories, or all of /opt."""
    if not private_mount_ok():
        pytest.skip("no-namespace: running at the installed paths needs root and unshare")
    cflags = inst.pkg_config("--cflags", relocate=True).split()
    libs = inst.pkg_config("--libs", relocate=True).split()
    app_c, drv_c = test_dir / "app.c", test_dir / "tiny.c"
    app_c.write_text(APP)
    drv_c.write_text(DRIVER)
    for src in (app_c, drv_c):
        used = pcsc_headers_used(inst, src, cflags)
        assert used and all(u.startswith(str(inst.dest) + "/") for u in used), used
    app, drv = test_dir / "app", test_dir / "tiny.so"
    run(["gcc"] + CFLAGS + cflags + ["-o", app, app_c] + libs)
    run(["gcc"] + CFLAGS + cflags + ["-shared", "-fPIC", "-o", drv, drv_c])

    lib_dir = inst.path(inst.libdir)
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir), PCSCLITE_CSOCK_NAME=str(test_dir / "none.comm"))
    out = run([app], env=env).stdout.splitlines()
    assert out[0] == "library %s" % (lib_dir / "libpcsclite.so.1"), out
    assert out[1] == "establish 0x8010001D", out  # SCARD_E_NO_SERVICE: no daemon there

    # the machine as the installation and the driver's package leave it
    root = test_dir / "root"
    shutil.copytree(inst.dest, root, symlinks=True)
    install_driver(inst, root, drv)
    usbdropdir = inst.pkg_config("--variable=usbdropdir")
    serialconfdir = inst.pkg_config("--variable=serialconfdir")
    example = inst.path(inst.prefix + "/share/scardd/ifd-virtual/ifd-virtual").read_text()
    virtual_conf = test_dir / "virtual.conf"
    virtual_conf.write_text("readers = 1\ncontrol = %s\ncard.0 = builtin\n" % (test_dir / "virtual.sock"))
    (root / serialconfdir.lstrip("/") / "ifd-virtual").write_text(
        re.sub(r"^DEVICENAME .*$", "DEVICENAME %s" % virtual_conf, example, flags=re.M))

    if inst.prefix == "/usr":
        mounts = [(root / d.lstrip("/"), d) for d in (usbdropdir, serialconfdir)]
        absent = [d for _, d in mounts if not os.path.isdir(d)]
        if absent:
            pytest.skip("missing-package: %s (libccid, pcscd) to mount over" % ", ".join(absent))
    else:
        mounts = [("tmpfs", "/opt"), (root / inst.prefix.lstrip("/"), inst.prefix)]
    script = " && ".join(
        ('mount -t tmpfs tmpfs "%s"' % target) if source == "tmpfs"
        else ('mkdir -p "%s" && mount --bind "%s" "%s"' % (target, source, target))
        for source, target in mounts) + ' && exec "$@"'
    sock = test_dir / "installed.comm"
    scardd = os.path.join(inst.prefix, "sbin/scardd") if inst.prefix != "/usr" else str(inst.scardd())
    argv = scardd_argv(scardd, "--foreground", "--debug", "--socket", sock)  # the files here are root's
    log = open(test_dir / "scardd.log", "w")
    daemon = spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"] + argv,
                   stdout=log, stderr=subprocess.STDOUT)
    try:
        raw.wait_for(lambda: raw.socket_alive(str(sock)) or daemon.poll() is not None, 60,
                     what="the installed scardd's socket")
        env["PCSCLITE_CSOCK_NAME"] = str(sock)
        out = run([app, "Virtual Reader 00 00"], env=env).stdout.splitlines()
    finally:
        rc = stop_process(daemon)
        log.close()
    text = (test_dir / "scardd.log").read_text()
    # readers in file name order: ifd-virtual, then tiny
    assert out[1:] == ["establish 0x00000000", "reader Virtual Reader 00 00", "reader Tiny Reader 00 00",
                       "atr " + BUILTIN_ATR.hex().upper()], out + [text[-3000:]]
    assert rc == 0, text[-3000:]
    # the driver's Log3 reached the daemon's log, with its file, line and function
    assert re.search(r"tiny\.c:\d+:IFDHCreateChannelByName\(\) tiny driver opens lun \d+ on tiny-device",
                     text), text[-3000:]
    assert re.search(r"\b1 driver bundle\(s\) in %s\b" % re.escape(usbdropdir), text), text[-3000:]


def rendered(page):
    """groff's text of a man page (overstriking removed) and its warnings."""
    r = run(["groff", "-man", "-Tascii", "-ww", "-rLL=80n", page], env=dict(os.environ, LC_ALL="C"))
    return re.sub(r".\x08", "", r.stdout), r.stderr


def test_man_pages(inst, test_dir):
    """Each page renders without a warning, names this build's paths, and
    scardd(8) and scard(1) describe every option and command --help lists."""
    pages = {m: inst.path("%s/share/man/%s" % (inst.prefix, m)) for m in MAN_PAGES}
    texts = {}
    for m, page in pages.items():
        text, warnings = rendered(page)
        assert warnings == "", "%s: %s" % (m, warnings)
        r = run(["man", "--warnings", "-l", page], env=dict(os.environ, MANWIDTH="80", LC_ALL="C"))
        assert r.stderr == "", "%s: %s" % (m, r.stderr)
        assert "NAME" in text and "SEE ALSO" in text, m
        texts[m] = " ".join(text.split())  # lines joined: a phrase may wrap

    scardd = texts["man8/scardd.8"]
    for path in (inst.config_dir(), inst.drivers_dir(), "/run/pcscd/pcscd.comm", "/run/pcscd/pcscd.pid",
                 inst.prefix + "/lib/sysusers.d/scardd.conf", inst.prefix + "/lib/tmpfiles.d/scardd.conf",
                 inst.prefix + "/lib/udev/rules.d/92-scardd.rules"):
        assert path in scardd, path
        if path.endswith(".conf") or path.endswith(".rules"):
            assert inst.path(path).is_file(), path  # the page names what was installed
    help_text = run([inst.scardd(), "--help"]).stdout
    for opt in sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[A-Za-z])\b", help_text))):
        assert opt in scardd, "scardd --help lists %s, scardd(8) does not" % opt
    socket_opts = re.findall(r"^\s+(?:OPT: )?([a-z]+)=", help_text, re.M)
    assert {"readers", "mode", "group"} <= set(socket_opts), help_text
    for opt in socket_opts:
        assert opt + "=" in scardd, "scardd --help lists the socket option %s=, scardd(8) does not" % opt
    for sig in ("SIGHUP", "SIGUSR1", "SIGTERM", "PCSCLITE_CSOCK_NAME"):
        assert sig in scardd, sig

    scard = texts["man1/scard.1"]
    scard_help = run([inst.path(inst.prefix + "/bin/scard"), "--help"]).stdout
    commands = re.findall(r"^  ([a-z]+) ", scard_help.split("Commands:")[1].split("READER is")[0], re.M)
    assert len(commands) >= 5, scard_help
    for word in commands + re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", scard_help):
        assert word in scard, "scard --help lists %s, scard(1) does not" % word
    for code in range(9):
        assert re.search(r"(?<!\w)%d (?=[a-z])" % code, scard), "exit code %d" % code

    conf = texts["man5/reader.conf.5"]
    for key in ("FRIENDLYNAME", "DEVICENAME", "LIBPATH", "CHANNELID", inst.config_dir()):
        assert key in conf, key
