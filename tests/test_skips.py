"""tests/skips.py: under CI only listed, CI-allowed skip reasons pass; every run counts skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skips import REASONS, skip_because

CASES = '''
import pytest
from skips import require, skip_because, skip_unless

def test_unlisted():
    pytest.skip("some reason nobody listed")

def test_bare_clone():
    skip_because("no-shared-data", "../shared")

@skip_unless(False, "no-shared-data", "as a mark")
def test_bare_clone_mark():
    pass

def test_missing_package():
    require("genforge_no_such_package")
'''


def run_cases(tmp_path: Path, ci: bool) -> str:
    shutil.copy(Path(__file__).with_name("skips.py"), tmp_path / "skips.py")
    (tmp_path / "conftest.py").write_text(
        "import skips\n\ndef pytest_configure(config):\n"
        "    config.pluginmanager.register(skips, 'genforge-skips')\n")
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "test_cases.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    return done.stdout


def test_ci_fails_unlisted_and_not_installed_skips(tmp_path):
    out = run_cases(tmp_path, ci=True)
    assert "FAILED test_cases.py::test_unlisted" in out
    assert "FAILED test_cases.py::test_missing_package" in out
    assert "a skip that CI does not allow" in out
    assert "2 failed, 2 skipped" in out
    assert "skips by reason: no-shared-data 2" in out


def test_outside_ci_every_skip_skips_and_is_counted(tmp_path):
    out = run_cases(tmp_path, ci=False)
    assert "4 skipped" in out and "failed" not in out
    assert "skips by reason: no-shared-data 2, not-installed 1, unlisted 1" in out


def test_a_reason_must_be_listed():
    assert REASONS["no-shared-data"][1] and not REASONS["not-installed"][1]
    with pytest.raises(ValueError, match="not listed in tests/skips.py"):
        skip_because("flaky", "a typo or a new reason: add it to REASONS first")
