"""The benchmarks run end to end in quick mode and write well-formed JSON.

Runs ``python -m bench.run_all --quick --only submit,fetch,claim`` (one private deployment
with a jar Neo4j, tiny sizes: well under a minute) into a temporary directory, so the
results of a real ``make bench`` in ``bench/results`` are left alone.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import percentile
from bench.idle_gap import gaps, service_events

REPO = Path(__file__).resolve().parents[2]
SUBSET = ("submit", "fetch", "claim")
TOP_KEYS = {"name", "quick", "figure", "baseline", "ratio", "target", "parameters", "machine", "notes"}
MACHINE_KEYS = {"cpu_count", "memory_total_gb", "python", "neo4j_version", "platform", "loadavg"}


def _finite_numbers(section: dict) -> None:
    assert section, "empty section"
    for key, value in section.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value), (key, value)


@pytest.mark.timeout(240)
@pytest.mark.skipif(
    bool(os.environ.get("ALCHEMISCALE_LOCAL_TEST_NEO4J_URI")),
    reason="the benchmarks start their own jar Neo4j",
)
def test_quick_benchmarks_write_complete_json(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ALCHEMISCALE_LOCAL_") or k.endswith("CACHE_DIR")
    }
    env["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(tmp_path / "no-config.toml")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run_all",
            "--quick",
            "--only",
            ",".join(SUBSET),
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in SUBSET:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert TOP_KEYS <= set(data), set(data) ^ TOP_KEYS
        assert data["name"] == name and data["quick"] is True
        for section in ("figure", "baseline", "ratio"):
            _finite_numbers(data[section])
        assert MACHINE_KEYS <= set(data["machine"])
        assert data["machine"]["neo4j_version"].startswith("5.")
        assert isinstance(data["target"]["met"], bool) and math.isfinite(data["target"]["value"])
    claim = json.loads((tmp_path / "claim.json").read_text())
    for row in claim["details"]:  # every run finished all its tasks, and the store agrees
        assert row["tasks"] == claim["parameters"]["tasks"], row
        if row["kind"] == "client":
            assert row["complete_in_store"] == row["tasks"] and not row["errors"], row


def test_idle_gap_log_parsing(tmp_path: Path) -> None:
    log = tmp_path / "compute-cpu-0.log"
    svc = "alchemiscale_local.compute.service"
    log.write_text(
        "\n".join(
            [
                f"2025-01-01 10:00:00,000 INFO {svc}: registered x (CUDA_VISIBLE_DEVICES=)",
                f"2025-01-01 10:00:00,100 INFO {svc}: running Task-a-o-c-p",
                f"2025-01-01 10:00:00,500 INFO {svc}: pushed Task-a-o-c-p",
                f"2025-01-01 10:00:00,501 INFO {svc}: Task-a-o-c-p completed in 0.4 s",
                f"2025-01-01 10:00:00,540 INFO {svc}: running Task-b-o-c-p",
                f"2025-01-01 10:00:01,000 INFO {svc}: pushed Task-b-o-c-p",
                f"2025-01-01 10:00:01,010 INFO {svc}: running Task-other-o-c-p",
            ]
        )
        + "\n"
    )
    events = service_events(log, {"Task-a-o-c-p", "Task-b-o-c-p"})
    idle, busy = gaps(events)
    assert [round(g, 3) for g in idle] == [0.04]
    assert [round(b, 3) for b in busy] == [0.4, 0.46]
    assert percentile([1, 2, 3, 4], 50) == 2.5 and math.isnan(percentile([], 95))
