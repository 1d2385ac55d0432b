"""Compute services as Slurm jobs, against a real single-node Slurm (tests/plugins/slurm_cluster.py).

A deployment with no compute services of its own; every task is run by ``alchemiscale-local
compute`` pools that Slurm jobs start: ``compute --slurm-array 2`` finishes a toy network (both
array tasks claim work), GPU jobs' pools stay on the (fake) GPU Slurm gave each job, ``scancel``
of a running job hands its task back to waiting, the
documented ``examples/slurm/compute.sbatch`` runs as it is (its GPU request overridden: no GPU
here), and a job sbatch refuses is a clear error. Figures (sbatch -> first claimed task, array
completion, scancel -> waiting) are printed and written to ``bench/results/slurm_first_claim.json``;
they are measurements, not asserts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from alchemiscale_local.cli.slurm import SlurmError, submit_array
from alchemiscale_local.deployment import LocalDeployment
from alchemiscale_local.runtimes.toy.network import build_toy_network
from tests.e2e.cli_helpers import export_compute_identity
from tests.plugins.slurm_cluster import DEFAULT_TIME_MIN, SlurmCluster, missing_binaries
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.one_env,
    pytest.mark.e2e,
    pytest.mark.skipif(bool(missing_binaries()), reason="Slurm/munge not installed (CI installs them)"),
]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "slurm_first_claim.json"
EXAMPLE = ROOT / "examples" / "slurm" / "compute.sbatch"
CLI = [sys.executable, "-m", "alchemiscale_local.cli", "compute"]
HEARTBEAT_S = 0.5


@pytest.fixture(scope="module")
def dep():
    deployment = LocalDeployment(
        ephemeral=True,
        neo4j={"launcher": "jar"},
        # no expiry within a test: only a service handing its task back frees it
        api={"service_ttl_s": 600.0, "reaper_interval_s": 1.0},
        compute={"gpus": "none", "cpu_services": 0},
    )
    deployment.start()
    yield deployment
    deployment.stop()


@pytest.fixture(scope="module")
def client(dep):
    return dep.client()


@pytest.fixture(scope="module")
def figures():
    """Measured figures, written once at the end of the module."""
    out: dict[str, float | int | str] = {}
    yield out
    if out:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"name": "slurm_first_claim", **out}, indent=2) + "\n")
        print(f"\nSlurm figures ({RESULTS}): {json.dumps(out)}")


@pytest.fixture(scope="module")
def creds(dep, tmp_path_factory) -> Path:
    """The compute credentials file `identity add --kind compute --export` writes for the jobs."""
    path = tmp_path_factory.mktemp("export") / "compute.json"
    assert export_compute_identity(dep.settings, "slurm-pool", path)["api_url"] == dep.api_url
    return path


@pytest.fixture
def env(slurm_cluster: SlurmCluster, tmp_path) -> dict[str, str]:
    """What the submitting shell has, and sbatch exports to the jobs: this cluster, test settings."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("ALCHEMISCALE_LOCAL_", "SLURM_"))}
    e["SLURM_CONF"] = str(slurm_cluster.conf)
    e["ALCHEMISCALE_LOCAL_CONFIG_FILE"] = str(tmp_path / "absent.toml")
    e["ALCHEMISCALE_LOCAL_DATA_DIR"] = str(tmp_path / "data")
    e["ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S"] = str(HEARTBEAT_S)
    e["ALCHEMISCALE_LOCAL_COMPUTE__IDLE_BACKOFF_S"] = "0.2"
    e["ALCHEMISCALE_LOCAL_COMPUTE__IDLE_BACKOFF_MAX_S"] = "1.0"
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e["COLUMNS"] = "200"
    e.pop("CUDA_VISIBLE_DEVICES", None)
    return e


def submit(client, n: int, scope: str, **toy):
    network = build_toy_network(n, name=f"slurm {scope}", settings=toy)
    net = client.create_network(network, scope)
    tasks = client.create_transformations_tasks(client.get_network_transformations(net))
    client.action_tasks(tasks, net)
    return net, [str(t) for t in tasks]


