"""The compute pool: N compute services, each pinned to one GPU through CUDA_VISIBLE_DEVICES.

A supervisor thread restarts a service that exits unexpectedly, with backoff.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alchemiscale_local.settings import ComputeSettings, Settings

from .ownership import MARKER_ENV, marker
from .processes import ProcessRecord, python_env, python_module, spawn, stop

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
    user_list = [v.strip() for v in visible.split(",") if v.strip()] if visible else None
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


class ComputePool:
    """Runs and supervises the services of ``specs`` against the API at ``api_url``."""

    def __init__(
        self,
        specs: list[ServiceSpec],
        settings: Settings,
        settings_file: Path,
        api_url: str,
        credentials_file: Path,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.specs = specs
        self.settings = settings
        self.settings_file = settings_file
        self.api_url = api_url
        self.credentials_file = credentials_file
        self.on_change = on_change
        self._procs: dict[str, subprocess.Popen] = {}
        self._records: dict[str, ProcessRecord] = {}
        self._restarts: dict[str, int] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def log_path(self, spec: ServiceSpec) -> Path:
        return self.settings.log_dir / self.settings.name / f"compute-{spec.name}.log"

    def _start_one(self, spec: ServiceSpec) -> None:
        argv = python_module(
            "alchemiscale_local.compute",
            "--settings-file",
            str(self.settings_file),
            "--api-url",
            self.api_url,
            "--credentials-file",
            str(self.credentials_file),
            "--name",
            spec.name,
            "--log-file",
            str(self.log_path(spec)),
        )
        stderr_log = self.log_path(spec).with_suffix(".stderr.log")
        proc, record = spawn(
            f"compute-{spec.name}",
            argv,
            stderr_log,
            env=python_env({**spec.env(), MARKER_ENV: marker(self.settings)}),
        )
        record.log = str(self.log_path(spec))
        with self._lock:
            self._procs[spec.name] = proc
            self._records[spec.name] = record

    def start(self) -> None:
        for spec in self.specs:
            self._start_one(spec)
        self._thread = threading.Thread(target=self._supervise, name="compute-supervisor", daemon=True)
        self._thread.start()

    def records(self) -> list[ProcessRecord]:
        with self._lock:
            return list(self._records.values())

    def specs_by_name(self) -> dict[str, ServiceSpec]:
        return {s.name: s for s in self.specs}

    def _supervise(self) -> None:
        next_start: dict[str, float] = {}
        while not self._stopping.wait(0.5):
            for spec in self.specs:
                with self._lock:
                    proc = self._procs.get(spec.name)
                if proc is None or proc.poll() is None:
                    continue
                now = time.monotonic()
                if spec.name not in next_start:
                    n = self._restarts.get(spec.name, 0)
                    delay = min(self.settings.compute.restart_backoff_s * 2**n, MAX_RESTART_BACKOFF_S)
                    log.warning(
                        "compute service %s exited with %s; restarting in %.1f s",
                        spec.name,
                        proc.returncode,
                        delay,
                    )
                    next_start[spec.name] = now + delay
                if now >= next_start[spec.name] and not self._stopping.is_set():
                    del next_start[spec.name]
                    self._restarts[spec.name] = self._restarts.get(spec.name, 0) + 1
                    self._start_one(spec)
                    if self.on_change:
                        self.on_change()

    def restarts(self) -> dict[str, int]:
        return dict(self._restarts)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        stop(self.records(), timeout=timeout)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
