"""pytest plugin: the skip policy (tests/skip_policy.py) for the integration
tests.

With SCARDD_STRICT_SKIPS=1 (scripts/run-tests, .ci/run) a test that skips for
a reason the policy does not allow fails instead, its reason in the failure.
xfail is not a skip and is left alone. With SCARDD_SKIP_LOG=FILE every skip
that stays a skip is appended to FILE as "nodeid<TAB>reason", so that
scripts/run-tests can list them by name at its end.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import skip_policy  # noqa: E402


def skip_reason(report):
    lr = report.longrepr
    text = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr or "")
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


class SkipPolicy:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = skip_reason(report)
        if skip_policy.strict() and not skip_policy.allowed(reason):
            where = report.longrepr[:2] if isinstance(report.longrepr, tuple) else None
            report.outcome = "failed"
            report.longrepr = skip_policy.refusal(reason) + \
                ("\n(skipped at %s:%s)" % where if where else "")

    def pytest_runtest_logreport(self, report):
        log = os.environ.get("SCARDD_SKIP_LOG")
        if log and report.skipped and not hasattr(report, "wasxfail"):
            with open(log, "a") as f:
                f.write("%s\t%s\n" % (report.nodeid, " ".join(skip_reason(report).split())))


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("scardd_skip_policy"):
        config.pluginmanager.register(SkipPolicy(), "scardd_skip_policy")
