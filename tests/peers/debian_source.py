"""pcsc-lite source releases from Debian's archive, found and fetched with apt
and verified.

apt is the transport: a private configuration, sources list, lists and cache
under the peers cache directory (the machine's own apt state is not
touched), `apt-get update` for each suite's InRelease and Sources index,
`apt-get source --download-only` for the files of one release. What apt
checks is checked again here, whatever the machine's apt settings allow:
  1. each suite's InRelease has a good signature by a key of the archive
     keyring (gpgv), and only its signed text is read;
  2. the Sources index has the SHA256 and size that signed text gives it;
  3. every file of a release has the SHA256 and size its Sources entry
     gives, and the .dsc lists the same;
  4. the .dsc is signed by its uploader (debian-keyring, where installed);
  5. the upstream tarball's .asc is signed by the key the Debian packaging
     ships in debian/upstream/signing-key.asc.
A mismatch or a bad signature raises VerifyError. A signature by a key no
keyring here holds (4, 5) is reported, not fatal: 1-3 already tie every
byte to the archive's signature.
"""
import base64
import functools
import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

ARCHIVE_KEYRINGS = ("/usr/share/keyrings/debian-archive-keyring.gpg",)
# old suites on an archive mirror are signed by keys Debian has since retired
RETIRED_KEYRINGS = ("/usr/share/keyrings/debian-archive-removed-keys.gpg",)
UPLOADER_KEYRINGS = ("/usr/share/keyrings/debian-keyring.gpg",
                     "/usr/share/keyrings/debian-maintainers.gpg",
                     "/usr/share/keyrings/debian-nonupload.gpg")
APT_TIMEOUT = 900  # seconds for one apt-get run


class VerifyError(Exception):
    """A signature or checksum that does not hold: never retried."""


class Unavailable(Exception):
    """A release the index lists whose files cannot be downloaded."""


# --- small helpers --------------------------------------------------------------
def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def deb822(text):
    """Stanzas of a Debian control-style text, as dicts (continuation lines
    kept, joined with newlines)."""
    out, cur, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            cur[key] = value.strip()
    if cur:
        out.append(cur)
    return out


def checksum_lines(field):
    """{name: (sha256, size)} from a Checksums-Sha256 / SHA256 field."""
    files = {}
    for line in field.splitlines():
        parts = line.split()
        if len(parts) == 3:
            files[parts[2]] = (parts[0], int(parts[1]))
    return files


def upstream_tuple(version):
    """(2, 5, 2) for "2.5.2-1" or "1:2.5.2-1": the numeric upstream part."""
    v = version.split(":", 1)[-1].rsplit("-", 1)[0]
    nums = []
    for part in re.split(r"[.]", v):
        m = re.match(r"\d+", part)
        if not m:
            break
        nums.append(int(m.group()))
        if m.end() != len(part):
            break
    return tuple(nums)


def dpkg_compare(a, b):
    if a == b:
        return 0
    if subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0:
        return 1
    return -1


def sort_newest_first(versions):
    return sorted(versions, key=functools.cmp_to_key(dpkg_compare), reverse=True)


def gpgv(keyrings, *args):
    """Runs gpgv; returns {status keyword: [argument lists]} from its
    --status-fd lines and its stderr. Whether that is a good signature is
    the caller's question."""
    cmd = ["gpgv", "--status-fd", "1"]
    for k in keyrings:
        cmd += ["--keyring", str(k)]
    r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True)
    status = {}
    for line in r.stdout.splitlines():
        if line.startswith("[GNUPG:] "):
            words = line.split()[1:]
            status.setdefault(words[0], []).append(words[1:])
    return status, r.stderr


def signature_verdict(status, stderr, what):
    """"good <signer>", or None when no key here knows the signer; raises
    VerifyError for a bad or revoked signature."""
    for bad in ("BADSIG", "REVKEYSIG"):
        if bad in status:
            raise VerifyError("%s: %s %s\n%s" % (what, bad, status[bad][0], stderr.strip()))
    if "VALIDSIG" in status:
        good = status.get("GOODSIG") or status.get("EXPKEYSIG") or [["?", "?"]]
        signer = " ".join(good[0][1:]) or good[0][0]
        note = " (key expired since)" if "EXPKEYSIG" in status and "GOODSIG" not in status else ""
        return "good, %s, key %s%s" % (signer, status["VALIDSIG"][0][0], note)
    return None


def existing(paths):
    return [p for p in paths if os.path.exists(p)]


