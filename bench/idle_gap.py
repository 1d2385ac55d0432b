"""``idle-gap``: how long a real compute service sits idle between pushing a result and
starting its next task, from the services' own log lines ("pushed <task>", "running <task>")."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from alchemiscale_local.runtimes.toy.network import build_toy_network

from .common import percentile, ratio, record, target
from .context import SERVICE_ORG, BenchContext, fresh_scope

NAME = "idle-gap"
TASKS = 60
QUICK_TASKS = 8
DURATION_S = 0.3
LIMIT_MS = 100.0
WAIT_TIMEOUT_S = 600

_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ alchemiscale_local\.compute\.service: "
    r"(running|pushed) (\S+)\s*$"
)


def service_events(path: Path, tasks: set[str]) -> list[tuple[float, str, str]]:
    """``(unix time, 'running'|'pushed', task)`` for our tasks, in log order."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m and m.group(3) in tasks:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((when, m.group(2), m.group(3)))
    return out


def gaps(events: list[tuple[float, str, str]]) -> tuple[list[float], list[float]]:
    """(idle gaps: each 'pushed' to the next 'running'; run times: 'running' to its 'pushed')."""
    idle, busy = [], []
    started: dict[str, float] = {}
    for (t0, kind0, _task0), (t1, kind1, _task1) in zip(events, events[1:], strict=False):
        if kind0 == "pushed" and kind1 == "running":
            idle.append(t1 - t0)
    for when, kind, task in events:
        if kind == "running":
            started[task] = when
        elif task in started:
            busy.append(when - started[task])
    return idle, busy


def run(ctx: BenchContext, quick: bool = False) -> dict[str, Any]:
    """Run toy tasks on the deployment's services and measure push -> next start from their logs."""
    n = QUICK_TASKS if quick else TASKS
    machine = ctx.machine()
    pool = ctx.dep.pool
    if pool is None or not pool.specs:
        raise RuntimeError("the deployment has no compute services")
    client = ctx.client
    scope = fresh_scope(SERVICE_ORG)
    chain = build_toy_network(n, name="bench idle gap", settings={"duration_s": DURATION_S, "repeats": 1})
    net = client.create_network(chain, scope, visualize=False)
    tasks = client.create_transformations_tasks(client.get_network_transformations(net))
    client.action_tasks(tasks, net)
    counts = client.wait(net, timeout=WAIT_TIMEOUT_S, visualize=False)
    wanted = {str(t) for t in tasks}
    idle: list[float] = []
    busy: list[float] = []
    per_service = {}
    for spec in pool.specs:
        events = service_events(pool.log_path(spec), wanted)
        i, b = gaps(events)
        idle += i
        busy += b
        per_service[spec.name] = {"tasks": sum(1 for e in events if e[1] == "running"), "gaps": len(i)}
    p50, p95 = 1000 * percentile(idle, 50), 1000 * percentile(idle, 95)
    return record(
        NAME,
        figure={
            "gap_p50_ms": p50,
            "gap_p95_ms": p95,
            "gap_max_ms": 1000 * max(idle, default=float("nan")),
            "gaps": float(len(idle)),
            "task_run_p50_ms": 1000 * percentile(busy, 50),
        },
        baseline={"ideal_gap_ms": 0.0},
        ratio={"p95_over_limit": ratio(p95, LIMIT_MS)},
        target=target(f"gap p95 < {LIMIT_MS:.0f} ms", LIMIT_MS, p95, p95 < LIMIT_MS),
        parameters={
            "tasks": n,
            "services": len(pool.specs),
            "toy_duration_s": DURATION_S,
            "toy_repeats": 1,
            "source": "service log lines 'pushed <task>' -> next 'running <task>' (ms timestamps)",
        },
        machine=machine,
        quick=quick,
        details={"counts": counts, "per_service": per_service, "gaps_ms": [round(1000 * g, 1) for g in idle]},
    )
