"""A real openfe RBFE network through a whole local deployment, as a user runs it.

One module-scoped run (it takes minutes on 2 cores): jar Neo4j, the API, two CPU compute
services; the network from ``examples/openfe_rbfe.py --tiny`` (benzene->toluene and
benzene->phenol in solvent, RelativeHybridTopologyProtocol, 5 windows, 10 + 20 ps, CPU,
AM1-BCC from AmberTools) goes in through the client; 2 Tasks of one edge and 1 of the other
are actioned; the services claim them and run the real ProtocolDAGs in their child
processes; the small tests below assert on what came back. Estimates, per-task execute
time against action -> complete, and the wall time are written to JSON and printed in the
terminal summary.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openfe.protocols.openmm_rfe", reason="needs openfe (the science environment)")

from alchemiscale_local.deployment import LocalDeployment  # noqa: E402
from tests.conftest import make_isolated_settings  # noqa: E402

# The whole run is one fixture; the first test pays for it.
RUN_TIMEOUT_S = 3000
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(RUN_TIMEOUT_S + 600)]

log = logging.getLogger(__name__)

SCOPE = "science-openfe-rbfe"
TWICE, ONCE = "benzene_to_toluene_solvent", "benzene_to_phenol_solvent"
REPEATS = {TWICE: 2, ONCE: 1}
SERVICES = 2
KCAL = "kilocalorie_per_mole"


@dataclass
class RBFERun:
    settings: Any
    run: Any  # the demo's Run: network, transformations, tasks, counts
    direct: dict[str, Any]  # get_transformation_results(tf) as the client returns it
    pdrs: dict[str, list[Any]]  # return_as="ProtocolDAGResults"
    failures: dict[str, list[Any]]
    transformations: dict[str, Any]  # gufe Transformations fetched back
    timings: list[dict[str, Any]]
    wall_s: float
    outdir: Path
    files: dict[str, list[dict[str, Any]]]  # task -> kept files (get_task_files)
    downloaded: dict[str, list[Path]]  # task -> paths written by download_task_files
    logs: dict[str, str]  # task -> protocol log (get_task_log)
    upload_s: list[float]  # per task: time the service spent keeping files (its log line)


@contextmanager
def _env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dump_logs(settings: Any) -> None:
    for path in sorted((settings.log_dir / settings.name).glob("*.log")):
        print(f"--- {path.name} (tail) ---\n{path.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="module")
def rbfe(tmp_path_factory, openfe_demo, science_summaries) -> RBFERun:
    base = tmp_path_factory.mktemp("openfe-rbfe")
    outdir = base / "results"
    settings = make_isolated_settings(base, compute={"gpus": "none", "cpu_services": SERVICES})
    network = openfe_demo.build_network(tiny=True, platform="CPU")
    started = time.perf_counter()
    # PATH as an activated env has it (AmberTools' sqm), one OpenMM thread per core and service
    with _env(**openfe_demo.service_environment("CPU", SERVICES)), LocalDeployment(settings) as dep:
        try:
            client = dep.client()
            run = openfe_demo.submit_and_wait(client, network, SCOPE, REPEATS, timeout=RUN_TIMEOUT_S)
            names = run.transformations
            direct = {n: client.get_transformation_results(tf, visualize=False) for n, tf in names.items()}
            pdrs = {
                n: client.get_transformation_results(tf, return_as="ProtocolDAGResults", visualize=False)
                for n, tf in names.items()
            }
            failures = {
                n: client.get_transformation_failures(tf, return_as="refs") for n, tf in names.items()
            }
            tfs = {n: client.get_transformation(tf, visualize=False) for n, tf in names.items()}
            timings = openfe_demo.task_timings(client, run)
            tasks = [str(t) for ts in run.tasks.values() for t in ts]
            files = {t: client.get_task_files(t) for t in tasks}
            downloaded = {
                t: client.download_task_files(t, base / "taskfiles" / t.split("-")[1][:12], visualize=False)
                for t in tasks
            }
            logs = {t: client.get_task_log(t) for t in tasks}
        except BaseException:
            _dump_logs(settings)
            raise
    result = RBFERun(
        settings,
        run,
        direct,
        pdrs,
        failures,
        tfs,
        timings,
        time.perf_counter() - started,
        outdir,
        files,
        downloaded,
        logs,
        _upload_seconds(settings),
    )
    science_summaries.append(_write_summary(result, base / "openfe_rbfe_e2e.json"))
    return result


def _upload_seconds(settings: Any) -> list[float]:
    """The services' own measure of the time keeping a task's files took ("kept N file(s) ... in S s")."""
    text = "".join(
        p.read_text(errors="replace") for p in (settings.log_dir / settings.name).glob("compute-*.log*")
    )
    return [float(m) for m in re.findall(r"kept \d+ file\(s\) \(\d+ bytes\) of \S+ in ([0-9.]+) s", text)]


def _write_summary(r: RBFERun, path: Path) -> Path:
    """The estimates (gathered by the protocol), timings and wall time, as JSON and log lines."""
    edges = {}
    lines = [f"openfe RBFE e2e: {len(r.timings)} tasks on {SERVICES} CPU services, wall {r.wall_s:.0f} s"]
    for name, tf in r.transformations.items():
        if not r.pdrs[name]:
            continue
        result = tf.gather(r.pdrs[name])
        est, unc = result.get_estimate().to(KCAL).m, result.get_uncertainty().to(KCAL).m
        indiv = [(e.to(KCAL).m, err.to(KCAL).m) for e, err in result.get_individual_estimates()]
        edges[name] = {
            "class": f"{type(result).__module__}.{type(result).__qualname__}",
            "estimate_kcal_mol": est,
            "uncertainty_kcal_mol": unc,
            "repeats": [{"estimate": e, "mbar_error": err} for e, err in indiv],
            "client_returned": type(r.direct[name]).__qualname__,
        }
        reps = ", ".join(f"{e:.2f} +- {err:.2f}" for e, err in indiv)
        lines.append(f"  {name}: dG = {est:.2f} +- {unc:.2f} kcal/mol (repeats: {reps})")
    for t in r.timings:
        lines.append(
            f"  task {t['task'].split('-')[1][:8]} ({t['edge']}): execute {t['execute_s']:.1f} s, "
            f"action -> complete {t['action_to_complete_s']:.1f} s (queued {t['queued_s']:.1f} s, "
            f"push {t['push_s']:.1f} s); units {t['units']}"
        )
    kept = {t: [(f["path"], f["size"]) for f in fs] for t, fs in r.files.items()}
    for task, entries in kept.items():
        listing = ", ".join(f"{p.rsplit('/', 1)[-1]} {size} B" for p, size in entries)
        lines.append(f"  kept of task {task.split('-')[1][:8]}: {listing}")
    lines.append(f"  keeping files took {', '.join(f'{x:.2f}' for x in r.upload_s)} s per task")
    for line in lines:
        log.info(line)
    path.write_text(
        json.dumps(
            {
                "wall_s": r.wall_s,
                "edges": edges,
                "tasks": r.timings,
                "kept_files": kept,
                "upload_s": r.upload_s,
                "lines": lines,
            },
            indent=2,
        )
    )
    return path


def _finite(quantity: Any) -> bool:
    return math.isfinite(float(quantity.to(KCAL).m))


def test_every_task_completes(rbfe):
    tracebacks = [tb for refs in rbfe.failures.values() for ref in refs for tb in ref.get("tracebacks") or []]
    assert rbfe.run.counts == {"complete": sum(REPEATS.values())}, "\n".join(tracebacks)[-6000:]
    assert {n: len(p) for n, p in rbfe.pdrs.items()} == REPEATS
    assert rbfe.failures == {TWICE: [], ONCE: []}


def test_dag_results_are_real_and_ran_in_the_service_workdir(rbfe):
    """Each result is a gufe ProtocolDAGResult of the openfe DAG (setup, simulation, analysis
    units), named after its Task, and the simulation wrote under the services' work dirs."""
    from gufe import ProtocolDAGResult

    workroot = rbfe.settings.deployment_dir / "compute"
    tasks = {str(t) for ts in rbfe.run.tasks.values() for t in ts}
    for pdrs in rbfe.pdrs.values():
        for pdr in pdrs:
            assert isinstance(pdr, ProtocolDAGResult) and pdr.ok()
            assert pdr.name in tasks
            units = sorted(u.name.split(":")[0] for u in pdr.protocol_unit_results)
            assert units == ["HybridTopology Analysis", "HybridTopology Setup", "HybridTopology Simulation"]
            sim = next(u for u in pdr.protocol_unit_results if "Simulation" in u.name)
            assert Path(sim.outputs["nc"]).is_relative_to(workroot)
    # execute_DAG removed every unit's scratch and shared dir (keep_scratch/keep_shared off)
    assert not [p for p in workroot.rglob("*") if p.name.startswith(("scratch_", "shared_"))]