def dearmor(text):
    """The binary OpenPGP packets of every ASCII-armored block in text."""
    out = b""
    for block in re.findall(r"-----BEGIN PGP PUBLIC KEY BLOCK-----\n(.*?)-----END PGP PUBLIC KEY BLOCK-----",
                            text, re.S):
        body = block.split("\n\n", 1)[-1] if "\n\n" in block else block
        lines = [ln.strip() for ln in body.splitlines()
                 if ln.strip() and not ln.startswith("=") and ":" not in ln]
        out += base64.b64decode("".join(lines))
    return out


# --- the archive ----------------------------------------------------------------
class Source:
    """One deb-src line: a mirror and suites, with the keyrings that may sign
    them."""

    def __init__(self, site, suites, keyrings=ARCHIVE_KEYRINGS):
        self.site = site.rstrip("/")
        self.suites = list(suites)
        self.keyrings = existing(keyrings)

    def lines(self):
        return ["deb-src [signed-by=%s] %s %s main" % (",".join(self.keyrings), self.site, s)
                for s in self.suites]


class Release:
    """One version of the source package, as the verified indices give it."""

    def __init__(self, version, directory, files):
        self.version = version
        self.directory = directory
        self.files = files          # {name: (sha256, size)}
        self.suites = []            # "unstable (http://...)" where it is listed

    @property
    def upstream(self):
        return upstream_tuple(self.version)

    def orig(self):
        for name in self.files:
            if ".orig.tar." in name and not name.endswith(".asc"):
                return name
        raise VerifyError("pcsc-lite %s: no .orig tarball among %s" % (self.version, sorted(self.files)))

    def __repr__(self):
        return "pcsc-lite %s" % self.version


