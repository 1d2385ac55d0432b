"""``claim``: K concurrent claimers (ComputeClients in threads) claiming and completing tasks.

Each claimer is registered as its own compute service, claims one task at a time and
pushes a tiny valid zstd ProtocolDAGResult (ok=True). The raw baseline is ONE
claim+complete transaction in a loop on the raw driver, against the same Neo4j.

The claimers talk to an API process of this benchmark's own (on the deployment's Neo4j,
started as ``up`` starts it) with 1 worker and then with N (:func:`worker_counts`), so the
two are measured alike and beside the same raw baseline.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
from alchemiscale_local.backends.statestore import hub_key
from alchemiscale_local.launchers.api_server import start_api
from alchemiscale_local.launchers.processes import stop as stop_processes

from alchemiscale_local.client import ComputeClient
from alchemiscale_local.runtimes.pdr import dag_result_entry, encode_result, unit_entry, unit_result_entry
from alchemiscale_local.runtimes.toy.network import build_toy_network
from alchemiscale_local.secretfiles import write_private_json
from alchemiscale_local.settings import APISettings

from . import raw
from .common import percentile, ratio, record, target
from .context import BenchContext, fresh_scope

NAME = "claim"
KS = (1, 4, 16)
QUICK_KS = (1, 4)
NETWORKS = (1, 10)
QUICK_NETWORKS = (1, 2)
TASKS = 2000
QUICK_TASKS = 24
LIMIT = 0.5
HEARTBEAT_S = 5.0


def worker_counts() -> tuple[int, ...]:
    """1 and the deployment default (cores, at most 4; at least 2 so there is a comparison)."""
    return (1, max(2, APISettings().workers))


@dataclass
class BenchAPI:
    """An API process of the benchmark's own: its URL and supervisor pid."""

    url: str
    pid: int
    workers: int


@contextlib.contextmanager
def api_with_workers(ctx: BenchContext, workers: int) -> Iterator[BenchAPI]:
    """The deployment's API settings with ``workers`` workers on a free port, until exit."""
    child = json.loads(ctx.dep.settings_file.read_text())
    child["api"].update(workers=workers, port=0)
    path = ctx.dep.settings_file.with_name(f"bench-api-{workers}w.json")
    write_private_json(path, child)
    settings = ctx.dep.settings.model_copy(deep=True)
    settings.api.workers, settings.api.port = workers, 0
    record, url = start_api(settings, path, timeout=180)
    try:
        # every worker up before timing (each answers /ping with its name on a fresh connection)
        deadline, seen = time.monotonic() + 120, set()
        while workers > 1 and len(seen) < workers and time.monotonic() < deadline:
            seen.add(httpx.get(f"{url}/ping", timeout=30).headers.get("x-alchemiscale-worker"))
        yield BenchAPI(url, record.pid, workers)
    finally:
        stop_processes([record])


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children (an API supervisor and its workers)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tiny_result() -> tuple[str, bytes]:
    """(pdr_key, zstd bytes) of a one-unit ProtocolDAGResult; random unit keys make each unique."""
    ukey, unit = unit_entry("BenchUnit", "bench.claim", {}, "bench unit")
    now = _dt.datetime.now()
    rkey, res = unit_result_entry(ukey, unit, {"value": 0.0}, now, now)
    pkey, pdr = dag_result_entry("bench", [ukey], [rkey], None, None)
    return pkey, encode_result([[ukey, unit], [rkey, res], [pkey, pdr]])


def setup_tasks(ctx: BenchContext, n_networks: int, total: int, org: str) -> tuple[str, list[str]]:
    """``total`` waiting, actioned tasks spread over ``n_networks`` networks in a fresh scope."""
    store = ctx.dep.store
    scope = fresh_scope(org)
    hubs = []
    for i in range(n_networks):
        n = total // n_networks + (1 if i < total % n_networks else 0)
        chain = build_toy_network(n, name=f"bench claim {i}", settings={"duration_s": 0.0, "seed": i})
        sk, _ = store.assemble_network(chain, scope)
        tasks = store.create_tasks(store.get_network_transformations(sk))
        store.action_tasks(tasks, sk)
        hubs.append(hub_key(sk))
    return scope, hubs


