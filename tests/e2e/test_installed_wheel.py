"""Issue 14: the installed wheel runs a deployment whatever the current directory holds.

Builds the wheel from a copy of this tree, installs it with its dependencies (pip cache)
into a fresh venv, and completes the toy network (a toy, not chemistry) with that venv's
Python from two directories: the clone's root (whose `alchemiscale_local/` source folder
lacks `launchers/` and `backends/`) and a directory holding a decoy `alchemiscale_local/`
package. Every process the deployment starts must import the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.one_env, pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".git", "build", "dist", "bench", "tests", "__pycache__"}

DRIVER = """
import sys
import alchemiscale_local
from alchemiscale_local.deployment import LocalDeployment
from alchemiscale_local.runtimes.toy.network import build_toy_network

assert "site-packages" in alchemiscale_local.__file__, alchemiscale_local.__file__
with LocalDeployment(
    ephemeral=True, neo4j={"launcher": "jar"}, compute={"gpus": "none", "cpu_services": 1}
) as dep:
    client = dep.client()
    net = client.create_network(
        build_toy_network(2, name="wheel", settings={"duration_s": 0.1}), "wheel-e2e-toy"
    )
    tasks = client.create_transformations_tasks(client.get_network_transformations(net))
    client.action_tasks(tasks, net)
    client.wait(net, timeout=300, visualize=False)
    print("STATUS", client.get_network_status(net, visualize=False))
"""

DECOY = 'raise ImportError("the decoy alchemiscale_local in the current directory was imported")\n'


def _copy_tree(dest: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP or n.startswith(".venv") or n.endswith(".egg-info")}

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("ALCHEMISCALE_LOCAL_") or k.endswith("CACHE_DIR"))
        and k not in ("PYTHONPATH", "PYTHONSAFEPATH", "VIRTUAL_ENV")
    }
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a fresh venv with the wheel (and its dependencies) installed."""
    work = tmp_path_factory.mktemp("wheel")
    src = _copy_tree(work / "src")
    dist = work / "dist"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        check=True,
        timeout=600,
        env=_clean_env(),
    )
    (wheel,) = dist.glob("alchemiscale_local-*.whl")
    built = time.monotonic()
    venv.create(work / "venv", with_pip=True)
    python = work / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900, env=_clean_env()
    )
    print(
        f"wheel built in {built - started:.1f} s; fresh venv with the wheel and its dependencies "
        f"in {time.monotonic() - built:.1f} s"
    )
    return python


def _run_driver(python: Path, cwd: Path, script: Path) -> str:
    started = time.monotonic()
    proc = subprocess.run(
        [str(python), str(script)], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=900
    )
    print(f"toy network from {cwd}: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-6000:])
    return proc.stdout


def test_wheel_runs_the_toy_network_from_the_clone_root(installed, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    # the clone's root holds the source folder alchemiscale_local/ without launchers/ and backends/
    assert (ROOT / "alchemiscale_local").is_dir() and not (ROOT / "alchemiscale_local" / "launchers").exists()
    out = _run_driver(installed, ROOT, script)
    assert "STATUS {'complete': 2}" in out, out


def test_wheel_runs_the_toy_network_next_to_a_decoy_package(installed, tmp_path):
    script_dir = tmp_path / "driver"
    script_dir.mkdir()
    script = script_dir / "driver.py"
    script.write_text(DRIVER)
    here = tmp_path / "workdir"
    (here / "alchemiscale_local" / "compute").mkdir(parents=True)
    (here / "alchemiscale_local" / "__init__.py").write_text(DECOY)
    (here / "alchemiscale_local" / "compute" / "__init__.py").write_text(DECOY)
    out = _run_driver(installed, here, script)
    assert "STATUS {'complete': 2}" in out, out
