"""Fixtures for the dashboard's browser tests: a live LocalDeployment and headless Chromium.

Chromium is Debian's package (``/usr/bin/chromium``; ``.ci/run`` installs it), driven by
Playwright's Python package with that executable; Playwright's own browser download is never
used. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("ALCHEMISCALE_LOCAL_CHROMIUM")
        or shutil.which("chromium")
        or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    )


def launch(playwright: Any) -> Any:
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium executable (apt-get install chromium; .ci/run does)")
    return playwright.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)


def start_deployment(api: dict[str, Any] | None = None, **compute: Any):
    """An ephemeral deployment (jar Neo4j, API process, CPU compute services) with fast timings."""
    from alchemiscale_local.deployment import LocalDeployment

    dep = LocalDeployment(
        ephemeral=True,
        neo4j={"launcher": "jar"},
        api={"service_ttl_s": 20.0, "reaper_interval_s": 1.0, **(api or {})},
        compute={
            "gpus": "none",
            "cpu_services": 1,
            "heartbeat_interval_s": 1.0,
            "idle_backoff_s": 0.2,
            "idle_backoff_max_s": 0.5,
            **compute,
        },
    )
    dep.start()
    return dep


@pytest.fixture(scope="module")
def deployment() -> Iterator[Any]:
    dep = start_deployment()
    try:
        yield dep
    finally:
        dep.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = launch(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
