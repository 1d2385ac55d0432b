"""Run the benchmarks: ``python -m bench.run_all [--quick] [--only a,b] [--out DIR]``.

Quick runs write to ``bench/results/quick`` unless ``--out`` says otherwise.
Every benchmark but ``up`` shares ONE private ephemeral deployment (jar Neo4j, the API,
two CPU compute services that only claim from the idle-gap benchmark's org); ``up``
starts its own deployments, and ``claim`` its own API processes (1 and N workers) on the
shared Neo4j. Each writes ``<out>/<name>.json`` and prints a table; a
summary table closes the run. The exit status is 1 when a benchmark raised, not when a
target was missed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.table import Table

from . import BENCHMARKS, claim, fetch, idle_gap, memory, results, submit, up
from .common import RESULTS_DIR, console, fmt, print_table, write_result
from .context import BenchContext, start_context

MODULES: dict[str, ModuleType] = {
    "memory": memory,
    "submit": submit,
    "fetch": fetch,
    "results": results,
    "idle-gap": idle_gap,
    "claim": claim,
    "up": up,
}
OWN_DEPLOYMENT = frozenset({"up"})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options; ``names`` in the fixed run order."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--only", default=None, help=f"comma list of {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for the JSON files (default bench/results, bench/results/quick with --quick)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    args.names = [n for n in BENCHMARKS if n in names]  # fixed order: memory first (a fresh API)
    if args.out is None:  # a smoke run never overwrites the numbers of a full one
        args.out = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR
    return args


def _one(name: str, ctx: BenchContext | None, quick: bool, out: Path) -> dict[str, Any] | None:
    """Run one benchmark, write its JSON and print its table; None if it raised."""
    console.rule(f"[bold]{name}")
    started = time.perf_counter()
    try:
        result = MODULES[name].run(ctx, quick=quick)
    except Exception:
        console.print(f"[red]{name} failed:[/]\n{traceback.format_exc()}")
        return None
    result["wall_s"] = round(time.perf_counter() - started, 1)
    path = write_result(result, out)
    print_table(result)
    console.print(f"[dim]{path} ({result['wall_s']} s)[/]")
    return result


def summary(results: dict[str, dict[str, Any] | None]) -> Table:
    """One row per benchmark: target, value, verdict, wall time."""
    table = Table(title="benchmark summary", title_justify="left")
    for col in ("benchmark", "target", "value", "met", "wall s"):
        table.add_column(col)
    for name, res in results.items():
        if res is None:
            table.add_row(name, "[red]failed[/]", "-", "-", "-")
            continue
        tgt = res["target"]
        met = "-" if tgt["met"] is None else ("[green]yes[/]" if tgt["met"] else "[red]no[/]")
        table.add_row(name, tgt["description"], fmt(tgt["value"]), met, str(res.get("wall_s", "-")))
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; 1 if any raised."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    done: dict[str, dict[str, Any] | None] = {}
    shared = [n for n in args.names if n not in OWN_DEPLOYMENT]
    if shared:
        with console.status("starting a private deployment (jar Neo4j, API, 2 CPU services)..."):
            ctx = start_context()
        try:
            for name in shared:
                done[name] = _one(name, ctx, args.quick, args.out)
        finally:
            with console.status("stopping the deployment..."):
                ctx.close()
    for name in (n for n in args.names if n in OWN_DEPLOYMENT):
        done[name] = _one(name, None, args.quick, args.out)
    console.print(summary(done))
    return 1 if any(r is None for r in done.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
