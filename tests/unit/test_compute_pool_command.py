"""`alchemiscale-local compute` without an API: names, URLs, the Slurm hand-off, pool supervision.

The supervision tests run real service processes that cannot do any work (no credentials, or
a deadline already passed), which is exactly what makes them crash or end by themselves.
"""

from __future__ import annotations

import json
import stat
import sys
import time
import types
from pathlib import Path

import pytest
from alchemiscale_local.launchers.compute_pool import ComputePool, ServiceSpec
from typer.testing import CliRunner

from alchemiscale_local.cli import app
from alchemiscale_local.cli.compute import check_url, name_prefix, visible_devices
from alchemiscale_local.secretfiles import write_private_json
from alchemiscale_local.settings import ComputeSettings
from tests.waiting import wait_for


@pytest.fixture
def creds(tmp_path) -> Path:
    return write_private_json(
        tmp_path / "creds.json",
        {"api_url": "http://127.0.0.1:9", "compute": {"identifier": "c", "key": "k"}},
    )


def test_name_prefix_is_host_plus_slurm_job_and_array_task(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert name_prefix("box") == "box"
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert name_prefix("box") == "box-j4711-a3"
    assert name_prefix(None).endswith("-j4711-a3")


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles"])
def test_a_visible_list_that_hides_every_gpu_leaves_cpu_services_only(value):
    """A set-but-empty CUDA_VISIBLE_DEVICES (or Slurm's NoDevFiles) is not "unset": no detected GPU."""
    from alchemiscale_local.launchers.compute_pool import plan_services

    assert plan_services("auto", 1, None, visible=value, detected=["0", "1"]) == [ServiceSpec("cpu-0", None)]
    with pytest.raises(ValueError, match="outside CUDA_VISIBLE_DEVICES"):
        plan_services("0", 1, 0, visible=value, detected=["0", "1"])


def test_a_slurm_job_without_cuda_visible_devices_has_no_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert visible_devices() is None  # outside Slurm: every GPU of the host
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert visible_devices() == ""  # the node's GPUs are other jobs'
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert visible_devices() == "1,3"


@pytest.mark.parametrize("url", ["ftp://host", "host:8000", "http://", "https://h:99999", "http://h/?q=1"])
def test_urls_that_are_not_an_api_are_refused(url):
    import typer

    with pytest.raises(typer.Exit):
        check_url(url)


def test_https_and_http_urls_pass():
    check_url("https://gpu-box.lab:8443")
    check_url("http://127.0.0.1:8000/")


class FakeSlurm(types.ModuleType):
    """FAKE of ``alchemiscale_local.cli.slurm`` (the real one is tested against a real Slurm in
    tests/e2e/test_slurm.py): records what the compute command hands it."""

    class SlurmError(Exception):
        pass

    def __init__(self, fail: str | None = None) -> None:
        super().__init__("alchemiscale_local.cli.slurm")
        self.calls: list[tuple] = []
        self.fail = fail

    def submit_array(self, n, compute_argv, *, template=None, sbatch="sbatch", extra=None):
        if self.fail:
            raise self.SlurmError(self.fail)
        self.calls.append((n, list(compute_argv), template, extra))
        return "4242"


def test_slurm_array_submits_its_own_arguments_minus_the_slurm_ones(monkeypatch, creds, tmp_path):
    fake = FakeSlurm()
    monkeypatch.setitem(sys.modules, "alchemiscale_local.cli.slurm", fake)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = [
        "compute", "--credentials", "creds.json", "--cpu-services", "2", "--scope", "a-b-c",
        "--scope", "d-e-f", "--max-tasks", "5", "--work-dir", "w", "--slurm-array", "3",
        "--sbatch-arg=--gres=gpu:2", "--sbatch-arg=--time=10",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4242" in result.output
    (n, argv, template, extra) = fake.calls[0]
    assert n == 3 and template is None and extra == ["--gres=gpu:2", "--time=10"]
    assert argv == [
        "--credentials", str(creds), "--cpu-services", "2", "--max-tasks", "5",
        "--work-dir", str(tmp_path / "w"), "--scope", "a-b-c", "--scope", "d-e-f",
    ]  # fmt: skip
    # What a job runs parses back to the same command (paths absolute: a job starts elsewhere).
    again = runner.invoke(app, ["compute", *argv, "--slurm-array", "1"])
    assert again.exit_code == 0, again.output
    assert fake.calls[1][1] == argv


def test_slurm_refusal_is_one_message(monkeypatch, creds):
    monkeypatch.setitem(sys.modules, "alchemiscale_local.cli.slurm", FakeSlurm(fail="invalid partition"))
    result = CliRunner().invoke(app, ["compute", "--credentials", str(creds), "--slurm-array", "2"])
    assert result.exit_code == 1
    assert "could not submit the job array: invalid partition" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_sbatch_options_without_slurm_array_are_refused(creds):
    result = CliRunner().invoke(app, ["compute", "--credentials", str(creds), "--sbatch-arg=--time=1"])
    assert result.exit_code == 2 and "go with --slurm-array" in result.output


def _pool(tmp_path: Path, creds: Path, **kw) -> ComputePool:
    return ComputePool(
        [ServiceSpec("cpu-0", None)],
        api_url="http://127.0.0.1:9",
        credentials_file=creds,
        compute=ComputeSettings(restart_backoff_s=0.1),
        log_dir=tmp_path / "logs",
        work_dir=tmp_path / "work",
        name_prefix="unit",
        restart_finished=False,
        **kw,
    )


def test_a_crashing_service_is_restarted(tmp_path):
    pool = _pool(tmp_path, tmp_path / "no-such-credentials.json")
    pool.start()
    try:
        wait_for(lambda: pool.runs()[0].starts >= 3, 120, "two restarts of a service that cannot start")
        assert not pool.done.is_set()
    finally:
        pool.stop(timeout=10)
    assert pool.restarts() == {"cpu-0": pool.runs()[0].starts - 1}
    stderr = (tmp_path / "logs" / "compute-unit-cpu-0.stderr.log").read_text()
    assert "no identifier, key found" in stderr  # why it crashed, kept in its log


def test_a_service_that_ends_by_itself_is_finished_not_restarted(tmp_path, creds):
    pool = _pool(tmp_path, creds, deadline=time.time() - 1)  # past: the service ends at once, exit 0
    pool.start()
    try:
        assert pool.done.wait(120), "the pool to see its only service end"
    finally:
        pool.stop(timeout=10)
    (row,) = pool.summary()
    assert (row["name"], row["returncode"], row["restarts"], row["completed"]) == ("unit-cpu-0", 0, 0, 0)
    settings_file = tmp_path / "work" / "unit.compute-settings.json"
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
    assert json.loads(settings_file.read_text())["restart_backoff_s"] == 0.1
