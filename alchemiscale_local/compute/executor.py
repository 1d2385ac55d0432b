"""Run one task in a child process and always come back with an outcome."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from alchemiscale_local.runtimes.base import ExecutionOutcome, failed_outcome

from . import child
from .deathsig import PARENT_PID_ENV

log = logging.getLogger(__name__)


#: how a protocol process ends when a stop reached it first
STOP_SIGNALS = (-signal.SIGTERM, -signal.SIGINT)
#: how long such an ending waits for the service's own stop before it counts as a failure
STOP_SIGNAL_GRACE_S = 5.0


class Abandoned(Exception):
    """The task was given up because the service is stopping."""


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class TaskExecutor:
    """Spawns ``alchemiscale_local.compute.child`` for a task and collects its outcome."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._abandon = threading.Event()

    def abandon(self) -> None:
        """Stop the running protocol process (from a signal handler or another thread)."""
        self._abandon.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def run(
        self,
        inputs: dict[str, Any],
        extends: bytes | None,
        workdir: Path,
        *,
        n_retries: int,
        options: dict[str, Any] | None = None,
    ) -> ExecutionOutcome:
        # An abandon() that came before the process exists (a SIGTERM while the service fetched
        # the inputs) applies to this run: starting it anyway would run the task to its end
        # with nobody heartbeating for it.
        if self._abandon.is_set():
            self._abandon.clear()
            raise Abandoned(inputs["task"])
        workdir.mkdir(parents=True, exist_ok=True)
        spec = {
            "task_key": inputs["task"],
            "transformation": inputs["transformation"],
            "protocol": inputs["protocol"],
            "protocol_module": inputs["protocol_module"],
            "n_retries": n_retries,
            "options": options or {},
        }
        (workdir / child.REQUEST).write_text(json.dumps(spec))
        if extends is not None:
            (workdir / child.EXTENDS).write_bytes(extends)
        log_path = workdir / "protocol.log"
        with open(log_path, "wb") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "alchemiscale_local.compute.child", str(workdir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                # Same process group as the service (no new session): `down` and signals reach it;
                # the pid lets the child detect a parent that died before its PDEATHSIG was set.
                env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
            )
            if self._abandon.is_set():  # abandon() ran between the check above and Popen
                self._proc.terminate()
            returncode = self._proc.wait()
            self._proc = None
        if returncode in STOP_SIGNALS and not self._abandon.is_set():
            # A stop sent to a whole job (Slurm's scancel or time limit, a killpg) may reach the
            # protocol process before its service: give the service's own stop a moment to come,
            # so the task is handed back rather than recorded as failed.
            self._abandon.wait(STOP_SIGNAL_GRACE_S)
        if self._abandon.is_set():
            self._abandon.clear()
            raise Abandoned(inputs["task"])
        outcome_file = workdir / child.OUTCOME
        if returncode == 0 and outcome_file.exists():
            meta = json.loads(outcome_file.read_text())
            return ExecutionOutcome(
                result=(workdir / child.RESULT).read_bytes(),
                ok=meta["ok"],
                pdr_key=meta["pdr_key"],
                tracebacks=meta["tracebacks"],
            )
        tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        why = (
            f"protocol process killed by signal {_signal_name(returncode)}"
            if returncode < 0
            else f"protocol process exited with status {returncode} without a result"
        )
        log.error("task %s: %s", inputs["task"], why)
        return failed_outcome(
            inputs["task"],
            inputs["transformation"],
            why,
            f"{why}\n--- protocol process output (tail) ---\n{tail}",
            exception_qualname="ProtocolProcessDied",
        )
