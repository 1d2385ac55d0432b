"""Compute services as Slurm jobs, against a real single-node Slurm (tests/plugins/slurm_cluster.py).

A deployment with no compute services of its own; every task is run by services that Slurm
jobs start: a job array of two finishes a toy network (both array tasks claim work), ``scancel``
of a running job hands its task back to waiting, and a job sbatch refuses is a clear error.
Figures (sbatch -> first claimed task, array completion, scancel -> waiting) are printed and
written to ``bench/results/slurm_first_claim.json``; they are measurements, not asserts.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from alchemiscale_local.cli.slurm import SlurmError, submit_array
from alchemiscale_local.deployment import LocalDeployment
from alchemiscale_local.runtimes.toy.network import build_toy_network
from tests.plugins.slurm_cluster import SlurmCluster, missing_binaries
from tests.plugins.slurm_cluster import slurm_cluster as slurm_cluster  # noqa: F401 - the fixture
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(missing_binaries()), reason="Slurm/munge not installed (CI installs them)"),
]

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "slurm_first_claim.json"
HEARTBEAT_S = 0.5
TTL_S = 6.0
# A batch script that runs one compute service (python -m alchemiscale_local.compute), named
# after its array task so results can be traced to the job that made them.
SERVICE_TEMPLATE = (
    "#!/bin/bash\n"
    "#SBATCH --job-name=als-e2e\n"
    "#SBATCH --output=%x-%A_%a.out\n"
    "#SBATCH --signal=B:TERM@120\n"
    f"exec {sys.executable} -m alchemiscale_local.compute {{{{ compute_args }}}}"
    ' --name "slurm.${SLURM_ARRAY_TASK_ID}"\n'
)


@pytest.fixture(scope="module")
def dep():
    deployment = LocalDeployment(
        ephemeral=True,
        neo4j={"launcher": "jar"},
        api={"service_ttl_s": TTL_S, "reaper_interval_s": 0.5},
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


@pytest.fixture
def job_env(dep, slurm_cluster: SlurmCluster, tmp_path, monkeypatch):
    """The environment sbatch exports to the jobs: settings for the services, under ``tmp_path``."""
    creds = tmp_path / "compute.json"
    creds.write_text(json.dumps({"api_url": dep.api_url, "compute": dep.credentials["compute"]}))
    creds.chmod(0o600)
    env = {
        "ALCHEMISCALE_LOCAL_CONFIG_FILE": str(tmp_path / "no-config.toml"),
        "ALCHEMISCALE_LOCAL_DATA_DIR": str(tmp_path / "jobdata"),
        "ALCHEMISCALE_LOCAL_CONFIG_DIR": str(tmp_path / "jobconfig"),
        "ALCHEMISCALE_LOCAL_LOG_DIR": str(tmp_path / "joblog"),
        "ALCHEMISCALE_LOCAL_RUNTIME_DIR": str(tmp_path / "jobrun"),
        "ALCHEMISCALE_LOCAL_COMPUTE__HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "ALCHEMISCALE_LOCAL_COMPUTE__IDLE_BACKOFF_S": "0.2",
        "ALCHEMISCALE_LOCAL_COMPUTE__IDLE_BACKOFF_MAX_S": "1.0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # the jobs' output files land here
    return {"credentials": creds, "dir": tmp_path, "env": env}


def submit(client, n: int, scope: str, **toy):
    network = build_toy_network(n, name=f"slurm {scope}", settings=toy)
    net = client.create_network(network, scope)
    tasks = client.create_transformations_tasks(client.get_network_transformations(net))
    client.action_tasks(tasks, net)
    return net, [str(t) for t in tasks]


def job_outputs(directory: Path, job: str) -> dict[str, str]:
    """Array index -> the text of that array task's output file (``%x-%A_%a.out``)."""
    return {p.stem.rsplit("_", 1)[1]: p.read_text(errors="replace") for p in directory.glob(f"*-{job}_*.out")}


def wait_jobs_gone(cluster: SlurmCluster, job: str, timeout: float) -> None:
    wait_for(
        lambda: not [j for j in cluster.jobs() if j.split("_")[0] == job],
        timeout,
        f"job {job} to leave the queue",
        poll=0.5,
    )


