"""Where the gufe-made fixture documents live, and what a test does when they are missing.

The documents under ``../shared/fixtures/gufe`` were written by real gufe; they are the
independent truth the key checks are measured against. Outside CI a missing folder skips
those tests (a checkout without ``shared/`` next to it); with ``CI`` set it FAILS them,
so a CI run can never pass by silently skipping every real-gufe key check.
``TEST_GUFE_FIXTURES_DIR`` points the suite at another folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_DIR = "TEST_GUFE_FIXTURES_DIR"
GUFE_FIXTURES = Path(
    os.environ.get(ENV_DIR) or Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gufe"
)


def missing(what: str) -> None:
    """Skip the running test, or fail it when ``CI`` is set."""
    msg = f"{what} not found under {GUFE_FIXTURES} (the repo sits next to shared/, or set {ENV_DIR})"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {msg}; the real-gufe key checks must not be skipped", pytrace=False)
    pytest.skip(msg)


def require_dir() -> Path:
    if not GUFE_FIXTURES.is_dir():
        missing("the gufe fixtures folder")
    return GUFE_FIXTURES


def fixture_path(name: str) -> Path:
    """The path of fixture ``name``; skip (fail under CI) when it is absent."""
    path = GUFE_FIXTURES / name
    if not path.is_file():
        missing(f"gufe fixture {name}")
    return path
