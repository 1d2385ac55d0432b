"""Compute settings real protocols need (alchemiscale's names), what the protocol process is told,
the GPU pinning check, the task workspace's cleanup and the task-file selection policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alchemiscale_local.compute.artifacts import select_files
from alchemiscale_local.compute.devices import pinning_problem, visible_device_count
from alchemiscale_local.compute.executor import TaskExecutor
from alchemiscale_local.compute.workspace import TaskWorkspace
from alchemiscale_local.runtimes.base import ExecutionRequest
from alchemiscale_local.runtimes.pdr import decode_result
from alchemiscale_local.runtimes.toy.outputs import tiny_png
from alchemiscale_local.settings import ArtifactSettings, ComputeSettings, load_settings
from tests.conftest import make_isolated_settings
from tests.unit.test_compute_executor import _inputs

TASK = "Task-0123456789abcdef0123456789abcdef-a-b-c"


# -- settings ---------------------------------------------------------------------------
def test_alchemiscale_names_and_defaults() -> None:
    c = ComputeSettings()
    assert c.n_retries == 3
    assert (c.keep_shared, c.keep_scratch) == (False, False)
    assert (c.shared_basedir, c.scratch_basedir, c.max_time, c.scopes_exclude) == (None, None, None, None)
    assert c.loglevel == "INFO"
    a = c.artifacts
    assert a.enabled and "*.png" in a.keep and "*.npz" in a.keep and "*.json" in a.keep
    assert "*.nc" not in a.keep and "*.chk" not in a.keep  # big trajectories/checkpoints are opt-in
    assert a.max_task_bytes <= a.quota_bytes


def test_compute_settings_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "N_RETRIES": "5",
        "KEEP_SHARED": "true",
        "SHARED_BASEDIR": str(tmp_path / "sh"),
        "MAX_TIME": "3600",
        "SCOPES_EXCLUDE": '["org-secret-*"]',
        "LOGLEVEL": "warn",
        "ARTIFACTS__QUOTA_BYTES": "1000",
        "ARTIFACTS__KEEP": '["*.nc", "*.png"]',
    }
    for name, value in env.items():
        monkeypatch.setenv(f"ALCHEMISCALE_LOCAL_COMPUTE__{name}", value)
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    c = load_settings(config_dir=tmp_path / "cfg").compute
    assert c.n_retries == 5 and c.keep_shared is True and c.max_time == 3600
    assert c.shared_basedir == tmp_path / "sh" and c.scopes_exclude == ["org-secret-*"]
    assert c.loglevel == "WARNING"  # alchemiscale's "WARN" accepted
    assert c.artifacts.quota_bytes == 1000 and c.artifacts.keep == ["*.nc", "*.png"]
    with pytest.raises(ValueError):
        ComputeSettings(n_retries=-1)
    with pytest.raises(ValueError):
        ComputeSettings(loglevel="LOUD")


def test_relative_basedirs_become_absolute(tmp_path: Path) -> None:
    s = make_isolated_settings(tmp_path, compute={"scratch_basedir": "rel/scratch"})
    assert s.compute.scratch_basedir is not None and s.compute.scratch_basedir.is_absolute()


# -- what the protocol process is told ----------------------------------------------------
def test_options_reach_the_child_and_the_runtime(tmp_path: Path) -> None:
    settings = ComputeSettings(keep_scratch=True, shared_basedir=tmp_path / "shared-base", loglevel="DEBUG")
    ws = TaskWorkspace.for_task(settings, tmp_path / "work", "svc", TASK)
    opts = ws.runtime_options(settings.loglevel)
    # shared files must survive execute_DAG while they are still to be uploaded
    assert opts["keep_shared"] is True and opts["keep_scratch"] is True
    outcome = TaskExecutor().run(_inputs(), None, ws.workdir, n_retries=2, options=opts)
    assert outcome.ok
    told = json.loads((ws.workdir / "request.json").read_text())
    assert told["n_retries"] == 2 and told["options"] == opts
    assert ws.shared == tmp_path / "shared-base" / "svc" / "0123456789abcdef0123456789abcdef"
    # the toy wrote where it was told (the gufe toy: in its unit's folder under it)
    assert list(ws.shared.rglob("toy_summary.json")), list(ws.shared.rglob("*"))
    assert "INFO alchemiscale_local.runtimes.toy: toy protocol wrote" in ws.log_file.read_text()
    req = ExecutionRequest(TASK, [], None, tmp_path / "w", options=opts)
    assert (req.shared_dir, req.scratch_dir) == (ws.shared, ws.scratch)
    assert ExecutionRequest(TASK, [], None, tmp_path / "w").shared_dir == tmp_path / "w" / "shared"


def test_keep_flags_and_no_empty_folders_left(tmp_path: Path) -> None:
    def run(**kw: object) -> TaskWorkspace:
        ws = TaskWorkspace.for_task(ComputeSettings(**kw), tmp_path / "work", "svc", TASK)
        for d in (ws.shared / "u", ws.scratch / "u"):
            d.mkdir(parents=True)
            (d / "f").write_text("x")
        ws.log_file.write_text("log")
        ws.cleanup()
        return ws

    run()
    assert not (tmp_path / "work").exists() or list((tmp_path / "work").iterdir()) == []
    ws = run(keep_shared=True)
    assert (ws.shared / "u" / "f").exists() and not ws.scratch.exists() and ws.log_file.exists()
    ws = run(keep_scratch=True, shared_basedir=tmp_path / "sb")
    assert (ws.scratch / "u" / "f").exists() and not ws.shared.exists()
    assert list((tmp_path / "sb").iterdir()) == []  # no empty per-service folder under the basedir


# -- GPU pinning --------------------------------------------------------------------------
def _chain(index: object) -> list:
    engine = {"__class__": "OpenMMEngineSettings", "compute_platform": "cuda", "gpu_device_index": index}
    return [
        ["P-1", {"__qualname__": "RelativeHybridTopologyProtocol", "settings": {"engine_settings": engine}}]
    ]


def test_pinning_problem() -> None:
    assert visible_device_count(None) is None and visible_device_count("") == 0
    assert visible_device_count("3") == 1 and visible_device_count("2,5") == 2
    assert pinning_problem(_chain([1]), None) is None  # not pinned: nothing to keep it inside
    assert pinning_problem(_chain([0]), "3") is None  # device 0 is the pinned GPU
    assert pinning_problem(_chain(None), "3") is None
    assert pinning_problem(_chain([1]), "") is None  # CPU-only service: the platform reports itself
    problem = pinning_problem(_chain([1]), "3")
    assert problem and "engine_settings.gpu_device_index" in problem and "None or [0]" in problem
    assert pinning_problem(_chain([0, 1]), "2,5") is None
    assert pinning_problem(_chain("0,2"), "2,5")
    assert pinning_problem(_chain(["x"]), "3")


def test_a_device_outside_the_pinning_fails_the_task_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child sees the service's CUDA_VISIBLE_DEVICES; a protocol naming device 1 is refused."""
    inputs = _inputs()
    proto = next(d for _, d in inputs["transformation"] if d["__qualname__"] == "ToyProtocol")
    proto["settings"]["engine_settings"] = {"gpu_device_index": [1]}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    outcome = TaskExecutor().run(inputs, None, tmp_path / "w", n_retries=0)
    assert not outcome.ok
    assert "DevicePinningError" in outcome.tracebacks[0]
    assert "CUDA_VISIBLE_DEVICES=7 shows 1 device" in outcome.tracebacks[0]
    failure = next(
        d for _, d in decode_result(outcome.result) if d.get("__qualname__") == "ProtocolUnitFailure"
    )
    assert failure["exception"][0] == "DevicePinningError"
    # the same task in a service pinned to one device, asking for no device: runs
    assert TaskExecutor().run(_inputs(), None, tmp_path / "w2", n_retries=0).ok