@dataclass
class Tally:
    """What the claimer threads share."""

    total: int
    claimed: int = 0
    done: int = 0
    empty_claims: int = 0
    errors: list[str] = field(default_factory=list)
    cycle_s: list[float] = field(default_factory=list)
    claim_s: list[float] = field(default_factory=list)
    push_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def claimer(client: Any, ident: str, scope: str, tally: Tally, go: threading.Barrier) -> None:
    """Claim one task, push its result, repeat until every task is claimed; timings into ``tally``."""
    go.wait()
    while True:
        with tally.lock:
            if tally.claimed >= tally.total:
                return
        pdr_key, data = tiny_result()
        t0 = time.perf_counter()
        got = client.claim_tasks(ident, 1, [scope])
        t1 = time.perf_counter()
        task = got[0] if got else None
        if task is None:
            with tally.lock:
                tally.empty_claims += 1
            time.sleep(0.005)
            continue
        with tally.lock:
            tally.claimed += 1
        client.push_result(task, ident, pdr_key, True, data)
        t2 = time.perf_counter()
        with tally.lock:
            tally.done += 1
            tally.claim_s.append(t1 - t0)
            tally.push_s.append(t2 - t1)
            tally.cycle_s.append(t2 - t0)


def _guarded(fn: Any, tally: Tally, *args: Any) -> None:
    """Run a claimer; an exception is recorded and stops the other claimers."""
    try:
        fn(*args)
    except Exception as exc:  # recorded; the run then reports fewer tasks done
        with tally.lock:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
            tally.claimed = tally.total  # stop the others


def run_product(ctx: BenchContext, api: BenchAPI, k: int, n_networks: int, total: int) -> dict[str, Any]:
    """K registered claimers in threads until ``total`` tasks are complete; rates and latencies."""
    scope, _ = setup_tasks(ctx, n_networks, total, "benchclaim")
    creds = ctx.dep.credentials["compute"]

    def new_client() -> ComputeClient:
        return ComputeClient(api.url, creds["identifier"], creds["key"])

    def cpu() -> dict[str, float]:
        return {**ctx.cpu_seconds(), "api": tree_cpu_seconds(api.pid)}

    clients = [new_client() for _ in range(k)]
    idents = [f"bench-claimer-{i}-{uuid.uuid4().hex[:8]}" for i in range(k)]
    for c, ident in zip(clients, idents, strict=False):
        c.register(ident, runtimes=["toy"])  # also fetches the client's token
    tally = Tally(total)
    go = threading.Barrier(k + 1)
    stop = threading.Event()
    beat_client = new_client()

    def heartbeats() -> None:  # as real services do: the reaper expires silent ones after 30 s
        while not stop.wait(HEARTBEAT_S):
            for ident in idents:
                try:
                    beat_client.heartbeat(ident)
                except Exception as exc:  # noted; a lost registration shows up as claim errors
                    tally.errors.append(f"heartbeat: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=_guarded, args=(claimer, tally, c, i, scope, tally, go), daemon=True)
        for c, i in zip(clients, idents, strict=False)
    ]
    beat = threading.Thread(target=heartbeats, daemon=True)
    for t in threads:
        t.start()
    beat.start()
    cpu_before = cpu()
    go.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu_used = cpu_per_task(cpu_before, cpu(), tally.done, wall)
    stop.set()
    beat.join()
    for c, ident in zip(clients, idents, strict=False):
        c.deregister(ident)
        c.close()
    beat_client.close()
    complete = ctx.dep.store.get_scope_status(scope).get("complete", 0)
    return {
        "k": k,
        "workers": api.workers,
        "networks": n_networks,
        "tasks": tally.done,
        "complete_in_store": complete,
        "wall_s": wall,
        "tasks_per_s": tally.done / wall if wall else float("nan"),
        "cycle_p50_ms": 1000 * percentile(tally.cycle_s, 50),
        "cycle_p95_ms": 1000 * percentile(tally.cycle_s, 95),
        "claim_p50_ms": 1000 * percentile(tally.claim_s, 50),
        "claim_p95_ms": 1000 * percentile(tally.claim_s, 95),
        "push_p50_ms": 1000 * percentile(tally.push_s, 50),
        "push_p95_ms": 1000 * percentile(tally.push_s, 95),
        "empty_claims": tally.empty_claims,
        "errors": tally.errors[:5],
        **cpu_used,
    }


def cpu_per_task(
    before: dict[str, float], after: dict[str, float], done: int, wall: float
) -> dict[str, float]:
    """CPU milliseconds per task of each process, and the share of all cores they used together."""
    used = {k: after[k] - before[k] for k in before}
    out = {f"cpu_ms_per_task_{k}": 1000 * v / done if done else float("nan") for k, v in used.items()}
    out["cpu_busy_share_of_all_cores"] = sum(used.values()) / (wall * (os.cpu_count() or 1))
    return out


def run_raw(ctx: BenchContext, n_networks: int, total: int) -> dict[str, Any]:
    """The raw one-transaction claim+complete loop on the same task shape."""
    _, hubs = setup_tasks(ctx, n_networks, total, "benchclaimraw")
    cpu_before = ctx.cpu_seconds()
    start = time.perf_counter()
    done, lat = raw.claim_complete_loop(ctx.driver, ctx.database, hubs, total)
    wall = time.perf_counter() - start
    return {
        "networks": n_networks,
        "tasks": done,
        "wall_s": wall,
        "tasks_per_s": done / wall,
        "cycle_p50_ms": 1000 * percentile(lat, 50),
        "cycle_p95_ms": 1000 * percentile(lat, 95),
        **cpu_per_task(cpu_before, ctx.cpu_seconds(), done, wall),
    }