def slurm_array(env, tmp_path: Path, n: int, *args: str) -> tuple[str, float]:
    """``alchemiscale-local compute --slurm-array n ...`` from ``tmp_path``.

    Returns the array's job id and when the command returned (``time.monotonic()``): sbatch, its
    last step, has then accepted the job.
    """
    proc = subprocess.run(
        [*CLI, "--slurm-array", str(n), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    match = re.search(rf"submitted Slurm job array (\d+) \({n} tasks\)", proc.stdout)
    assert match, proc.stdout
    return match.group(1), time.monotonic()


def job_outputs(directory: Path, job: str) -> dict[str, str]:
    """Array index -> the text of that array task's output file (``%x-%A_%a.out``)."""
    return {p.stem.rsplit("_", 1)[1]: p.read_text(errors="replace") for p in directory.glob(f"*-{job}_*.out")}


def started_at(output: str) -> float:
    """When the batch script began: the UTC time its first line prints."""
    stamp = re.search(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z job ", output, re.M)
    assert stamp, output
    return datetime.fromisoformat(stamp.group(1)[:26] + "+00:00").timestamp()


def jobs_of(cluster: SlurmCluster, job: str) -> list[str]:
    return [j for j in cluster.jobs() if j.split("_")[0] == job]


def wait_jobs_gone(cluster: SlurmCluster, job: str, timeout: float) -> None:
    wait_for(lambda: not jobs_of(cluster, job), timeout, f"job {job} to leave the queue", poll=0.5)


def test_slurm_array_of_two_finishes_the_network(dep, client, slurm_cluster, env, creds, tmp_path, figures):
    """Two array tasks, one service each, 3 tasks each at most: 6 tasks complete only if both work."""
    net, tasks = submit(client, 6, "slurm-e2e-array", duration_s=1.0)
    t0, t0_wall = time.monotonic(), time.time()
    job, submitted = slurm_array(
        env, tmp_path, 2, "--credentials", str(creds), "--cpu-services", "1", "--max-tasks", "3",
        "--scope", "slurm-e2e-array", "--name", "slurm",
    )  # fmt: skip
    try:
        wait_for(lambda: any(s != "waiting" for s in dep.store.get_task_status(tasks)), 120, "a claim")
        first_claim = time.monotonic()
        client.wait(net, timeout=240, visualize=False)
        done = time.monotonic() - t0
        wait_jobs_gone(slurm_cluster, job, 120)  # each service ends after its 3 tasks, then its pool
    except (AssertionError, TimeoutError):
        print(slurm_cluster.logs(), job_outputs(tmp_path, job))
        raise
    ended = time.monotonic() - t0
    assert client.get_network_status(net, visualize=False) == {"complete": 6}

    # Which array task made each result: services are named <name>-j<job id>-a<array index>-cpu-0.
    per_index: dict[str, int] = {}
    for task in tasks:
        creator = client.get_task_results(task, return_as="refs", visualize=False)[0]["creator"]
        match = re.match(r"slurm_j\d+_a(\d+)_cpu_0-", creator)
        assert match, creator
        per_index[match.group(1)] = per_index.get(match.group(1), 0) + 1
    assert per_index == {"0": 3, "1": 3}
    outputs = job_outputs(tmp_path, job)
    assert set(outputs) == {"0", "1"}
    for text in outputs.values():
        assert "every service ended by itself" in text and "3 completed, 0 failed" in text, text
        # --max-time from the job's time left (the partition's default limit) minus the margin
        max_time = re.search(r"^\+ exec .* --max-time (\d+)$", text, re.M)
        assert max_time and 0 < int(max_time.group(1)) <= DEFAULT_TIME_MIN * 60 - 300, text
    # Wall-clock figures. sbatch accepted the job by the earlier of: the command returning, the
    # batch script's first line (Slurm here starts a job before the command has even exited).
    job_start = t0 + min(started_at(text) for text in outputs.values()) - t0_wall
    accepted = min(submitted, job_start)
    figures.update(
        sbatch_to_first_claim_s=round(first_claim - accepted, 2),
        job_start_to_first_claim_s=round(first_claim - job_start, 2),
        cli_start_to_job_start_s=round(job_start - t0, 2),
        cli_start_to_first_claim_s=round(first_claim - t0, 2),
        array_of_2_six_1s_tasks_complete_s=round(done, 2),
        array_of_2_jobs_ended_s=round(ended, 2),
        slurm_version=slurm_cluster.run("sinfo", "--version").stdout.strip(),
    )
    print(
        f"\n`compute --slurm-array 2`: job start {job_start - t0:.2f} s after the command started, "
        f"first claimed task {first_claim - accepted:.2f} s after sbatch ({first_claim - job_start:.2f} s "
        f"after the job started); 6 x 1 s tasks complete {done:.2f} s, both jobs ended {ended:.2f} s"
    )


def test_gpu_jobs_pools_stay_inside_slurms_devices(dep, client, slurm_cluster, env, creds, tmp_path):
    """FAKE GPUs (Slurm's gres/gpu on /dev/null-like device nodes; no GPU exists here): each job
    of the array gets one, Slurm sets CUDA_VISIBLE_DEVICES, and its pool (``--gpus auto``) runs
    one service on exactly that device."""
    if slurm_cluster.gpus < 2:
        pytest.skip("no fake GPU device nodes here (mknod refused)")
    net, tasks = submit(client, 2, "slurm-e2e-gpu", duration_s=0.5)
    job, _ = slurm_array(
        env, tmp_path, 2, "--credentials", str(creds), "--gpus", "auto", "--per-gpu", "1",
        "--max-tasks", "1", "--scope", "slurm-e2e-gpu", "--name", "gpu", "--sbatch-arg=--gres=gpu:1",
    )  # fmt: skip
    try:
        client.wait(net, timeout=180, visualize=False)
        wait_jobs_gone(slurm_cluster, job, 120)
    except (AssertionError, TimeoutError):
        print(slurm_cluster.logs(), job_outputs(tmp_path, job))
        raise
    devices, services = [], set()
    for index, text in job_outputs(tmp_path, job).items():
        # the batch script's first line: its own job id and the device Slurm gave it
        head = re.search(r"^\S+ job (\d+) \(array .* CUDA_VISIBLE_DEVICES=(\S*)$", text, re.M)
        assert head and head.group(2).isdigit(), text  # exactly one device
        jid, device = head.groups()
        name = f"gpu-j{jid}-a{index}-gpu{device}-0"
        assert re.search(rf"^services 1: {name} \[CUDA_VISIBLE_DEVICES={device}\]$", text, re.M), text
        assert "1 completed, 0 failed" in text, text
        devices.append(device)
        services.add(name.replace("-", "_"))
    assert sorted(devices) == ["0", "1"]  # two jobs, two different devices
    # and each device's service made one of the results
    creators = [client.get_task_results(t, return_as="refs", visualize=False)[0]["creator"] for t in tasks]
    assert sorted(c.rsplit("-", 1)[0] for c in creators) == sorted(services), creators


def test_scancel_hands_the_task_back(dep, client, slurm_cluster, env, creds, tmp_path, figures):
    net, tasks = submit(client, 1, "slurm-e2e-cancel", duration_s=600.0)
    task = tasks[0]
    job, _ = slurm_array(
        env, tmp_path, 1, "--credentials", str(creds), "--cpu-services", "1", "--scope", "slurm-e2e-cancel",
        "--name", "cancel",
    )  # fmt: skip

    def holder():
        return next((s for s in dep.compute_services() if task in s["tasks"]), None)

    svc = wait_for(holder, 120, "the job's service to claim the task")
    logdir = tmp_path / "data" / "compute" / "logs"

    def service_logs() -> str:
        return "".join(p.read_text(errors="replace") for p in logdir.glob("*"))

    # scancel while the task runs (a claim answered but not yet started is handed back by the
    # deregistration alone, without the "abandoned" line this test checks)
    wait_for(lambda: f"running {task}" in service_logs(), 60, "the service to start the task")
    t0 = time.monotonic()
    slurm_cluster.run("scancel", job)
    try:
        wait_for(lambda: dep.store.get_task_status([task]) == ["waiting"], 60, "the task back to waiting")
        back = time.monotonic() - t0
        wait_jobs_gone(slurm_cluster, job, 90)
    except AssertionError:
        print(slurm_cluster.logs(), job_outputs(tmp_path, job))
        raise
    gone = time.monotonic() - t0
    # Handed back by the service itself (abandoned, deregistered), not failed, not expired.
    assert svc["identifier"] not in {s["identifier"] for s in dep.compute_services()}
    assert client.get_task_failures(task, return_as="refs", visualize=False) == []
    logs = service_logs()
    assert f"abandoned {task}" in logs and f"deregistered {svc['identifier']}" in logs, logs
    assert "SIGTERM: handing running tasks back" in job_outputs(tmp_path, job)["0"]
    client.set_tasks_status([task], "invalid")  # nobody runs the 600 s toy task afterwards
    figures.update(scancel_to_task_waiting_s=round(back, 2), scancel_to_job_gone_s=round(gone, 2))
    print(f"\nscancel -> task waiting: {back:.2f} s; -> job gone: {gone:.2f} s (heartbeat {HEARTBEAT_S} s)")


def test_documented_example_runs_under_sbatch(dep, client, slurm_cluster, env, creds, tmp_path):
    """examples/slurm/compute.sbatch as shipped; only its GPU and memory requests are overridden."""
    net, tasks = submit(client, 1, "slurm-e2e-example", duration_s=0.2)
    proc = subprocess.run(
        ["sbatch", "--parsable", "--gres=none", "--mem=500M", "--cpus-per-task=1",
         f"--export=ALL,CREDENTIALS={creds}", str(EXAMPLE), "--scope", "slurm-e2e-example", "--max-tasks", "1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    try:
        client.wait(net, timeout=180, visualize=False)
        wait_jobs_gone(slurm_cluster, job, 120)  # --max-tasks 1: the pool ends by itself
    except (AssertionError, TimeoutError):
        print(slurm_cluster.logs(), [p.read_text() for p in tmp_path.glob("*.out")])
        raise
    assert client.get_network_status(net, visualize=False) == {"complete": 1}
    creator = client.get_task_results(tasks[0], return_as="refs", visualize=False)[0]["creator"]
    assert re.match(rf"\w+_j{job}_cpu_0-", creator), creator  # no GPU visible: one CPU service
    (out,) = tmp_path.glob(f"alchemiscale-compute-{job}_*.out")
    text = out.read_text(errors="replace")
    # the time left minus the example's 900 s margin is under 2 x 900 s: half the time left
    assert re.search(r"--gpus auto --per-gpu 1 --max-time \d+ --scope slurm-e2e-example", text), text
    assert "1 completed, 0 failed" in text, text


def test_a_refused_job_is_a_clear_error(slurm_cluster, env, creds, tmp_path):
    with pytest.raises(SlurmError, match=r"sbatch refused the job \(exit 1\): .*invalid partition"):
        submit_array(2, ["--credentials", str(creds)], extra=["--partition=nosuch"])
    assert slurm_cluster.jobs() == {}
    # through the command: one message, no traceback
    bad_template = tmp_path / "bad.sbatch.j2"
    bad_template.write_text("#!/bin/bash\nexec {{ command }} {{ no_such_variable }}\n")
    for extra, message in [
        (["--sbatch-arg=--partition=nosuch"], "invalid partition"),
        (["--slurm-template", str(bad_template)], "'no_such_variable' is undefined"),
    ]:
        proc = subprocess.run(
            [*CLI, "--slurm-array", "2", "--credentials", str(creds), *extra],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert slurm_cluster.jobs() == {}