def test_protocol_gathers_results_with_finite_estimates(rbfe):
    """The DAG results gathered by the edge's own protocol: openfe's result class, a finite
    estimate and uncertainty; the twice-run edge gathers 2 repeats, its sigma their std."""
    import numpy as np
    from openfe.protocols.openmm_rfe import RelativeHybridTopologyProtocolResult

    for name, tf in rbfe.transformations.items():
        result = tf.gather(rbfe.pdrs[name])
        assert isinstance(result, RelativeHybridTopologyProtocolResult)
        assert _finite(result.get_estimate()) and _finite(result.get_uncertainty())
        indiv = result.get_individual_estimates()
        assert len(indiv) == REPEATS[name]
        assert all(_finite(e) and _finite(err) and err.to(KCAL).m > 0 for e, err in indiv)
    twice = rbfe.transformations[TWICE].gather(rbfe.pdrs[TWICE])
    values = [e.to(KCAL).m for e, _ in twice.get_individual_estimates()]
    assert twice.get_uncertainty().to(KCAL).m == pytest.approx(np.std(values))
    assert twice.get_uncertainty().to(KCAL).m > 0  # two independent repeats never agree exactly


def test_get_transformation_results_returns_openfe_result(rbfe):
    """With gufe installed the client returns the protocol's own ProtocolResult (alchemiscale's
    ``Optional[ProtocolResult]``), gathered over every repeat of the edge."""
    from openfe.protocols.openmm_rfe import RelativeHybridTopologyProtocolResult

    for name, result in rbfe.direct.items():
        assert isinstance(result, RelativeHybridTopologyProtocolResult), type(result)
        assert _finite(result.get_estimate()) and _finite(result.get_uncertainty())
        assert len(result.get_individual_estimates()) == REPEATS[name]