def run(
    ctx: BenchContext,
    quick: bool = False,
    *,
    ks: tuple[int, ...] | None = None,
    nets: tuple[int, ...] | None = None,
    total: int | None = None,
    counts: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Raw loop, then K claimers through 1 and N API workers for each network count; the
    target is read at the largest K with N workers. Keywords narrow a run (``main``)."""
    ks = ks or (QUICK_KS if quick else KS)
    nets = nets or (QUICK_NETWORKS if quick else NETWORKS)
    total = total or (QUICK_TASKS if quick else TASKS)
    counts = counts or worker_counts()
    machine = ctx.machine()
    figure: dict[str, float] = {}
    baseline: dict[str, float] = {}
    ratios: dict[str, float] = {}
    details: list[dict[str, Any]] = []
    warm = 5 if quick else 40  # query plans, connection pools, tokens
    run_raw(ctx, 1, warm)
    bases = {}
    for n in nets:
        base = bases[n] = run_raw(ctx, n, total)
        details.append({"kind": "raw", **base})
        baseline[f"raw_tasks_per_s_net{n}"] = base["tasks_per_s"]
        baseline[f"raw_p50_ms_net{n}"] = base["cycle_p50_ms"]
        baseline[f"raw_p95_ms_net{n}"] = base["cycle_p95_ms"]
    for w in counts:
        with api_with_workers(ctx, w) as api:
            run_product(ctx, api, max(ks), 1, warm * w)  # every worker: plans, pools, tokens
            for n in nets:
                for k in ks:
                    res = run_product(ctx, api, k, n, total)
                    details.append({"kind": "client", **res})
                    tag = f"K{k}_net{n}_w{w}"
                    figure[f"tasks_per_s_{tag}"] = res["tasks_per_s"]
                    figure[f"p50_ms_{tag}"] = res["cycle_p50_ms"]
                    figure[f"p95_ms_{tag}"] = res["cycle_p95_ms"]
                    ratios[tag] = ratio(res["tasks_per_s"], bases[n]["tasks_per_s"])
    kmax, wmax = max(ks), max(counts)
    for n in nets if 1 in counts and wmax > 1 else ():  # what the extra workers buy at the largest K
        ratios[f"K{kmax}_net{n}_w{wmax}_vs_w1"] = ratio(
            figure[f"tasks_per_s_K{kmax}_net{n}_w{wmax}"], figure[f"tasks_per_s_K{kmax}_net{n}_w1"]
        )
    worst = min(ratios[f"K{kmax}_net{n}_w{wmax}"] for n in nets)
    return record(
        NAME,
        figure=figure,
        baseline=baseline,
        ratio=ratios,
        target=target(
            f"client rate / raw rate >= {LIMIT}x at K={kmax} with {wmax} API workers",
            LIMIT,
            worst,
            worst >= LIMIT,
        ),
        parameters={
            "claimers": list(ks),
            "networks": list(nets),
            "api_workers": list(counts),
            "tasks": total,
            "latency": "one claim + push cycle (claim and push separately in details)",
            "raw": "one transaction per task: MATCH a waiting task on a random hub LIMIT 1, "
            "CREATE CLAIMS, then CREATE ProtocolDAGResultRef, DELETE CLAIMS, SET complete; "
            "sequential, no object store write",
            "api": "an API process of the benchmark's own per worker count, on the deployment's Neo4j; "
            "cpu_ms_per_task_api counts the supervisor and its workers",
        },
        machine=machine,
        quick=quick,
        details=details,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.claim [--k 16] [--networks 1] [--tasks 600] [--workers 1,2] [--out DIR]``:
    a narrowed claim run on its own private deployment (``make bench`` runs the full one)."""
    import argparse
    from pathlib import Path

    from .common import RESULTS_DIR, print_table, write_result
    from .context import start_context

    def ints(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in text.split(",") if x)

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--k", type=ints, default=None, help="claimer counts, e.g. 16 or 1,4,16")
    parser.add_argument("--networks", type=ints, default=None)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--workers", type=ints, default=None, help="API worker counts, e.g. 1,2")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "claim-narrow")
    args = parser.parse_args(argv)
    ctx = start_context()
    try:
        result = run(ctx, ks=args.k, nets=args.networks, total=args.tasks, counts=args.workers)
    finally:
        ctx.close()
    print_table(result)
    print(write_result(result, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
