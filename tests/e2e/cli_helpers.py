"""What the CLI e2e modules share: a deployment's state file and processes, seen from its test
environment, and `identity add --kind compute --export FILE` run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from alchemiscale_local.settings import Settings


def export_compute_identity(settings: Settings, name: str, path: Path) -> dict[str, Any]:
    """Create compute identity ``name`` through the CLI, exported to ``path``; its JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALCHEMISCALE_LOCAL_")}
    env.update(
        ALCHEMISCALE_LOCAL_NAME=settings.name,
        ALCHEMISCALE_LOCAL_DATA_DIR=str(settings.data_dir),
        ALCHEMISCALE_LOCAL_CONFIG_DIR=str(settings.config_dir),
        ALCHEMISCALE_LOCAL_LOG_DIR=str(settings.log_dir),
        ALCHEMISCALE_LOCAL_RUNTIME_DIR=str(settings.runtime_dir),
        ALCHEMISCALE_LOCAL_CONFIG_FILE=str(path.parent / "absent.toml"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "alchemiscale_local.cli", "identity", "add", name, "--kind", "compute"]
        + ["--export", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(path.read_text())


def state_of(env: dict[str, str]) -> dict | None:
    """The state file of the deployment the CLI runs with ``env``; None when it is not running."""
    path = Path(env["ALCHEMISCALE_LOCAL_RUNTIME_DIR"]) / "default.state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def deployment_processes(env: dict[str, str]) -> list[psutil.Process]:
    """Every live process whose command line points into this test's directories."""
    roots = [env[f"ALCHEMISCALE_LOCAL_{d}_DIR"] for d in ("DATA", "CONFIG", "LOG", "RUNTIME")]
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and any(r in cmd for r in roots):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        except psutil.Error:
            continue
    return found
