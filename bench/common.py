"""Shared helpers: machine facts, statistics, the result record, JSON output and tables."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
from rich.console import Console
from rich.table import Table

T = TypeVar("T")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
console = Console()


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_facts(neo4j_version: str | None = None) -> dict[str, Any]:
    """What the numbers depend on: CPUs, memory, Python, Neo4j, platform and current load."""
    mem = psutil.virtual_memory()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_total_gb": round(mem.total / 2**30, 2),
        "memory_available_gb": round(mem.available / 2**30, 2),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "neo4j_version": neo4j_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "loadavg": loadavg(),
    }


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else math.nan


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call, by the monotonic performance counter."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or either is not finite."""
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return math.nan
    return a / b


def record(
    name: str,
    *,
    figure: dict[str, float],
    baseline: dict[str, float],
    ratio: dict[str, float],
    target: dict[str, Any],
    parameters: dict[str, Any],
    machine: dict[str, Any],
    quick: bool,
    details: Any = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The one JSON object a benchmark writes.

    ``figure``: the product numbers; ``baseline``: the raw numbers from the same run;
    ``ratio``: the compared quantities; ``target``: ``{"description", "limit", "value", "met"}``.
    """
    return {
        "name": name,
        "quick": quick,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "figure": figure,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "parameters": parameters,
        "machine": {**machine, "loadavg_end": loadavg()},
        "details": details,
        "notes": notes or [],
    }


def target(description: str, limit: float | None, value: float, met: bool | None) -> dict[str, Any]:
    return {"description": description, "limit": limit, "value": value, "met": met}


def _clean(value: Any) -> Any:
    """JSON without NaN/Infinity (they become null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_result(result: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` (default ``bench/results``); return the path."""
    out = out_dir or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result['name']}.json"
    path.write_text(json.dumps(_clean(result), indent=2, allow_nan=False) + "\n")
    return path


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def print_table(result: dict[str, Any]) -> None:
    """A short table: every figure, baseline and ratio entry, and the target."""
    tgt = result["target"]
    met = tgt.get("met")
    verdict = "report only" if met is None else ("[green]met[/]" if met else "[red]missed[/]")
    table = Table(
        title=f"{result['name']}{' (quick)' if result['quick'] else ''}",
        title_justify="left",
        caption=f"target: {tgt['description']} -> {fmt(tgt['value'])}: {verdict}",
        caption_justify="left",
    )
    table.add_column("kind")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for kind in ("figure", "baseline", "ratio"):
        for key, value in result[kind].items():
            table.add_row(kind, key, fmt(value))
    console.print(table)
