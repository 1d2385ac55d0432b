"""The compute pool: N compute services, each pinned to one GPU through CUDA_VISIBLE_DEVICES.

A supervisor thread restarts a service that exits unexpectedly, with backoff. The pool
serves a local deployment (``up``: services read the deployment's settings file) or a
remote one (``alchemiscale-local compute``: the pool writes its compute settings to a
0600 file in its work dir, and a service that ends by itself, at max-tasks or max-time,
is finished rather than restarted).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from alchemiscale_local.compute.deathsig import PARENT_PID_ENV
from alchemiscale_local.compute.service import EXIT_REFUSED
from alchemiscale_local.secretfiles import private_dir, write_private_json
from alchemiscale_local.settings import ComputeSettings, Settings

from .ownership import MARKER_ENV, marker
from .processes import ProcessRecord, find, python_env, python_module, spawn, stop, terminate

log = logging.getLogger(__name__)

MAX_RESTART_BACKOFF_S = 60.0


@dataclass(frozen=True)
class ServiceSpec:
    """One service to run: a name and the CUDA_VISIBLE_DEVICES it gets (None: CPU only)."""

    name: str
    gpu: str | None

    def env(self) -> dict[str, str]:
        # PCI_BUS_ID makes CUDA number devices as nvidia-smi does; "" hides every GPU.
        return {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": self.gpu if self.gpu is not None else "",
        }


def detect_gpus() -> list[str]:
    """GPU indices from ``nvidia-smi -L``; none when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=15, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.split(":")[0].split()[1] for line in out.splitlines() if line.startswith("GPU ")]


#: CUDA_VISIBLE_DEVICES values that make no device visible ("NoDevFiles": Slurm, no GPU given)
NO_DEVICES = ("", "-1", "NoDevFiles")


def visible_list(visible: str | None) -> list[str] | None:
    """The devices a CUDA_VISIBLE_DEVICES value allows; None when it is unset (all)."""
    if visible is None:
        return None
    if visible.strip() in NO_DEVICES:
        return []  # set but empty hides every GPU: the pool must not use any either
    return [v.strip() for v in visible.split(",") if v.strip()]


def plan_services(
    gpus: str,
    per_gpu: int,
    cpu_services: int | None,
    *,
    visible: str | None = None,
    detected: list[str] | None = None,
) -> list[ServiceSpec]:
    """The services to start.

    ``visible`` is the CUDA_VISIBLE_DEVICES the user already set (if any): then device
    numbers in ``gpus`` are positions in that list, and each service gets the entry at
    its position, so the pool never escapes the user's choice.
    """
    user_list = visible_list(visible)
    available = user_list if user_list is not None else (detected if detected is not None else detect_gpus())
    choice = gpus.strip().lower()
    if choice == "auto":
        devices = list(available)
    elif choice in ("none", ""):
        devices = []
    else:
        devices = []
        for part in choice.split(","):
            part = part.strip()
            if not part.isdigit():
                raise ValueError(f"--gpus takes 'auto', 'none' or device numbers like '0,1', not {gpus!r}")
            if user_list is not None:
                index = int(part)
                if index >= len(user_list):
                    raise ValueError(
                        f"device {index} is outside CUDA_VISIBLE_DEVICES={visible!r} "
                        f"({len(user_list)} devices visible)"
                    )
                devices.append(user_list[index])
            else:
                devices.append(part)
    if per_gpu < 1:
        raise ValueError("--per-gpu must be at least 1")
    specs = [ServiceSpec(f"gpu{dev}-{k}", dev) for dev in devices for k in range(per_gpu)]
    n_cpu = cpu_services if cpu_services is not None else (0 if specs else 1)
    specs += [ServiceSpec(f"cpu-{k}", None) for k in range(n_cpu)]
    return specs


def plan_from_settings(compute: ComputeSettings) -> list[ServiceSpec]:
    return plan_services(
        compute.gpus, compute.per_gpu, compute.cpu_services, visible=os.environ.get("CUDA_VISIBLE_DEVICES")
    )


@dataclass
class ServiceRun:
    """One service of a pool: its current process, how often it started, how it ended."""

    spec: ServiceSpec
    name: str
    proc: subprocess.Popen | None = None
    record: ProcessRecord | None = None
    starts: int = 0
    finished: bool = False  # ended by itself (max-tasks, max-time) or stopped: not restarted
    returncode: int | None = None
    stats_files: list[Path] = field(default_factory=list)


