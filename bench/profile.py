"""Where the time goes: pyinstrument profiles of the API and the client, one scenario at a time.

    python -m bench.profile [--quick] [--only submit,fetch,results,claim] [--out DIR]

A private deployment is started; a SECOND API (the same app, settings and Neo4j) runs in
this process on its own thread under pyinstrument, with ``anyio.to_thread.run_sync``
made inline so the route bodies run on the profiled thread too (fine for the sequential
scenarios here). The client side is profiled separately in the main thread. Each scenario
writes ``<out>/profile-<scenario>-api.txt`` and ``...-client.txt``.

pyinstrument samples wall time, where a claim is mostly waiting on Neo4j. ``--cpu`` also
writes ``profile-<scenario>-api-cpu.txt``: cProfile on the server thread's own CPU clock
(``time.thread_time``), the work that decides how many claims a core can serve.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import uvicorn
from alchemiscale_local.launchers.processes import free_port
from pyinstrument import Profiler

from alchemiscale_local.api import create_app
from alchemiscale_local.client import AlchemiscaleLocalClient, ComputeClient
from alchemiscale_local.runtimes.toy.network import build_toy_network

from . import claim, results
from .common import RESULTS_DIR, console
from .context import BenchContext, fresh_scope, start_context

SCENARIOS = ("plans", "submit", "fetch", "results", "claim")  # plans first: fresh statistics

#: a hub-anchored form of the state store's claim-candidates query, for comparison only: the
#: index hint pins the start at the hub, and ``e`` has no label, so no Task index can drive the EXISTS
CANDIDATES_HUB_FIRST = """
MATCH (th:TaskHub {_scoped_key: $hub})-[a:ACTIONS]->(t:Task)
USING INDEX th:TaskHub(_scoped_key)
WHERE t.status = 'waiting' AND a.weight > 0 AND ($protocols IS NULL OR t.protocol IN $protocols)
AND NOT EXISTS { (t)-[:EXTENDS]->(e) WHERE e.status <> 'complete' }
RETURN t._scoped_key AS k, t.priority AS p, a.weight AS w
ORDER BY p
LIMIT $limit
"""


async def _inline(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
    return func(*args)


class ProfiledAPI:
    """The deployment's app served from a thread of this process, profiled by pyinstrument."""

    def __init__(self, ctx: BenchContext) -> None:
        conn = ctx.dep.neo4j.connection()
        app = create_app(ctx.dep.settings, neo4j_auth=(conn.uri, conn.user, conn.password))
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.profiler: Profiler | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="profiled-api", daemon=True)

    def _serve(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve()

        asyncio.run(main())

    def __enter__(self) -> ProfiledAPI:
        self._saved = anyio.to_thread.run_sync
        anyio.to_thread.run_sync = _inline  # route bodies run on the server thread
        self._thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        anyio.to_thread.run_sync = self._saved

    def cpu_profile(self, fn: Callable[[], Any]) -> tuple[Any, cProfile.Profile]:
        """Run ``fn`` with the server thread under cProfile on its own CPU clock."""
        prof = cProfile.Profile(time.thread_time)
        done = threading.Event()

        async def toggle(on: bool) -> None:  # a profiler sees only the thread it was enabled on
            if on:
                prof.enable()
            else:
                prof.disable()
            done.set()

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(toggle(True), self.loop)
        done.wait(10)
        done.clear()
        try:
            out = fn()
        finally:
            asyncio.run_coroutine_threadsafe(toggle(False), self.loop)
            done.wait(10)
        return out, prof

    def profile(self, fn: Callable[[], Any]) -> tuple[Any, Profiler, Profiler]:
        """Run ``fn`` (client calls) with the server thread and this thread profiled."""
        server_prof = Profiler(interval=0.0005, async_mode="disabled")
        started = threading.Event()
        stopped = threading.Event()

        async def start_in_loop() -> None:  # the profiler must start on the server's thread
            server_prof.start()
            started.set()

        async def stop_in_loop() -> None:
            server_prof.stop()
            stopped.set()

        loop = self.loop
        asyncio.run_coroutine_threadsafe(start_in_loop(), loop)
        started.wait(10)
        client_prof = Profiler(interval=0.0005)
        client_prof.start()
        try:
            out = fn()
        finally:
            client_prof.stop()
            asyncio.run_coroutine_threadsafe(stop_in_loop(), loop)
            stopped.wait(10)
        return out, server_prof, client_prof


def _save(out: Path, name: str, api: Profiler, client: Profiler) -> None:
    """Write the tree and flat (self time) text profiles of both sides."""
    out.mkdir(parents=True, exist_ok=True)
    for side, prof in (("api", api), ("client", client)):
        path = out / f"profile-{name}-{side}.txt"
        path.write_text(prof.output_text(unicode=True, show_all=False))
        flat = out / f"profile-{name}-{side}-flat.txt"  # self time per function: where the CPU goes
        flat.write_text(prof.output_text(unicode=True, flat=True))
        console.print(f"[dim]{path}, {flat.name}[/]")


def _save_cpu(out: Path, name: str, prof: cProfile.Profile, units: int) -> None:
    """CPU seconds of the API thread, per unit of work, by cumulative and by own time."""
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    text = io.StringIO()
    text.write(
        f"API thread CPU: {total:.3f} s for {units} units = {1000 * total / max(units, 1):.2f} ms each\n"
    )
    text.write("(cProfile adds its own overhead per call: compare shares, not absolute times)\n")
    for key in ("cumulative", "tottime"):
        pstats.Stats(prof, stream=text).sort_stats(key).print_stats(60)
    path = out / f"profile-{name}-api-cpu.txt"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(text.getvalue())
    console.print(f"[dim]{path}: {1000 * total / max(units, 1):.2f} ms API CPU per unit[/]")


def scenario_submit(ctx: BenchContext, api: ProfiledAPI, quick: bool) -> Callable[[], Any]:
    """One large create_network (after a small warm-up)."""
    client = AlchemiscaleLocalClient(api.url, **_user(ctx))
    client.create_network(build_toy_network(10, name="warm"), fresh_scope("benchprof"), visualize=False)
    chain = build_toy_network(50 if quick else 2000, name="bench profile", settings={"duration_s": 0.0})
    scope = fresh_scope("benchprof")
    return lambda: ctx.cache.setdefault(
        "profile_network", client.create_network(chain, scope, visualize=False)
    )


def scenario_fetch(ctx: BenchContext, api: ProfiledAPI, quick: bool) -> Callable[[], Any]:
    """Three get_network calls of the large network."""
    client = AlchemiscaleLocalClient(api.url, **_user(ctx))
    sk = ctx.cache.get("profile_network")
    if sk is None:
        chain = build_toy_network(50 if quick else 2000, name="bench profile", settings={"duration_s": 0.0})
        sk, _ = ctx.dep.store.assemble_network(chain, fresh_scope("benchprof"))
    client.get_network(sk, visualize=False)
    return lambda: [client.get_network(sk, visualize=False) for _ in range(3)]


def scenario_results(ctx: BenchContext, api: ProfiledAPI, quick: bool) -> Callable[[], Any]:
    """get_transformation_results for each transformation of a small network."""
    client = AlchemiscaleLocalClient(api.url, **_user(ctx))
    tfs, _, _ = results.setup(ctx, 5 if quick else 40)
    client.get_transformation_results(tfs[0], visualize=False)
    return lambda: [client.get_transformation_results(tf, visualize=False) for tf in tfs]


def scenario_claim(ctx: BenchContext, api: ProfiledAPI, quick: bool) -> Callable[[], Any]:
    """One claimer: claim + push a tiny result until the hub is empty."""
    creds = ctx.dep.credentials["compute"]
    client = ComputeClient(api.url, creds["identifier"], creds["key"])
    total = 10 if quick else 200
    scope, _ = claim.setup_tasks(ctx, 1, total, "benchprofclaim")
    ident = "bench-profile-claimer"
    client.register(ident, runtimes=["toy"])

    def loop() -> int:
        done = 0
        while True:
            if done % 20 == 0:  # as a service does: a profiled loop may outlast the reaper's TTL
                client.heartbeat(ident)
            pdr_key, data = claim.tiny_result()
            got = client.claim_tasks(ident, 1, [scope])
            if not got or got[0] is None:
                return done
            client.push_result(got[0], ident, pdr_key, True, data)
            done += 1

    return loop


def _plan_lines(plan: dict[str, Any], depth: int = 0) -> list[str]:
    """A PROFILE plan as indented text lines."""
    details = str(plan.get("args", {}).get("Details", ""))[:100]
    line = (
        f"{'  ' * depth}{plan['operatorType']} rows={plan.get('rows')} dbHits={plan.get('dbHits')} {details}"
    )
    return [line] + [x for child in plan.get("children", []) for x in _plan_lines(child, depth + 1)]


def plans(ctx: BenchContext, quick: bool, out: Path) -> None:
    """PROFILE the claim-candidates query (and a hub-first variant) right after tasks are created.

    Planned on fresh statistics, the state store's query has been seen (1 of 4 fresh starts)
    to start from the Task(status) index and run its EXTENDS check as an index scan of ALL
    tasks per candidate: quadratic (900 tasks: ~4 million dbHits, ~0.6 s per claim).
    """
    from alchemiscale_local.backends.statestore import compute as store_compute

    _, hubs = claim.setup_tasks(ctx, 1, 50 if quick else 900, "benchplans")
    lines = []
    # every parameter either query takes (Neo4j ignores the ones a query does not use)
    params = {
        "hub": hubs[0],
        "protocols": None,
        "limit": 32,
        "scopes": [{"org": None, "campaign": None, "project": None}],
        "exclude": [],
        "skip": [],
        "r": 0.5,
    }
    for name, query in (
        ("state store _CANDIDATES", store_compute._CANDIDATES),  # noqa: SLF001
        ("hub-first variant", CANDIDATES_HUB_FIRST),
    ):
        with ctx.driver.session(database=ctx.database) as session:
            summary = session.run("PROFILE " + query, params).consume()
        start = time.perf_counter()
        for _ in range(10):
            ctx.driver.execute_query(query, params, database_=ctx.database)
        lines += [
            f"== {name}: {100 * (time.perf_counter() - start):.1f} ms per query (10 runs)",
            *_plan_lines(summary.profile),
            "",
        ]
    path = out / "profile-plans.txt"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))