def test_job_array_of_services_finishes_the_network(
    dep, client, slurm_cluster, job_env, figures, monkeypatch
):
    """Two array tasks, one service each, at most 3 tasks each: 6 tasks complete only if both work."""
    net, tasks = submit(client, 6, "slurm-e2e-array", duration_s=1.0)
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_COMPUTE__MAX_TASKS", "3")
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_COMPUTE__SCOPES", '["slurm-e2e-array"]')
    tpl = job_env["dir"] / "service.sbatch.j2"
    tpl.write_text(SERVICE_TEMPLATE)
    args = ["--api-url", dep.api_url, "--credentials-file", str(job_env["credentials"])]

    t0 = time.monotonic()
    job = submit_array(2, args, template=tpl, extra=["--time=10"])
    wait_for(lambda: client.get_network_status(net, visualize=False).get("running"), 120, "a claimed task")
    first_claim = time.monotonic() - t0
    try:
        client.wait(net, timeout=180, visualize=False)
        wait_jobs_gone(slurm_cluster, job, 120)  # each service stops after its 3 tasks: the jobs end
    except (AssertionError, TimeoutError):
        print(slurm_cluster.logs(), job_outputs(job_env["dir"], job))
        raise
    done = time.monotonic() - t0
    assert client.get_network_status(net, visualize=False) == {"complete": 6}

    # Which array task made each result: the creator is the service's id, "slurm.<index>-<uuid>".
    creators = [client.get_task_results(t, return_as="refs", visualize=False)[0]["creator"] for t in tasks]
    per_index: dict[str, int] = {}
    for creator in creators:
        match = re.match(r"slurm\.(\d+)-", creator)
        assert match, creator
        per_index[match.group(1)] = per_index.get(match.group(1), 0) + 1
    assert per_index == {"0": 3, "1": 3}
    outputs = job_outputs(job_env["dir"], job)
    assert set(outputs) == {"0", "1"}
    assert all("deregistered slurm." in text for text in outputs.values()), outputs
    figures.update(
        sbatch_to_first_claim_s=round(first_claim, 2),
        array_of_2_six_1s_tasks_done_s=round(done, 2),
        slurm_version=slurm_cluster.run("sinfo", "--version").stdout.strip(),
    )
    print(
        f"\nsbatch -> first claimed task: {first_claim:.2f} s; array of 2 done (6 x 1 s tasks): {done:.2f} s"
    )


def test_scancel_hands_the_task_back(dep, client, slurm_cluster, job_env, figures, monkeypatch):
    net, tasks = submit(client, 1, "slurm-e2e-cancel", duration_s=600.0)
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_COMPUTE__SCOPES", '["slurm-e2e-cancel"]')
    tpl = job_env["dir"] / "service.sbatch.j2"
    tpl.write_text(SERVICE_TEMPLATE)
    args = ["--api-url", dep.api_url, "--credentials-file", str(job_env["credentials"])]
    job = submit_array(1, args, template=tpl, extra=["--time=10"])
    task = tasks[0]

    def holder():
        return next((s for s in dep.compute_services() if task in s["tasks"]), None)

    svc = wait_for(holder, 120, "the job's service to claim the task")
    assert svc["identifier"].startswith("slurm.0-")
    t0 = time.monotonic()
    slurm_cluster.run("scancel", job)
    try:
        wait_for(lambda: client.get_tasks_status([task]) == ["waiting"], 60, "the task back to waiting")
        back = time.monotonic() - t0
        wait_jobs_gone(slurm_cluster, job, 90)
    except AssertionError:
        print(slurm_cluster.logs(), job_outputs(job_env["dir"], job))
        raise
    gone = time.monotonic() - t0
    # Handed back by the service itself (abandoned and deregistered), not failed, not expired.
    assert svc["identifier"] not in {s["identifier"] for s in dep.compute_services()}
    text = job_outputs(job_env["dir"], job)["0"]
    assert f"abandoned {task}" in text and f"deregistered {svc['identifier']}" in text, text
    assert client.get_task_failures(task, return_as="refs", visualize=False) == []
    log = (dep.settings.log_dir / dep.settings.name / "api.log").read_text(errors="replace")
    assert f"expired silent compute service {svc['identifier']}" not in log
    client.set_tasks_status([task], "invalid")  # nobody runs the 600 s toy task afterwards
    figures.update(
        scancel_to_task_waiting_s=round(back, 2),
        scancel_to_job_gone_s=round(gone, 2),
        heartbeat_interval_s=HEARTBEAT_S,
    )
    print(f"\nscancel -> task waiting: {back:.2f} s; -> job gone: {gone:.2f} s (heartbeat {HEARTBEAT_S} s)")


def test_a_refused_job_is_a_clear_error(slurm_cluster, job_env):
    with pytest.raises(SlurmError, match=r"sbatch refused the job \(exit 1\): .*invalid partition"):
        submit_array(2, ["--credentials", str(job_env["credentials"])], extra=["--partition=nosuch"])
    assert slurm_cluster.jobs() == {}
