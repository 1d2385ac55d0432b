"""Real chemistry quick start: an openfe RBFE network through a local deployment.

Builds benzene, toluene and phenol from SMILES with RDKit (aligned on the shared ring), maps
them with openfe's LomapAtomMapper, and makes solvent-leg Transformations with openfe's
RelativeHybridTopologyProtocol (AM1-BCC charges from AmberTools). Starts a local deployment
(one compute service per GPU with ``--gpus auto``, else CPU services), submits the network,
creates and actions the Tasks, waits, then prints a table of dG +- sigma per edge and saves an
MBAR overlap + forward/reverse convergence plot per edge (PNG) and ``results.json`` in
``--outdir``. Needs openfe and gufe (conda-forge: ``mamba install -c conda-forge openfe``).

    python examples/openfe_rbfe.py --tiny            # 2 edges, 5 windows, 10 + 20 ps: minutes on CPU
    python examples/openfe_rbfe.py --gpus auto       # 3 edges, 11 windows, 50 + 250 ps, 2 tasks each

The ``--tiny`` numbers are far too short to be converged free energies: they show the
machinery with real chemistry, not publishable results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIGANDS = {"benzene": "c1ccccc1", "toluene": "Cc1ccccc1", "phenol": "Oc1ccccc1"}
TINY_EDGES = [("benzene", "toluene"), ("benzene", "phenol")]
EDGES = [*TINY_EDGES, ("toluene", "phenol")]
SEED = 42


# -- the network ------------------------------------------------------------------------------
def build_ligands(names: list[str]) -> dict[str, Any]:
    """SmallMoleculeComponents from SMILES: H-added, embedded, every ring on benzene's ring.

    The hybrid topology takes each end state's coordinates, so the ligands must overlay;
    the substituted ones (``X`` + ``c1ccccc1``: ring atoms 1-6 in ring order) are embedded
    with their ring pinned to benzene's and aligned onto it.
    """
    from gufe import SmallMoleculeComponent
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolAlign
    from rdkit.Geometry import Point3D

    ref = Chem.AddHs(Chem.MolFromSmiles(LIGANDS["benzene"]))
    AllChem.EmbedMolecule(ref, randomSeed=SEED)
    AllChem.MMFFOptimizeMolecule(ref)
    ring = ref.GetConformer().GetPositions()[:6]
    out = {}
    for name in names:
        if name == "benzene":
            mol = ref
        else:
            mol = Chem.AddHs(Chem.MolFromSmiles(LIGANDS[name]))
            pairs = [(1 + i, i) for i in range(6)]
            coord_map = {a: Point3D(*ring[b]) for a, b in pairs}
            if AllChem.EmbedMolecule(mol, coordMap=coord_map, randomSeed=SEED) != 0:
                raise RuntimeError(f"RDKit could not embed {name}")
            rdMolAlign.AlignMol(mol, ref, atomMap=pairs)
        out[name] = SmallMoleculeComponent.from_rdkit(mol, name=name)
    return out


def protocol_settings(tiny: bool, platform: str) -> Any:
    """RelativeHybridTopologyProtocol settings: ``tiny`` (5 windows, 10 + 20 ps) or small (11, 50 + 250 ps).

    Repeats are Tasks here (alchemiscale's way): each DAG runs one repeat and the client
    gathers the repeats of an edge. The solvent padding stays at openfe's default: OpenMM
    refuses a dodecahedral box padded under 1.5 nm with the default 0.9 nm cutoff.
    """
    from openfe.protocols.openmm_rfe import RelativeHybridTopologyProtocol
    from openff.units import unit

    s = RelativeHybridTopologyProtocol.default_settings()
    s.protocol_repeats = 1
    s.engine_settings.compute_platform = platform
    windows = 5 if tiny else 11
    s.lambda_settings.lambda_windows = windows
    s.simulation_settings.n_replicas = windows
    sim = s.simulation_settings
    if tiny:
        sim.minimization_steps = 1000
        sim.equilibration_length = 10 * unit.picosecond
        sim.production_length = 20 * unit.picosecond
        sim.time_per_iteration = 1 * unit.picosecond  # 20 production samples per state for MBAR
        s.output_settings.checkpoint_interval = 10 * unit.picosecond
        # frames for openfe's structural analysis (the default 100 ps writes none in 20 ps)
        s.output_settings.positions_write_frequency = 10 * unit.picosecond
    else:
        sim.equilibration_length = 50 * unit.picosecond
        sim.production_length = 250 * unit.picosecond
        s.output_settings.checkpoint_interval = 50 * unit.picosecond
    return s


def edge_name(a: str, b: str) -> str:
    return f"{a}_to_{b}_solvent"


def build_network(
    tiny: bool = True, platform: str = "CPU", edges: list[tuple[str, str]] | None = None
) -> Any:
    """An AlchemicalNetwork of solvent-leg RBFE Transformations (one per ``edges`` pair)."""
    from gufe import AlchemicalNetwork, ChemicalSystem, SolventComponent, Transformation
    from openfe.protocols.openmm_rfe import RelativeHybridTopologyProtocol
    from openfe.setup import LomapAtomMapper

    edges = edges or (TINY_EDGES if tiny else EDGES)
    ligands = build_ligands(sorted({n for e in edges for n in e}))
    protocol = RelativeHybridTopologyProtocol(protocol_settings(tiny, platform))
    mapper = LomapAtomMapper(time=20, threed=True, max3d=1.0, element_change=False)
    solvent = SolventComponent()
    transformations = []
    for a, b in edges:
        mapping = next(mapper.suggest_mappings(ligands[a], ligands[b]))
        transformations.append(
            Transformation(
                stateA=ChemicalSystem({"ligand": ligands[a], "solvent": solvent}, name=f"{a}_solvent"),
                stateB=ChemicalSystem({"ligand": ligands[b], "solvent": solvent}, name=f"{b}_solvent"),
                mapping=mapping,
                protocol=protocol,
                name=edge_name(a, b),
            )
        )
    return AlchemicalNetwork(edges=transformations, name="openfe rbfe demo (solvent legs)")


# -- through the deployment ------------------------------------------------------------------
@dataclass
class Run:
    """What a submitted network came back with."""

    network: Any  # ScopedKey of the network
    transformations: dict[str, Any]  # edge name -> ScopedKey
    tasks: dict[str, list[Any]]  # edge name -> task ScopedKeys
    actioned_at: float
    counts: dict[str, int] = field(default_factory=dict)


def submit_and_wait(
    client: Any, network: Any, scope: str, repeats: dict[str, int] | int, timeout: float | None = None
) -> Run:
    """Submit ``network``, create ``repeats`` Tasks per edge (by edge name), action them, wait."""
    net = client.create_network(network, scope, visualize=False)
    names = {str(t.key): t.name for t in network.edges}
    tfs = {names[sk.gufe_key]: sk for sk in client.get_network_transformations(net)}
    tasks = {}
    for name, sk in tfs.items():
        count = repeats if isinstance(repeats, int) else repeats.get(name, 1)
        tasks[name] = client.create_tasks(sk, count=count)
    actioned_at = time.time()
    client.action_tasks([t for ts in tasks.values() for t in ts], net)
    run = Run(net, tfs, tasks, actioned_at)
    run.counts = client.wait(net, timeout=timeout)
    return run


def protocol_result(client: Any, transformation: Any) -> Any:
    """The edge's gathered gufe ProtocolResult (None without results).

    ``get_transformation_results`` returns the protocol's own result class when gufe is
    installed; a client that still returns its summary dict gets the DAG results gathered here
    with the protocol's own ``gather``, which is what alchemiscale's client does.
    """
    from gufe import ProtocolResult

    res = client.get_transformation_results(transformation, visualize=False)
    if res is None or isinstance(res, ProtocolResult):
        return res
    pdrs = client.get_transformation_results(transformation, return_as="ProtocolDAGResults", visualize=False)
    return client.get_transformation(transformation, visualize=False).gather(pdrs) if pdrs else None


def task_timings(client: Any, run: Run) -> list[dict[str, Any]]:
    """Per task, in seconds: ``execute_s`` (first unit start to last unit end, from the DAG
    result) against ``action_to_complete_s`` (the action call to the result's record in the
    state store); ``queued_s`` (action to first unit start: waiting for a free service,
    claim, child process start, imports) and ``push_s`` (last unit end to the record:
    serialize, upload, record) split the difference. Same host, same clock."""
    rows = []
    for name, tf in run.transformations.items():
        refs = {r["pdr_key"]: r for r in client.get_transformation_results(tf, return_as="refs")}
        for pdr in client.get_transformation_results(tf, return_as="ProtocolDAGResults", visualize=False):
            units = pdr.protocol_unit_results
            ref = refs[str(pdr.key)]
            start = min(u.start_time for u in units).timestamp()  # naive local datetimes
            end = max(u.end_time for u in units).timestamp()
            rows.append(
                {
                    "edge": name,
                    "task": str(ref["task"]),
                    "execute_s": round(end - start, 1),
                    "action_to_complete_s": round(ref["created_at"] - run.actioned_at, 1),
                    "queued_s": round(start - run.actioned_at, 1),
                    "push_s": round(ref["created_at"] - end, 1),
                    "units": {
                        u.name.split(":")[0]: round((u.end_time - u.start_time).total_seconds(), 1)
                        for u in units
                    },
                }
            )
    return rows


def summarize(result: Any) -> dict[str, Any]:
    """Floats in kcal/mol from an openfe RelativeHybridTopologyProtocolResult."""
    kcal = "kilocalorie_per_mole"
    return {
        "class": f"{type(result).__module__}.{type(result).__qualname__}",
        "estimate_kcal_mol": float(result.get_estimate().to(kcal).m),
        "uncertainty_kcal_mol": float(result.get_uncertainty().to(kcal).m),
        "repeats": [
            {"estimate_kcal_mol": float(e.to(kcal).m), "mbar_error_kcal_mol": float(err.to(kcal).m)}
            for e, err in result.get_individual_estimates()
        ],
    }


# -- report ----------------------------------------------------------------------------------
def plot_edge(result: Any, name: str, path: Path) -> Path:
    """One row per repeat: the MBAR overlap matrix and the forward/reverse convergence of dG."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    overlaps = result.get_overlap_matrices()
    with warnings.catch_warnings():  # a None entry (MBAR failed on a 10 % slice) is drawn as such
        warnings.simplefilter("ignore")
        convergence = result.get_forward_and_reverse_energy_analysis()
    fig, axes = plt.subplots(len(overlaps), 2, figsize=(10, 4.2 * len(overlaps)), squeeze=False)
    for i, (overlap, fr) in enumerate(zip(overlaps, convergence, strict=True)):
        matrix = np.asarray(overlap["matrix"])
        ax = axes[i][0]
        im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        for (r, c), v in np.ndenumerate(matrix):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="k" if v < 0.6 else "w")
        ax.set_title(f"repeat {i}: MBAR overlap (scalar {float(overlap['scalar']):.3f})", fontsize=10)
        ax.set_xlabel("lambda state")
        ax.set_ylabel("lambda state")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax = axes[i][1]
        if fr is None:
            ax.text(0.5, 0.5, "forward/reverse analysis unavailable\n(too few samples)", ha="center")
        else:
            frac = np.asarray(fr["fractions"])
            for key, label in (("forward", "forward"), ("reverse", "reverse")):
                dg = fr[f"{key}_DGs"].to("kilocalorie_per_mole").m
                ddg = fr[f"{key}_dDGs"].to("kilocalorie_per_mole").m
                ax.errorbar(frac, dg, yerr=ddg, marker="o", capsize=3, label=label)
            ax.legend()
        ax.set_title(f"repeat {i}: forward/reverse convergence", fontsize=10)
        ax.set_xlabel("fraction of production samples")
        ax.set_ylabel("dG (kcal/mol)")
    fig.suptitle(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(results: dict[str, Any], timings: list[dict[str, Any]], outdir: Path) -> dict[str, Any]:
    """Print the dG table, write one PNG per edge and ``results.json``; returns what it wrote."""
    from rich.console import Console
    from rich.table import Table

    outdir.mkdir(parents=True, exist_ok=True)
    table = Table(title="openfe RBFE, solvent legs (RelativeHybridTopologyProtocol)")
    table.add_column("edge", no_wrap=True)
    for col in ("dG (kcal/mol)", "sigma", "repeats", "MBAR error"):
        table.add_column(col, justify="right")
    summary: dict[str, Any] = {"edges": {}, "tasks": timings}
    for name, result in results.items():
        if result is None:
            table.add_row(name, "-", "-", "0", "-")
            summary["edges"][name] = None
            continue
        s = summarize(result)
        s["plot"] = str(plot_edge(result, name, outdir / f"{_safe(name)}.png"))
        summary["edges"][name] = s
        table.add_row(
            name,
            f"{s['estimate_kcal_mol']:.2f}",
            f"{s['uncertainty_kcal_mol']:.2f}",
            str(len(s["repeats"])),
            ", ".join(f"{r['mbar_error_kcal_mol']:.2f}" for r in s["repeats"]),
        )
    console = Console()
    console.print(table)
    console.print(
        "sigma: std over the repeats (0 with one repeat: see its MBAR error).\n"
        "A solvent leg alone is not a relative binding or hydration free energy."
    )
    (outdir / "results.json").write_text(json.dumps(summary, indent=2))
    console.print(f"plots and results.json in {outdir}")
    return summary


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# -- main ------------------------------------------------------------------------------------
def plan(gpus: str = "auto", cpu_services: int | None = None, platform: str | None = None) -> tuple[str, int]:
    """The OpenMM platform and number of CPU services for ``gpus``: CUDA on the GPU services
    when any is found, else 2 CPU services (each with its share of the cores)."""
    from alchemiscale_local.launchers.compute_pool import plan_services

    specs = plan_services(gpus, 1, cpu_services, visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    has_gpu = any(s.gpu is not None for s in specs)
    n_cpu = cpu_services if cpu_services is not None else (0 if has_gpu else 2)
    platform = platform or ("CUDA" if has_gpu else "CPU")
    env = service_environment(platform, n_cpu)
    os.environ["PATH"] = env.pop("PATH")
    for key, value in env.items():  # the user's own OPENMM_CPU_THREADS wins
        os.environ.setdefault(key, value)
    return platform, n_cpu


def service_environment(platform: str, cpu_services: int) -> dict[str, str]:
    """What the compute services (children of this process) need in their environment.

    PATH starts with this interpreter's bin dir, as activating its environment would:
    openff's AmberTools wrapper finds ``sqm``/``antechamber`` (AM1-BCC) on PATH only, and a
    venv or conda env used by its python's path is not activated. On CPU, one OpenMM thread
    per core and service: oversubscribed CPU OpenMM slows down sharply.
    """
    path = os.environ.get("PATH", "")
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": path if bindir in path.split(os.pathsep) else os.pathsep.join([bindir, path])}
    if platform == "CPU" and cpu_services:
        env["OPENMM_CPU_THREADS"] = str(max(1, (os.cpu_count() or 1) // cpu_services))
    return env


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="2 edges, 5 windows, 10 + 20 ps (a smoke run)")
    parser.add_argument("--gpus", default="auto", help="'auto', 'none' or device numbers like '0,1'")
    parser.add_argument(
        "--cpu-services", type=int, default=None, help="CPU services (default: 2 without GPUs)"
    )
    parser.add_argument(
        "--platform", default=None, help="OpenMM platform (default: CUDA with GPUs, else CPU)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="tasks per edge (default: tiny 1, else 2)")
    parser.add_argument("--outdir", type=Path, default=Path("openfe_rbfe_results"))
    parser.add_argument("--persistent", action="store_true", help="keep the deployment's data")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)

    from rich.console import Console

    from alchemiscale_local.deployment import LocalDeployment

    console = Console()
    platform, cpu_services = plan(args.gpus, args.cpu_services, args.platform)
    started = time.perf_counter()
    with console.status("building the network (RDKit, Lomap)..."):
        network = build_network(tiny=args.tiny, platform=platform)
    console.print(f"{len(network.edges)} transformations, OpenMM platform {platform}")
    with console.status("starting a local deployment...") as status:
        dep = LocalDeployment(
            ephemeral=not args.persistent, compute={"gpus": args.gpus, "cpu_services": cpu_services}
        )
        dep.start(progress=status.update)
    try:
        client = dep.client()
        repeats = args.repeats if args.repeats is not None else (1 if args.tiny else 2)
        run = submit_and_wait(client, network, "demo-openfe-rbfe", repeats, timeout=args.timeout)
        console.print(f"tasks: {run.counts}")
        results = {name: protocol_result(client, tf) for name, tf in run.transformations.items()}
        timings = task_timings(client, run)
        summary = report(results, timings, args.outdir)
        for t in timings:
            console.print(
                f"  {t['edge']}: execute {t['execute_s']:.0f} s, action -> complete "
                f"{t['action_to_complete_s']:.0f} s (queued {t['queued_s']:.0f} s, push {t['push_s']:.0f} s)"
            )
        summary["wall_s"] = round(time.perf_counter() - started, 1)
        console.print(f"wall time {summary['wall_s']:.0f} s")
        return summary
    finally:
        with console.status("stopping..."):
            dep.stop()


if __name__ == "__main__":
    main()
