"""What the tests need from the machine, and what happens when it is missing.

On a developer's machine a missing service or tool (Redis, Chromium, Node, an optional package)
skips the tests that need it, saying what to install. Under CI (`CI` set to anything but empty,
`0`, `false` or `no`, as every CI service sets it) CI has installed all of them (.ci/run), so a
missing one is a broken set-up: `missing` fails the test instead, and a green run means every test
ran. Skips that depend on the machine by design (CUDA present, the demo model built) stay skips.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

FALSE = ("", "0", "false", "no", "off")


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in FALSE


def missing(reason: str) -> NoReturn:
    """Skip (fail under CI) because something the test needs is not there; `reason` says what.

    Works in a test, a fixture or at module level (there, under CI, the module fails to collect)."""
    if under_ci():
        pytest.fail(f"{reason} [CI is set, so this is a failure, not a skip]", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, install: str | None = None) -> ModuleType:
    """`import name`, or `missing(...)` naming what to install (default: `pip install <top package>`)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = install or f"pip install {name.split('.')[0]}"
        missing(f"{name} cannot be imported ({exc}): {hint}")