class ComputePool:
    """Runs and supervises the services of ``specs`` against the API at ``api_url``.

    Args:
        compute: the services' settings (scopes, limits, back-offs).
        log_dir: where ``compute-<service>.log`` goes.
        settings_file: a deployment's resolved settings, read by each service; without it
            the pool writes ``compute`` to a 0600 file in ``work_dir``, which is then also
            the services' work root (spool, task shared/scratch) and holds their stats.
        name_prefix: put before each service's name (unique across hosts and jobs).
        restart_finished: restart a service that exits 0 too (``up``); otherwise it is finished,
            and a service stops (handing back its task) when the pool's process dies, however.
        deadline: epoch seconds; services claim nothing new after it and none is restarted.
        extra_env: added to each service's environment.
    """

    def __init__(
        self,
        specs: list[ServiceSpec],
        *,
        api_url: str,
        credentials_file: Path,
        compute: ComputeSettings,
        log_dir: Path,
        settings_file: Path | None = None,
        work_dir: Path | None = None,
        name_prefix: str = "",
        restart_finished: bool = True,
        deadline: float | None = None,
        extra_env: dict[str, str] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if settings_file is None and work_dir is None:
            raise ValueError("a compute pool needs a deployment's settings file or a work dir")
        self.specs = specs
        self.api_url = api_url
        self.credentials_file = credentials_file
        self.compute = compute
        self.log_dir = log_dir
        self.settings_file = settings_file
        self.work_dir = work_dir
        self.name_prefix = name_prefix
        self.restart_finished = restart_finished
        self.deadline = deadline
        self.extra_env = dict(extra_env or {})
        self.on_change = on_change
        prefix = f"{name_prefix}-" if name_prefix else ""
        self._runs = {s.name: ServiceRun(s, f"{prefix}{s.name}") for s in specs}
        self._stopping = threading.Event()
        self.done = threading.Event()  # every service has finished (restart_finished=False)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._settings: list[str] = []

    @classmethod
    def for_deployment(
        cls,
        specs: list[ServiceSpec],
        settings: Settings,
        settings_file: Path,
        api_url: str,
        credentials_file: Path,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> ComputePool:
        """The pool of a local deployment (``up``): services restart whenever they exit."""
        return cls(
            specs,
            api_url=api_url,
            credentials_file=credentials_file,
            compute=settings.compute,
            log_dir=settings.log_dir / settings.name,
            settings_file=settings_file,
            extra_env={MARKER_ENV: marker(settings)},
            on_change=on_change,
        )

    # -- paths ----------------------------------------------------------------------------
    def log_path(self, spec: ServiceSpec) -> Path:
        return self.log_dir / f"compute-{self._runs[spec.name].name}.log"

    @property
    def stats_dir(self) -> Path | None:
        return self.work_dir / "stats" if self.work_dir is not None else None

    def _settings_args(self) -> list[str]:
        if self.settings_file is not None:
            args = ["--settings-file", str(self.settings_file)]
            if self.work_dir is not None:
                args += ["--work-dir", str(self.work_dir)]
            return args
        assert self.work_dir is not None
        # Only the compute settings: no secret of any deployment is on this host.
        path = self.work_dir / f"{self.name_prefix or 'pool'}.compute-settings.json"
        write_private_json(path, self.compute.model_dump(mode="json"))
        return ["--compute-settings", str(path), "--work-dir", str(self.work_dir)]

    # -- start and supervise ----------------------------------------------------------------
    def _start_one(self, run: ServiceRun, settings_args: list[str]) -> None:
        spec = run.spec
        argv = python_module(
            "alchemiscale_local.compute",
            *settings_args,
            "--api-url",
            self.api_url,
            "--credentials-file",
            str(self.credentials_file),
            "--name",
            run.name,
            "--log-file",
            str(self.log_path(spec)),
        )
        if self.deadline is not None:
            argv += ["--deadline", repr(self.deadline)]
        if not self.restart_finished:
            argv.append("--stop-with-parent")
        if self.stats_dir is not None:
            stats = self.stats_dir / f"{run.name}.{run.starts}.json"
            run.stats_files.append(stats)
            argv += ["--stats-file", str(stats)]
        stderr_log = self.log_path(spec).with_suffix(".stderr.log")
        proc, record = spawn(
            f"compute-{run.name}",
            argv,
            stderr_log,
            env=python_env({**spec.env(), **self.extra_env, **self._parent_env()}),
        )
        record.log = str(self.log_path(spec))
        with self._lock:
            run.proc, run.record = proc, record
            run.starts += 1

    def _parent_env(self) -> dict[str, str]:
        # With --stop-with-parent: a service whose pool died before it set up PDEATHSIG exits at once.
        return {} if self.restart_finished else {PARENT_PID_ENV: str(os.getpid())}

    def start(self) -> None:
        self._settings = self._settings_args()
        if self.stats_dir is not None:
            private_dir(self.stats_dir)
            for run in self._runs.values():  # what an earlier pool of the same names left
                for old in self.stats_dir.glob(f"{run.name}.*.json"):
                    old.unlink(missing_ok=True)
        for run in self._runs.values():
            self._start_one(run, self._settings)
        self._thread = threading.Thread(target=self._supervise, name="compute-supervisor", daemon=True)
        self._thread.start()

    def records(self) -> list[ProcessRecord]:
        with self._lock:
            return [r.record for r in self._runs.values() if r.record is not None]

    def runs(self) -> list[ServiceRun]:
        with self._lock:
            return list(self._runs.values())

    def specs_by_name(self) -> dict[str, ServiceSpec]:
        return {s.name: s for s in self.specs}

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def _supervise(self) -> None:
        next_start: dict[str, float] = {}
        while not self._stopping.wait(0.5):
            for run in self.runs():
                proc = run.proc
                if run.finished or proc is None or proc.poll() is None:
                    continue
                if proc.returncode == EXIT_REFUSED:
                    log.error("compute service %s: the API refuses its identity; not restarting", run.name)
                    with self._lock:
                        run.finished, run.returncode = True, proc.returncode
                    self._changed()
                    continue
                if (proc.returncode == 0 and not self.restart_finished) or self._past_deadline():
                    # Done by itself (max-tasks, max-time, a signal of its own) or too late to restart.
                    log.info("compute service %s ended with %s", run.name, proc.returncode)
                    with self._lock:
                        run.finished, run.returncode = True, proc.returncode
                    self._changed()
                    continue
                now = time.monotonic()
                if run.name not in next_start:
                    n = run.starts - 1
                    delay = min(self.compute.restart_backoff_s * 2**n, MAX_RESTART_BACKOFF_S)
                    log.warning(
                        "compute service %s exited with %s; restarting in %.1f s",
                        run.name,
                        proc.returncode,
                        delay,
                    )
                    next_start[run.name] = now + delay
                if now >= next_start[run.name] and not self._stopping.is_set():
                    del next_start[run.name]
                    self._start_one(run, self._settings)
                    self._changed()
            if self._runs and all(r.finished for r in self.runs()):
                self.done.set()
                return

    def _changed(self) -> None:
        if self.on_change:
            self.on_change()

    def restarts(self) -> dict[str, int]:
        return {name: max(run.starts - 1, 0) for name, run in self._runs.items() if run.starts > 1}

    # -- stop -----------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """Stop every service; each hands its running task back (deregistering) within ``timeout``.

        Only the services are signalled: each ends its own protocol process and knows why. A
        protocol process that got the SIGTERM first would die as a failed task before its
        service knew it was stopping, and its failure would be pushed.
        """
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        records = self.records()
        protocol_procs = []
        for record in records:
            proc = find(record)
            if proc is not None:
                try:
                    protocol_procs.extend(proc.children(recursive=True))
                except psutil.Error:
                    pass
        stop(records, timeout=timeout, children=False)
        terminate([p for p in protocol_procs if p.is_running()], timeout=5)
        for run in self.runs():
            if run.proc is None:
                continue
            try:
                run.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            with self._lock:
                if not run.finished:
                    run.finished, run.returncode = True, run.proc.returncode
        self.done.set()

    # -- results ----------------------------------------------------------------------------
    def summary(self) -> list[dict[str, Any]]:
        """Per service: completed and failed tasks (over its restarts), restarts, exit status.

        Counts come from the stats file each service writes when it ends; a service killed
        hard (SIGKILL, out of memory) writes none, and its tasks of that run are not counted.
        """
        out = []
        for run in self.runs():
            totals: dict[str, Any] = {"completed": 0, "failed": 0, "first_task_at": None}
            for path in run.stats_files:
                try:
                    data = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                totals["completed"] += int(data.get("completed", 0))
                totals["failed"] += int(data.get("failed", 0))
                first = data.get("first_task_at")
                if first is not None and (totals["first_task_at"] is None or first < totals["first_task_at"]):
                    totals["first_task_at"] = first
            out.append(
                {
                    "name": run.name,
                    "gpu": run.spec.gpu,
                    "pid": run.record.pid if run.record else None,
                    "restarts": max(run.starts - 1, 0),
                    "returncode": run.returncode,
                    **totals,
                }
            )
        return out