# -- selection policy -------------------------------------------------------------------
def _workspace(tmp_path: Path) -> TaskWorkspace:
    ws = TaskWorkspace.for_task(ComputeSettings(), tmp_path / "work", "svc", TASK)
    unit = ws.shared / "shared_Unit-abc_attempt_0"
    unit.mkdir(parents=True)
    (unit / "overlap.png").write_bytes(tiny_png())
    (unit / "structural_analysis.npz").write_bytes(b"n" * 300)
    (unit / "simulation.nc").write_bytes(b"t" * 5000)
    (unit / "checkpoint.chk").write_bytes(b"c" * 100)
    (unit / "bad name.json").write_text("{}")
    (unit / "link.json").symlink_to(unit / "overlap.png")
    ws.permanent.mkdir(parents=True)
    (ws.permanent / "results.json").write_text("{}")
    ws.log_file.write_text("L" * 1000)
    return ws


def test_selection_keeps_small_outputs_and_says_why_not_the_rest(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    sel = select_files(ws, ArtifactSettings())
    kept = {c.path for c in sel.files}
    assert kept == {
        "protocol.log",
        "shared/shared_Unit-abc_attempt_0/overlap.png",
        "shared/shared_Unit-abc_attempt_0/structural_analysis.npz",
        "permanent/results.json",
    }
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in sel.skipped}
    assert reasons["simulation.nc"] == reasons["checkpoint.chk"] == "not in compute.artifacts.keep"
    assert "cannot be stored" in reasons["bad name.json"]
    assert "symlink" in reasons["link.json"]


def test_selection_caps_opt_in_and_log_tail(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    policy = ArtifactSettings(
        keep=["*.nc", "*.chk", "*.npz", "shared/*/overlap.png"],
        exclude=["*.chk"],
        max_file_bytes=4000,
        max_task_bytes=700,
        max_log_bytes=200,
    )
    sel = select_files(ws, policy)
    log = sel.files[0]
    assert (log.path, log.size, log.offset, sel.log_size) == ("protocol.log", 200, 800, 1000)  # the tail
    kept = [c.path.rsplit("/", 1)[-1] for c in sel.files[1:]]
    assert kept == ["overlap.png", "structural_analysis.npz"]  # smallest first, within 700 bytes
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in sel.skipped}
    assert "max_file_bytes" in reasons["simulation.nc"]
    assert reasons["checkpoint.chk"] == "in compute.artifacts.exclude"
    assert sel.total <= policy.max_task_bytes


def test_tiny_png_is_a_png() -> None:
    data = tiny_png(4, 3, seed=9)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    assert tiny_png(seed=1) != tiny_png(seed=2)


def test_keeping_files_never_raises_when_the_api_is_away(tmp_path: Path) -> None:
    """A failed upload is logged and reported; the service then pushes the result as usual."""
    from alchemiscale_local.client import ComputeClient
    from alchemiscale_local.compute.artifacts import upload_task_files
    from alchemiscale_local.runtimes.base import ExecutionOutcome
    from tests.plugins.api_server import free_port

    ws = _workspace(tmp_path)
    client = ComputeClient(f"http://127.0.0.1:{free_port()}", "svc", "key", max_retries=0, connect_timeout=1)
    outcome = ExecutionOutcome(b"", True, "ProtocolDAGResult-" + "1" * 32)
    report = upload_task_files(client, "svc", TASK, outcome, ws, ArtifactSettings())
    assert report.error is not None and "ServerUnavailable" in report.error
    assert report.kept == 0
