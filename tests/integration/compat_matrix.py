"""pytest plugin: the compatibility matrix.

A test says which pairing it exercises with

    @pytest.mark.compat(peer="pcsc-lite 2.2.3 (fake daemon)", role="daemon",
                        against="our libpcsclite", protocol="4:4",
                        order="little-endian", word="64-bit")

(also as pytest.param(..., marks=pytest.mark.compat(...)); markers on the
module, class, function and parameter set are merged, the most specific
winning per key). A test that exercises several pairings at once names
them with rows=[{...}, {...}]: one row each, every one merged over the
marker's other keys. `role` is the peer's role: "client" (the peer is a client
talking to `against`) or "daemon". Defaults: order "little-endian",
word "64-bit".

At the end of the session the plugin writes, when at least one marked test
ran:
  $SCARDD_COMPAT_OUT      (default <SCARDD_BUILD>/compat-matrix.json)
  the same path with .md  a markdown table peer x role x against x protocol x
                          byte order x word size x result
One row per distinct (peer, role, against, protocol, order, word). Its result
is "pass" only if every test of the row passed, "fail" if any failed (an
xfail counts as a failure, its reason noted), "skip" if all were skipped
(reasons noted), "partial" if some passed and the others were skipped.
SCARDD_COMPAT_MERGE=1 keeps the rows of an existing JSON file whose tests did
not run in this session (for partial runs).

scripts/compat-matrix copies the table into README.md between
<!-- compat-matrix:start --> and <!-- compat-matrix:end -->.
"""
import json
import os
from pathlib import Path

KEYS = ("peer", "role", "against", "protocol", "order", "word")
HEADINGS = ("Peer", "Role", "Against", "Protocol", "Byte order", "Word size", "Result")
DEFAULTS = {"order": "little-endian", "word": "64-bit"}
REPO = Path(__file__).resolve().parents[2]
MARKER_HELP = ("compat(peer, role='client'|'daemon', against, protocol, order='little-endian', "
               "word='64-bit'): the pairing this test exercises, for the compatibility matrix")


def output_paths():
    out = os.environ.get("SCARDD_COMPAT_OUT")
    if out:
        js = Path(out)
    else:
        build = Path(os.environ.get("SCARDD_BUILD", REPO / "build"))
        if not build.is_absolute():
            build = REPO / build
        js = build / "compat-matrix.json"
    if js.suffix == ".md":
        js = js.with_suffix(".json")
    return js, js.with_suffix(".md")


def _marker_rows(item):
    """The matrix rows of a test: compat kwargs merged from the session down
    to the parameter set, one row per entry of rows= (if given)."""
    merged = {}
    rows = [{}]
    found = False
    for node in item.listchain():
        for m in getattr(node, "own_markers", []):
            if m.name != "compat":
                continue
            found = True
            if m.args:
                merged["peer"] = m.args[0]
            kw = dict(m.kwargs)
            if "rows" in kw:
                rows = list(kw.pop("rows"))
            merged.update(kw)
    if not found:
        return []
    out = []
    for row in rows:
        r = dict(merged, **row)
        for k, v in DEFAULTS.items():
            r.setdefault(k, v)
        out.append({k: str(r.get(k, "?")) for k in KEYS})
    return out


def _short_reason(rep):
    lr = rep.longrepr
    if rep.skipped and isinstance(lr, tuple) and len(lr) == 3:
        text = lr[2]
    elif hasattr(rep, "wasxfail"):
        text = "xfail: " + (rep.wasxfail or "expected failure")
    elif hasattr(lr, "reprcrash") and lr.reprcrash is not None:
        text = lr.reprcrash.message.strip().split("\n")[0]
    else:
        lines = [ln for ln in (str(lr) if lr else "").splitlines() if ln.strip()]
        text = lines[0] if lines else ""
    text = " ".join(text.split())
    if text.startswith("Skipped: "):
        text = text[len("Skipped: "):]
    return text[:240]


