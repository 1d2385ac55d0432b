"""The examples run as a user runs them: the quickstart script and the notebook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALCHEMISCALE_LOCAL_") or k.endswith("CACHE_DIR")
    }
    env["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(tmp_path / "absent.toml")
    env["ALCHEMISCALE_LOCAL_NEO4J__LAUNCHER"] = "jar"
    return env


def test_quickstart_script_prints_estimates(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "--transformations", "4"],
        env=_isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ToyProtocol estimates" in proc.stdout
    assert "'complete': 4" in proc.stdout
    assert proc.stdout.count("kcal/mol") == 4


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    for key, value in _isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in [
        k
        for k in os.environ
        if k.startswith("ALCHEMISCALE_LOCAL_")
        and not k.endswith("CACHE_DIR")
        and k not in ("ALCHEMISCALE_LOCAL_CONFIG_FILE", "ALCHEMISCALE_LOCAL_NEO4J__LAUNCHER")
    ]:
        monkeypatch.delenv(key)
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert outputs.count("kcal/mol") == 6
