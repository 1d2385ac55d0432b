"""Quick start: run a toy network end to end on a local deployment.

Starts Neo4j (Docker if an engine answers, else the embedded jar), the API and
CPU compute services; submits a toy network, actions one task per
transformation, waits with progress and prints the estimates; stops everything.

The ToyProtocol's numbers are NOT chemistry: it sleeps and returns a
deterministic number per transformation so the plumbing can be seen working.
For real free energies install gufe/openfe (conda) and submit their networks.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from alchemiscale_local.deployment import LocalDeployment
from alchemiscale_local.runtimes.toy.network import build_toy_network

console = Console()


def summary(result: Any) -> tuple[float, float | None, str, int]:
    """(estimate, uncertainty, units, number of results) of what get_transformation_results gave.

    With gufe installed that is the protocol's own gufe ProtocolResult (``.get_estimate()``,
    ``.get_uncertainty()``: Quantities); without gufe a plain dict with the same numbers.
    """
    if isinstance(result, dict):
        return result["estimate"], result.get("uncertainty"), result["units"], result["n_results"]
    est, unc = result.get_estimate(), result.get_uncertainty()
    units = str(est.units).replace("kilocalorie_per_mole", "kcal/mol")
    unc_value = None if unc is None else float(unc.to(est.units).magnitude)
    return float(est.magnitude), unc_value, units, result.n_protocol_dag_results


def run(n_transformations: int, repeats: int, duration_s: float, services: int, persistent: bool) -> dict:
    started = time.perf_counter()
    with console.status("starting a local deployment...") as status:
        dep = LocalDeployment(ephemeral=not persistent, compute={"cpu_services": services, "gpus": "none"})
        dep.start(progress=status.update)
    try:
        client = dep.client()
        network = build_toy_network(
            n_transformations,
            name="quickstart toy network",
            settings={"duration_s": duration_s, "repeats": 3},
        )
        net = client.create_network(network, "demo-toy-quickstart")
        transformations = client.get_network_transformations(net)
        tasks = client.create_transformations_tasks([tf for tf in transformations for _ in range(repeats)])
        client.action_tasks(tasks, net)
        client.wait(net, timeout=900)
        counts = client.get_network_status(net, visualize=False)
        table = Table(title="ToyProtocol estimates (a toy: not chemistry)")
        table.add_column("transformation")
        table.add_column("estimate", justify="right")
        table.add_column("uncertainty", justify="right")
        table.add_column("results", justify="right")
        names = {key: doc.get("name") for key, doc in network if doc["__qualname__"] == "Transformation"}
        for tf in transformations:
            name = names.get(str(tf).rsplit("-", 3)[0], str(tf))
            result = client.get_transformation_results(tf)
            if result is None:
                table.add_row(name, "-", "-", "0")
                continue
            est, unc, units, n = summary(result)
            table.add_row(name, f"{est:.2f} {units}", f"{unc:.2f}" if unc is not None else "-", str(n))
        console.print(table)
        elapsed = time.perf_counter() - started
        console.print(f"tasks: {counts}; wall time {elapsed:.1f} s")
        return {"counts": counts, "wall_s": elapsed}
    finally:
        with console.status("stopping..."):
            dep.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transformations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="tasks per transformation")
    parser.add_argument(
        "--duration", type=float, default=0.2, help="seconds each toy repeat sleeps (3 repeats a task)"
    )
    parser.add_argument("--services", type=int, default=2, help="CPU compute services")
    parser.add_argument("--persistent", action="store_true", help="keep the data (default: temporary dirs)")
    args = parser.parse_args()
    run(args.transformations, args.repeats, args.duration, args.services, args.persistent)


if __name__ == "__main__":
    main()