def test_demo_report_writes_table_plots_and_json(rbfe, openfe_demo, capsys):
    """The demo's report on these results: a dG table, one overlap/convergence PNG per edge."""
    results = {n: tf.gather(rbfe.pdrs[n]) for n, tf in rbfe.transformations.items()}
    summary = openfe_demo.report(results, rbfe.timings, rbfe.outdir)
    out = capsys.readouterr().out
    for name in REPEATS:
        assert name in out
        png = Path(summary["edges"][name]["plot"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.parent == rbfe.outdir
    saved = json.loads((rbfe.outdir / "results.json").read_text())
    assert [len(saved["edges"][n]["repeats"]) for n in REPEATS] == list(REPEATS.values())
    assert len(saved["tasks"]) == sum(REPEATS.values())


def test_protocol_files_and_log_are_kept_and_come_back_verified(rbfe):
    """Issue 13 on a real openfe edge: each task keeps openfe's analysis outputs (its PNG plots,
    structural_analysis.npz where openfe's analysis wrote one) and its protocol log; they
    download byte-equal to what the service hashed in its shared dir (sha256 recorded at
    upload, checked on download)."""
    import hashlib

    import numpy as np

    analysis = {
        pdr.name: next(u.outputs for u in pdr.protocol_unit_results if "Analysis" in u.name)
        for pdrs in rbfe.pdrs.values()
        for pdr in pdrs
    }
    for task, files in rbfe.files.items():
        names = {f["path"].rsplit("/", 1)[-1] for f in files}
        assert any(n.endswith(".png") for n in names), names
        assert "protocol.log" in names, names
        assert not any(n.endswith((".nc", ".chk")) for n in names), "trajectories are opt-in"
        if "structural_analysis" in analysis[task]:  # else openfe recorded structural_analysis_error
            assert "structural_analysis.npz" in names, names
        assert len(rbfe.downloaded[task]) == len(files)
        by_path = {p.as_posix(): p for p in rbfe.downloaded[task]}
        for entry in files:
            suffix = f"/{entry['pdr_key']}/{entry['path']}"
            (path,) = [p for posix, p in by_path.items() if posix.endswith(suffix)]
            data = path.read_bytes()
            assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
            if path.suffix == ".png":
                assert data[:8] == b"\x89PNG\r\n\x1a\n"
            if path.name == "structural_analysis.npz":
                with np.load(path) as npz:
                    assert npz.files, "an empty structural analysis"
        assert rbfe.logs[task].strip(), "empty protocol log"
    assert len(rbfe.upload_s) >= sum(REPEATS.values())