class Recorder:
    def __init__(self):
        self.tests = {}  # nodeid -> [dict(row keys, outcome, reason)], one per row

    def pytest_runtest_logreport(self, report):
        for t in self.tests.get(report.nodeid, []):
            self._record(t, report)

    @staticmethod
    def _record(t, report):
        if report.when == "call" or report.failed or report.skipped:
            if t["outcome"] == "fail":
                return  # a failed call stays failed even if teardown passes
            if report.skipped and hasattr(report, "wasxfail"):
                t["outcome"], t["reason"] = "fail", _short_reason(report)
            elif report.skipped:
                t["outcome"], t["reason"] = "skip", _short_reason(report)
            elif report.failed:
                t["outcome"] = "fail"
                t["reason"] = ("%s: " % report.when if report.when != "call" else "") + \
                    _short_reason(report)
            elif report.when == "call":
                t["outcome"], t["reason"] = "pass", ""

    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            rows = _marker_rows(item)
            if rows:
                self.tests[item.nodeid] = [dict(kw, test=item.nodeid, outcome=None, reason="")
                                           for kw in rows]

    def pytest_sessionfinish(self, session, exitstatus):
        ran = [t for ts in self.tests.values() for t in ts if t["outcome"] is not None]
        if not ran:
            return
        js, md = output_paths()
        tests = ran
        if os.environ.get("SCARDD_COMPAT_MERGE") == "1" and js.exists():
            try:
                old = json.loads(js.read_text())
                seen = {t["test"] for t in ran}
                tests = [t for t in old.get("tests", []) if t["test"] not in seen] + ran
            except (OSError, ValueError, KeyError):
                pass
        data = build_matrix(tests)
        try:
            js.parent.mkdir(parents=True, exist_ok=True)
            js.write_text(json.dumps(data, indent=1) + "\n")
            md.write_text(render_markdown(data))
        except OSError as e:
            session.config.get_terminal_writer().line("compat-matrix: cannot write %s: %s" % (js, e))
            return
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line("compat-matrix: %d rows (%s) -> %s" % (
                len(data["rows"]), summary(data), md))


def _proto_key(p):
    out = []
    for part in p.replace(":", " ").replace(".", " ").split():
        out.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return out


def build_matrix(tests):
    rows = {}
    for t in tests:
        key = tuple(t[k] for k in KEYS)
        rows.setdefault(key, []).append(t)
    out = []
    for key in sorted(rows, key=lambda k: (k[1], k[2], _proto_key(k[3]), k[0], k[4], k[5])):
        ts = sorted(rows[key], key=lambda t: t["test"])
        outcomes = [t["outcome"] for t in ts]
        if "fail" in outcomes:
            result = "fail"
        elif all(o == "pass" for o in outcomes):
            result = "pass"
        elif all(o == "skip" for o in outcomes):
            result = "skip"
        else:
            result = "partial"
        row = dict(zip(KEYS, key))
        row.update(result=result,
                   passed=outcomes.count("pass"), failed=outcomes.count("fail"),
                   skipped=outcomes.count("skip"),
                   tests=[{"test": t["test"], "outcome": t["outcome"], "reason": t["reason"]}
                          for t in ts])
        out.append(row)
    return {"columns": list(KEYS) + ["result"], "rows": out,
            "tests": [{k: t[k] for k in KEYS + ("test", "outcome", "reason")} for t in tests]}


def summary(data):
    counts = {}
    for r in data["rows"]:
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    return ", ".join("%d %s" % (counts[k], k) for k in ("pass", "fail", "partial", "skip")
                     if k in counts) or "empty"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(data):
    """The table (and notes for rows that did not simply pass)."""
    lines = ["| " + " | ".join(HEADINGS) + " |",
             "|" + "|".join("---" for _ in HEADINGS) + "|"]
    notes = []
    for r in data["rows"]:
        n = len(r["tests"])
        result = r["result"]
        if result == "partial":
            result = "partial (%d passed, %d skipped)" % (r["passed"], r["skipped"])
        elif n > 1:
            result = "%s (%d tests)" % (result, n) if result == "pass" else \
                "%s (%d of %d)" % (result, r["failed"] if result == "fail" else r["skipped"], n)
        if r["result"] != "pass":
            notes.append(r)
            result += " [%d]" % len(notes)
        if r["result"] in ("fail",):
            result = "**" + result + "**"
        lines.append("| " + " | ".join(_cell(r[k]) for k in KEYS) + " | " + _cell(result) + " |")
    out = "\n".join(lines) + "\n"
    if notes:
        out += "\n"
        for i, r in enumerate(notes, 1):
            why = ["%s %s%s" % (t["test"].split("::", 1)[-1], t["outcome"],
                                (": " + t["reason"]) if t["reason"] else "")
                   for t in r["tests"] if t["outcome"] != "pass"]
            out += "%d. %s\n" % (i, _cell("; ".join(why)))
    out += "\n%d rows: %s.\n" % (len(data["rows"]), summary(data))
    return out


# --- pytest hooks (module-level: this module is the plugin) -----------------------
def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_HELP)
    if not config.pluginmanager.has_plugin("compat_matrix_recorder"):
        config.pluginmanager.register(Recorder(), "compat_matrix_recorder")
