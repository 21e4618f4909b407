"""The one list of reasons a test may skip, and the pytest plugin that holds tests to it.

A test skips through `skip_because(reason, detail)` (or `skip_unless` as a mark, `require`
for an import) with a reason listed below; its message reads "[reason] detail". Under CI
(CI=true, as .ci/run sets) a skip whose reason is unlisted, or listed but not allowed in CI,
fails the test instead: CI installs every extra (`.[dev]`) and Debian's chromium, so there
the only thing that may be missing is what a bare clone lacks, ../shared. Every run ends with
a line counting its skips per reason.
"""

from __future__ import annotations

import importlib
import os
import re
from collections import Counter
from types import ModuleType

import pytest

# reason -> (what it means, whether CI accepts it)
REASONS: dict[str, tuple[str, bool]] = {
    "no-shared-data": ("../shared (real data sets and pretrained weights beside the repo, see "
                       "its README) is absent, as in a bare clone", True),
    "not-installed": ("an optional dependency is not installed (a partial install, e.g. "
                      "`.[all]` without the `dev` extras, or no Debian chromium); CI installs "
                      "them all, so there this is a broken install", False),
}

_MESSAGE = re.compile(r"^(?:Skipped: )?\[([a-z0-9-]+)\] ")


def _message(reason: str, detail: str) -> str:
    if reason not in REASONS:
        raise ValueError(f"skip reason {reason!r} is not listed in tests/skips.py "
                         f"({', '.join(REASONS)})")
    return f"[{reason}] {detail}"


def skip_because(reason: str, detail: str, *, module: bool = False) -> None:
    """Skip the running test (or the whole module, at import) for a listed reason."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    pytest.skip(_message(reason, detail), allow_module_level=module)


def skip_unless(condition: bool, reason: str, detail: str) -> pytest.MarkDecorator:
    """A skipif mark for a listed reason: skips when `condition` is false."""
    return pytest.mark.skipif(not condition, reason=_message(reason, detail))


def not_installed(name: str) -> str:
    """The skip message for a missing package, for `pytest.importorskip(name, reason=...)`."""
    return _message("not-installed", f"{name} (pip install -e '.[dev]')")


def require(name: str, *, module: bool = False) -> ModuleType:
    """Import `name`, or skip as "not-installed" when it (not something it imports) is absent:
    an ImportError from inside an installed package is a failure, not a skip."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
            raise
        pytest.skip(not_installed(name), allow_module_level=module)
        raise  # unreachable: skip raises


def reason_of(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """The reason id in a skip report's message, or None for a skip that names none."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    found = _MESSAGE.match(text)
    return found.group(1) if found else None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _refuse_unlisted(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI, turn a skip whose reason CI does not accept into a failure."""
    if not report.skipped or not _in_ci() or getattr(report, "wasxfail", None) is not None:
        return
    reason = reason_of(report)
    if reason in REASONS and REASONS[reason][1]:
        return
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    allowed = ", ".join(r for r, (_, ci) in REASONS.items() if ci)
    report.outcome = "failed"
    report.longrepr = (f"a skip that CI does not allow ({text}); CI allows only: {allowed} "
                       "(tests/skips.py)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _refuse_unlisted(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _refuse_unlisted(report)
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    counts = Counter(reason_of(r) or "unlisted" for r in skipped)
    listed = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
    terminalreporter.write_line(f"skips by reason: {listed or 'none'}")