class Archive:
    """apt with a private state under `root`, for `sources`."""

    def __init__(self, root, sources, log):
        self.root = Path(root)
        self.sources = sources
        self.log = log
        self.lists = self.root / "lists"
        self.etc = self.root / "etc"
        self.suite_notes = []       # what each suite gave, for the report
        self.update_errors = ""
        self.memo = {}              # index file -> what its last check found

    def _write_config(self):
        for d in (self.lists / "partial", self.root / "cache" / "archives" / "partial",
                  self.etc / "sources.list.d", self.etc / "preferences.d"):
            d.mkdir(parents=True, exist_ok=True)
        (self.etc / "sources.list").write_text(
            "".join(line + "\n" for s in self.sources for line in s.lines()))
        user = "root" if os.geteuid() == 0 else ""
        # read after the machine's configuration: only where files go, and
        # no hooks of the machine's own apt runs
        conf = ['Dir::Etc::SourceList "%s/sources.list";' % self.etc,
                'Dir::Etc::SourceParts "%s/sources.list.d";' % self.etc,
                'Dir::Etc::Preferences "%s/preferences";' % self.etc,
                'Dir::Etc::PreferencesParts "%s/preferences.d";' % self.etc,
                'Dir::State::Lists "%s";' % self.lists,
                'Dir::State::status "/dev/null";',
                'Dir::Cache "%s/cache";' % self.root,
                'Acquire::Languages "none";',
                'Acquire::Retries "2";',
                'Acquire::http::Timeout "30";',
                '#clear APT::Update::Post-Invoke;',
                '#clear APT::Update::Post-Invoke-Success;',
                '#clear APT::Update::Pre-Invoke;']
        if user:
            conf.append('APT::Sandbox::User "%s";' % user)  # our own files, no _apt
        (self.etc / "apt.conf").write_text("\n".join(conf) + "\n")

    def apt(self, *args, cwd=None):
        cmd = ["apt-get", "-c", str(self.etc / "apt.conf"), "-q"] + list(args)
        try:
            return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT,
                                  stdin=subprocess.DEVNULL, env=dict(os.environ, LC_ALL="C"))
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", "apt-get %s: no end in %d s" % (args[0], APT_TIMEOUT))

    def update(self):
        """apt-get update; a suite that fails keeps what it had (and is
        reported). Returns the apt-get errors, if any."""
        self._write_config()
        r = self.apt("update")
        errors = [re.sub(r"\s+", " ", ln) for ln in (r.stdout + r.stderr).splitlines()
                  if ln.startswith(("E:", "W:")) and "ignored, or old ones used" not in ln]
        if r.returncode != 0 and not errors:
            errors = ["apt-get update exited %d: %s" % (r.returncode, (r.stdout + r.stderr).strip()[-500:])]
        self.update_errors = "\n".join(errors)
        # a mirror whose index does not verify is a hard failure, not a
        # missing suite
        bad = [e for e in errors if re.search(r"Hash Sum mismatch|GPG error|signatures were invalid|"
                                             r"BADSIG|is not signed|File has unexpected size", e)]
        if bad:
            raise VerifyError("apt-get update: an index did not verify:\n  " + "\n  ".join(bad))
        return self.update_errors

    def _targets(self):
        r = self.apt("indextargets", "--format", "$(FILENAME)\t$(SITE)\t$(RELEASE)\t$(METAKEY)",
                     "Created-By: Sources")
        for line in r.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                yield parts

    def _verified_sources(self, filename, site, suite, metakey, package):
        """The Sources stanzas of `package` in one suite, after checks 1 and 2;
        (stanza texts, "suite/codename", signature verdict)."""
        inrelease = Path(filename[:filename.index(metakey.replace("/", "_"))] + "InRelease")
        src = next((s for s in self.sources if s.site == site.rstrip("/") and suite in s.suites),
                   Source(site, [suite]))
        if not inrelease.exists():
            raise Unavailable("no InRelease")
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            signed = Path(tmp) / "signed"
            status, err = gpgv(src.keyrings, "--output", signed, inrelease)
            verdict = signature_verdict(status, err, "%s %s InRelease" % (site, suite))
            if verdict is None:
                raise VerifyError("%s %s InRelease: no good signature by a key of %s\n%s"
                                  % (site, suite, ", ".join(src.keyrings), err.strip()))
            signed_bytes = signed.read_bytes()
        release = deb822(signed_bytes.decode(errors="replace"))[0]
        name = "%s/%s" % (suite, release.get("Codename", suite))
        want = checksum_lines(release.get("SHA256", "")).get(metakey)
        if want is None:
            raise VerifyError("%s %s: the signed InRelease lists no %s" % (site, suite, metakey))
        if not os.path.exists(filename):
            raise Unavailable("no Sources index (apt-get update could not fetch it)")
        # an index checked against this very InRelease, unchanged since: its
        # stanzas were kept (hashing every index again costs seconds)
        st = os.stat(filename)
        memo_key = [hashlib.sha256(signed_bytes).hexdigest(), want[0], st.st_size, st.st_mtime_ns, package]
        memo = self.memo.get(filename)
        if memo and memo["key"] == memo_key:
            return memo["stanzas"], name, verdict
        # apt keeps the index recompressed; apt-helper gives the original bytes
        r = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", filename], capture_output=True)
        if r.returncode != 0:
            raise VerifyError("cannot read %s: %s" % (filename, r.stderr.decode(errors="replace").strip()))
        got = (hashlib.sha256(r.stdout).hexdigest(), len(r.stdout))
        if got != want:
            raise VerifyError("%s %s: %s has sha256 %s, size %d; the signed InRelease says %s, size %d"
                              " (apt's copy %s was changed or damaged: remove it and run again)"
                              % (site, suite, metakey, got[0], got[1], want[0], want[1], filename))
        head = ("Package: %s\n" % package).encode()
        stanzas = [b.decode(errors="replace") for b in r.stdout.split(b"\n\n") if b.lstrip(b"\n").startswith(head)]
        self.memo[filename] = {"key": memo_key, "stanzas": stanzas}
        return stanzas, name, verdict

    def releases(self, package):
        """Every release of `package` the verified indices list, newest first."""
        by_version = {}
        self.suite_notes = []
        seen = set()
        memo_file = self.root / "verified-indices.json"
        try:
            self.memo = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            self.memo = {}
        for filename, site, suite, metakey in self._targets():
            seen.add((site.rstrip("/"), suite))
            try:
                stanzas, name, verdict = self._verified_sources(filename, site, suite, metakey, package)
            except Unavailable as e:
                self.suite_notes.append("%s %s: %s" % (site, suite, e))
                continue
            versions = []
            for st in deb822("\n\n".join(stanzas)):
                v = st["Version"]
                files = checksum_lines(st.get("Checksums-Sha256", ""))
                rel = by_version.get(v)
                if rel is None:
                    rel = by_version[v] = Release(v, st.get("Directory", ""), files)
                elif rel.files != files:
                    raise VerifyError("%s %s: %s lists other files for it than %s"
                                      % (package, v, site, rel.suites[0]))
                rel.suites.append("%s %s" % (site, name))
                versions.append(v)
            self.suite_notes.append("%s %s: InRelease %s; Sources sha256 checked; %s %s"
                                    % (site, name, verdict, package, ", ".join(versions) or "not listed"))
        memo_file.write_text(json.dumps(self.memo))
        for s in self.sources:
            for suite in s.suites:
                if (s.site, suite) not in seen:
                    self.suite_notes.append("%s %s: no index (apt-get update fetched no InRelease for it)"
                                            % (s.site, suite))
        return [by_version[v] for v in sort_newest_first(by_version)]

    def fetch(self, rel, dest):
        """The files of `rel` in dest (downloaded unless already there and
        intact), after checks 3-5. Returns notes on the checks."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        damaged = [n for n, want in rel.files.items() if (dest / n).exists() and not self._file_ok(dest / n, want)]
        for n in damaged:
            self.log("cached %s does not match the signed index (damaged cache?): downloading it again"
                     % (dest / n))
            (dest / n).unlink()
        if not all(self._file_ok(dest / n, want) for n, want in rel.files.items()):
            r = self.apt("source", "--download-only", "pcsc-lite=%s" % rel.version, cwd=dest)
            if r.returncode != 0:
                why = [ln.strip() for ln in (r.stdout + r.stderr).splitlines()
                       if ln.startswith(("E:", "Err:")) or "Not Found" in ln or "Hash Sum" in ln]
                if any("Hash Sum" in w or "Hashes" in w for w in why):
                    raise VerifyError("pcsc-lite %s: apt found a checksum mismatch:\n  %s"
                                      % (rel.version, "\n  ".join(why)))
                failed = [re.sub(r"^E: Failed to fetch\s+|\s*\[IP:.*\]$", "", w)
                          for w in why if w.startswith("E: Failed to fetch") and "://" in w]
                if failed:
                    more = " (and %d more files)" % (len(failed) - 1) if len(failed) > 1 else ""
                    raise Unavailable(re.sub(r"\s+", " ", failed[0]) + more)
                raise Unavailable("; ".join(w for w in why if w.startswith("E:")) or
                                  "apt-get source exited %d" % r.returncode)
        for name, want in rel.files.items():
            if not self._file_ok(dest / name, want):
                p = dest / name
                got = (sha256_of(p), p.stat().st_size) if p.exists() else ("(missing)", 0)
                raise VerifyError("%s: sha256 %s, size %d; the signed Sources index says %s, size %d"
                                  " (remove %s to download it again)" % (p, got[0], got[1], want[0], want[1], p))
        return ["%s files: sha256 as the Sources index" % rel.version] + self._check_dsc(rel, dest) \
            + self._check_upstream(rel, dest)

    @staticmethod
    def _file_ok(path, want):
        return path.exists() and path.stat().st_size == want[1] and sha256_of(path) == want[0]

    def _check_dsc(self, rel, dest):
        dsc = next((dest / n for n in rel.files if n.endswith(".dsc")), None)
        if dsc is None:
            raise VerifyError("pcsc-lite %s: no .dsc in its Sources entry" % rel.version)
        stanza = deb822(re.sub(r"(?s)^-----BEGIN PGP SIGNED MESSAGE-----\n.*?\n\n", "",
                               dsc.read_text(errors="replace")).split("-----BEGIN PGP SIGNATURE", 1)[0])[0]
        listed = checksum_lines(stanza.get("Checksums-Sha256", ""))
        others = {n: w for n, w in rel.files.items() if not n.endswith(".dsc")}
        if listed != others:
            raise VerifyError("%s lists %s; the Sources index %s" % (dsc, listed, others))
        keyrings = existing(UPLOADER_KEYRINGS)
        if not keyrings:
            return [".dsc signature not checked (debian-keyring not installed)"]
        status, err = gpgv(keyrings, dsc)
        verdict = signature_verdict(status, err, str(dsc))
        if verdict is None:
            return [".dsc signature not checked: its key is in no keyring here (%s)" % err.strip().splitlines()[-1]]
        return [".dsc: checksums as the Sources index; signature %s" % verdict]

    def _check_upstream(self, rel, dest):
        orig = rel.orig()
        asc = orig + ".asc"
        debian = next((n for n in rel.files if ".debian.tar." in n), None)
        if asc not in rel.files or debian is None:
            return ["upstream signature: none shipped"]
        try:
            with tarfile.open(dest / debian) as t:
                key = t.extractfile("debian/upstream/signing-key.asc").read().decode()
        except (KeyError, AttributeError):
            return ["upstream signature: debian/upstream/signing-key.asc not shipped"]
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            ring = Path(tmp) / "upstream.gpg"
            ring.write_bytes(dearmor(key))
            status, err = gpgv([ring], dest / asc, dest / orig)
        verdict = signature_verdict(status, err, str(dest / orig))
        if verdict is None:
            return ["upstream signature not checked: %s" % (err.strip().splitlines() or ["no key matched"])[-1]]
        return ["upstream tarball: signature %s (key from debian/upstream/signing-key.asc)" % verdict]


def machine_sites():
    """The Debian and Debian-Security mirrors this machine's apt uses:
    {label: site}."""
    try:
        r = subprocess.run(["apt-get", "indextargets", "--format", "$(ORIGIN)\t$(LABEL)\t$(SITE)"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    sites = {}
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == "Debian":
            sites.setdefault(parts[1], parts[2])
    return sites