def _user(ctx: BenchContext) -> dict[str, str]:
    """The deployment's user identity as client keyword arguments."""
    user = ctx.dep.credentials["user"]
    return {"identifier": user["identifier"], "key": user["key"]}


def main(argv: list[str] | None = None) -> int:
    """Start a deployment, profile each scenario, write the text profiles."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--cpu", action="store_true", help="also a cProfile of the API's CPU time")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    scenarios = {
        "submit": scenario_submit,
        "fetch": scenario_fetch,
        "results": scenario_results,
        "claim": scenario_claim,
    }
    with console.status("starting a private deployment..."):
        ctx = start_context(cpu_services=0)
    try:
        with ProfiledAPI(ctx) as api:
            for name in names:
                console.rule(name)
                if name == "plans":
                    plans(ctx, args.quick, args.out)
                    continue
                fn = scenarios[name](ctx, api, args.quick)
                start = time.perf_counter()
                _, api_prof, client_prof = api.profile(fn)
                console.print(f"{name}: {time.perf_counter() - start:.2f} s (profiled)")
                _save(args.out, name, api_prof, client_prof)
                if args.cpu:
                    units, cpu_prof = api.cpu_profile(scenarios[name](ctx, api, args.quick))
                    _save_cpu(args.out, name, cpu_prof, units if isinstance(units, int) else 1)
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
