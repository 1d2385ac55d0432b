"""``up``: ``alchemiscale-local up --detach`` to ready, then ``down``, against the Neo4j launcher alone.

Both start from empty directories (a fresh Neo4j store) with the jars cached; each
repeat uses new directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from alchemiscale_local.launchers.neo4j.jar import JarLauncher

from alchemiscale_local.settings import load_settings

from .common import machine_facts, median, record, target

NAME = "up"
REPEATS = 2
QUICK_REPEATS = 1
LIMIT_S = 3.0
DEPLOYMENT = "benchup"
READY_TIMEOUT_S = 300.0


def _dirs(base: Path) -> dict[str, Path]:
    return {
        "data_dir": base / "data",
        "config_dir": base / "config",
        "log_dir": base / "log",
        "runtime_dir": base / "run",
    }


def neo4j_alone(base: Path) -> tuple[float, float, str]:
    """(seconds to ready, seconds to stop, Neo4j version) of the jar launcher on its own."""
    settings = load_settings(name=DEPLOYMENT, neo4j={"launcher": "jar"}, **_dirs(base))
    launcher = JarLauncher(settings)
    start = time.perf_counter()
    conn = launcher.start()
    ready = time.perf_counter() - start
    try:
        with conn.driver() as driver:
            rows, _, _ = driver.execute_query("CALL dbms.components() YIELD versions RETURN versions[0] AS v")
            version = rows[0]["v"]
    finally:
        start = time.perf_counter()
        launcher.stop()
    return ready, time.perf_counter() - start, version


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("alchemiscale-local")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "alchemiscale_local.cli"]


def _env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ALCHEMISCALE_LOCAL_NAME": DEPLOYMENT, "ALCHEMISCALE_LOCAL_NEO4J__LAUNCHER": "jar"})
    for key, path in _dirs(base).items():
        env[f"ALCHEMISCALE_LOCAL_{key.upper()}"] = str(path)
    return env


def _ready(state_file: Path) -> bool:
    try:
        state = json.loads(state_file.read_text())
        return httpx.get(f"{state['api_url']}/ping", timeout=1.0).status_code == 200
    except (OSError, ValueError, KeyError, TypeError, httpx.HTTPError):
        return False


def up_down(base: Path) -> tuple[float, float]:
    """(seconds from `up --detach` to state file + /ping answered, seconds of `down`)."""
    env = _env(base)
    state_file = base / "run" / f"{DEPLOYMENT}.state.json"
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [*_cli(), "up", "--detach"], env=env, capture_output=True, text=True, timeout=READY_TIMEOUT_S
        )
        if proc.returncode != 0:
            raise RuntimeError(f"`up --detach` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        while not _ready(state_file):
            if time.perf_counter() - start > READY_TIMEOUT_S:
                raise RuntimeError("the deployment did not become ready")
            time.sleep(0.05)
        ready = time.perf_counter() - start
    finally:
        down_start = time.perf_counter()
        subprocess.run([*_cli(), "down"], env=env, capture_output=True, text=True, timeout=READY_TIMEOUT_S)
        down = time.perf_counter() - down_start
    return ready, down


def run(ctx: Any = None, quick: bool = False) -> dict[str, Any]:
    """Time `up --detach` to ready and `down`, and the jar launcher alone, alternating who goes first."""
    repeats = QUICK_REPEATS if quick else REPEATS
    neo_ready: list[float] = []
    neo_stop: list[float] = []
    up_ready: list[float] = []
    down_s: list[float] = []
    version = None
    machine = machine_facts()
    for rep in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-up-") as tmp:
            base = Path(tmp)
            steps = ["neo4j", "up"] if rep % 2 == 0 else ["up", "neo4j"]
            for step in steps:
                if step == "neo4j":
                    ready, stop, version = neo4j_alone(base / "neo4j-alone")
                    neo_ready.append(ready)
                    neo_stop.append(stop)
                else:
                    ready, down = up_down(base / "up")
                    up_ready.append(ready)
                    down_s.append(down)
    machine["neo4j_version"] = version
    diff = median(up_ready) - median(neo_ready)
    return record(
        NAME,
        figure={"up_to_ready_s": median(up_ready), "down_s": median(down_s)},
        baseline={"neo4j_launcher_to_ready_s": median(neo_ready), "neo4j_launcher_stop_s": median(neo_stop)},
        ratio={"difference_s": diff, "up_over_neo4j": median(up_ready) / median(neo_ready)},
        target=target(f"up - Neo4j alone <= +{LIMIT_S:.0f} s", LIMIT_S, diff, diff <= LIMIT_S),
        parameters={
            "repeats": repeats,
            "statistic": "median",
            "command": "alchemiscale-local up --detach",
            "services": "defaults (gpus auto; one CPU service without GPUs)",
            "ready": "`up --detach` returned, state file written and /ping answered",
            "launcher": "jar, fresh directories each time, jars cached",
        },
        machine=machine,
        quick=quick,
        details={
            "up_ready_s": up_ready,
            "down_s": down_s,
            "neo4j_ready_s": neo_ready,
            "neo4j_stop_s": neo_stop,
        },
    )
