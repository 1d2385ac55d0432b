"""End to end: a persistent deployment runs 20 toy tasks (10, restart, 10); what the protocols left
behind is kept by the policy, disk use stays within it, and nothing is left on the compute side.

Real processes throughout: jar Neo4j, the API process, two CPU compute services, protocol children.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alchemiscale_local.cli import app as cli_app
from alchemiscale_local.deployment import LocalDeployment
from alchemiscale_local.runtimes.toy.network import build_toy_network
from tests.conftest import make_isolated_settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

QUOTA = 6000  # bytes: reached part-way through the 20 tasks
TASK_CAP = 4096
KEPT_LINE = re.compile(r"kept (\d+) file\(s\) \((\d+) bytes\) of (\S+) in ([0-9.]+) s")


def _settings(base: Path) -> Any:
    return make_isolated_settings(
        base,
        name="files",
        compute={
            "gpus": "none",
            "cpu_services": 2,
            "n_retries": 0,
            "idle_backoff_s": 0.2,
            "idle_backoff_max_s": 1.0,
            "heartbeat_interval_s": 1.0,
            "artifacts": {"quota_bytes": QUOTA, "max_task_bytes": TASK_CAP},
        },
    )


def _round(base: Path, n: int, label: str) -> tuple[list[str], dict[str, int]]:
    """Start the deployment on ``base`` (its data persists), run ``n`` toy tasks, stop it."""
    with LocalDeployment(_settings(base)) as dep:
        client = dep.client()
        network = build_toy_network(n, name=f"files {label}", settings={"duration_s": 0.05})
        net = client.create_network(network, "e2e-files-persist", visualize=False)
        tasks = client.create_transformations_tasks(client.get_network_transformations(net))
        client.action_tasks(tasks, net)
        counts = client.wait(net, timeout=600, visualize=False)
        return [str(t) for t in tasks], counts


def _taskfile_sizes(objects: Path) -> dict[str, int]:
    root = objects / "taskfiles"
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_twenty_tasks_keep_files_within_the_policy(tmp_path: Path) -> None:
    first, counts1 = _round(tmp_path, 10, "one")
    second, counts2 = _round(tmp_path, 10, "two")  # a restart: the quota is counted from the store
    # the second network holds the same 10 toy transformations, so its status also counts the
    # first round's 10 completed tasks
    assert counts1 == {"complete": 10} and counts2 == {"complete": 20}

    settings = _settings(tmp_path)
    sizes = _taskfile_sizes(settings.data_dir / "objects")
    files = {k: v for k, v in sizes.items() if not k.endswith("/manifest.json")}
    manifests = {k: v for k, v in sizes.items() if k.endswith("/manifest.json")}
    assert len(manifests) == 20  # every task's attempt committed, kept files or not
    assert 0 < sum(files.values()) <= QUOTA  # the policy bounds disk use
    per_attempt: dict[str, int] = {}
    for key, size in files.items():
        attempt = "/".join(key.split("/")[:5])
        per_attempt[attempt] = per_attempt.get(attempt, 0) + size
    assert max(per_attempt.values()) <= TASK_CAP
    assert max(manifests.values()) < 4096

    # the compute side keeps nothing: no task or service folder left behind
    workroot = settings.deployment_dir / "compute"
    leftovers = [p for p in workroot.rglob("*")] if workroot.exists() else []
    assert leftovers == []

    with LocalDeployment(settings) as dep:
        client = dep.client()
        listed = {t: client.get_task_files_manifests(t) for t in first + second}
        assert all(len(m) == 1 for m in listed.values())
        full = [
            # the plain toy writes to shared/, the gufe toy to its unit's folder under it
            t
            for t, (m,) in listed.items()
            if any(
                f["path"].startswith("shared/") and f["path"].endswith("/toy_plot.png") for f in m["files"]
            )
        ]
        refused = [
            t for t, (m,) in listed.items() if any("quota reached" in s["reason"] for s in m["skipped"])
        ]
        assert full and refused  # early tasks kept everything; once the quota was reached, a clear reason
        assert set(full) & set(first)
        reason = next(s["reason"] for s in listed[refused[-1]][0]["skipped"] if "quota" in s["reason"])
        assert "ALCHEMISCALE_LOCAL_COMPUTE__ARTIFACTS__QUOTA_BYTES" in reason
        # `alchemiscale-local logs --task` shows a kept protocol log
        result = CliRunner().invoke(
            cli_app,
            [
                "--name",
                settings.name,
                "--data-dir",
                str(settings.data_dir),
                "--config-dir",
                str(settings.config_dir),
                "logs",
                "--task",
                full[0],
            ],
        )
        assert result.exit_code == 0, result.output
        assert "toy protocol wrote toy_summary.json" in result.output

    # figures for the report: upload time per task from the services' own log lines
    times = []
    for log in (settings.log_dir / settings.name).glob("compute-*.log*"):
        times += [float(m.group(4)) for m in KEPT_LINE.finditer(log.read_text(errors="replace"))]
    assert len(times) == 20
    print(
        json.dumps(
            {
                "taskfiles_bytes": sum(files.values()),
                "manifest_bytes": sum(manifests.values()),
                "tasks_with_all_files": len(full),
                "tasks_refused_by_quota": len(refused),
                "upload_s_median": statistics.median(times),
                "upload_s_max": max(times),
            }
        )
    )
