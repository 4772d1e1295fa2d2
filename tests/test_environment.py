"""tests/support/environment.py: a missing service or tool skips a test on a developer's machine and
fails it under CI, whether it is found missing in a test, a fixture or at module level."""

from __future__ import annotations

import pytest

from tests.support.services import free_port

NEEDS_A_TOOL = """
from tests.support.environment import missing

def test_needs_a_tool():
    missing("the frobnicator is not installed")
"""

NEEDS_REDIS = """
import pytest
from tests.support.services import existing_or_started_redis

@pytest.fixture
def redis_url(tmp_path):
    yield from existing_or_started_redis(tmp_path)

def test_needs_redis(redis_url):
    pass
"""

NEEDS_A_PACKAGE = """
from tests.support.environment import require_module

require_module("attrgraph_no_such_package")

def test_uses_it():
    pass
"""


@pytest.fixture
def no_redis(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Nothing answers at REDIS_URL, and no redis-server binary is on PATH to start one."""
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty-path")))


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_missing_things_skip_outside_ci(
    ci: str | None, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_redis: None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_tool=NEEDS_A_TOOL, test_redis=NEEDS_REDIS, test_package=NEEDS_A_PACKAGE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=3)
    for reason in ("the frobnicator is not installed", "no Redis answers at redis://", "attrgraph_no_such"):
        result.stdout.fnmatch_lines([f"SKIPPED*{reason}*"])
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_missing_things_fail_under_ci(
    ci: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_redis: None
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_tool=NEEDS_A_TOOL, test_redis=NEEDS_REDIS, test_package=NEEDS_A_PACKAGE)
    # (A collection error alone would stop the run before any test; let the others run too.)
    result = pytester.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors")
    # The test fails, the fixture errors its test, the module fails to collect: nothing is skipped.
    result.assert_outcomes(failed=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    for reason in (
        "the frobnicator is not installed",
        "no Redis answers at redis://",
        "attrgraph_no_such_package cannot be imported",
    ):
        result.stdout.fnmatch_lines([f"*{reason}*CI is set, so this is a failure*"])
