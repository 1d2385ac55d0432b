"""The compute service loop: register, heartbeat, claim, execute, push, repeat.

Every exchange goes through the compute API by URL, so a service runs the same on
the deployment's host or on another machine.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from alchemiscale_local.client.compute import ComputeClient
from alchemiscale_local.client.errors import ClientError, ConflictError, NotFoundError, ServerUnavailable
from alchemiscale_local.runtimes.base import ExecutionOutcome
from alchemiscale_local.runtimes.registry import available_runtimes
from alchemiscale_local.settings import ComputeSettings

from .artifacts import upload_task_files
from .executor import Abandoned, TaskExecutor
from .workspace import TaskWorkspace

log = logging.getLogger(__name__)

# A result that cannot be pushed (API away) is retried this long before it is given up;
# the task then returns to waiting through expiry and runs again elsewhere.
PUSH_PATIENCE_S = 600.0


@dataclass
class ServiceStats:
    completed: int = 0
    failed: int = 0
    started_at: float = field(default_factory=time.time)
    last_result_at: float | None = None
    task_starts: list[tuple[str, float]] = field(default_factory=list)


class ComputeService:
    """One compute service: one task at a time, on the device it was given."""

    def __init__(
        self,
        client: ComputeClient,
        settings: ComputeSettings,
        workroot: Path,
        *,
        name: str | None = None,
        heartbeat_client: ComputeClient | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        base = name or f"{socket.gethostname()}-{'gpu' + self.gpu if self.gpu else 'cpu'}"
        self.identifier = f"{_safe(base)}-{uuid.uuid4().hex}"
        self.workroot = workroot
        self.executor = TaskExecutor()
        self.stats = ServiceStats()
        self._stop = threading.Event()
        self._reregister = threading.Event()
        self._heartbeat_client = heartbeat_client or client
        self._heartbeat_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        """Ask the loop to end; a running protocol process is abandoned (its task goes back to waiting)."""
        self._stop.set()
        self.executor.abandon()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def register(self) -> None:
        self.client.register(
            self.identifier,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            gpu=self.gpu,
            runtimes=available_runtimes(),
        )
        log.info("registered %s (CUDA_VISIBLE_DEVICES=%s)", self.identifier, self.gpu)

    def run(self) -> ServiceStats:
        """Serve until stopped or ``max_tasks`` are done; deregister at the end."""
        self._until_api(self.register)
        self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._heartbeat_thread.start()
        backoff = self.settings.idle_backoff_s
        try:
            while not self._stop.is_set():
                if self.settings.max_tasks is not None and self._done() >= self.settings.max_tasks:
                    break
                if (
                    self.settings.max_time is not None
                    and time.time() - self.stats.started_at >= self.settings.max_time
                ):
                    break
                if self._reregister.is_set():
                    self._reregister.clear()
                    self._until_api(self.register)
                tasks = self._claim()
                if tasks is None:  # denied for failures, or the API is away: wait longer
                    self._stop.wait(self.settings.idle_backoff_max_s)
                    continue
                if not tasks:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.idle_backoff_max_s)
                    continue
                backoff = self.settings.idle_backoff_s
                for task in tasks:
                    if self._stop.is_set():
                        break
                    try:
                        self._process(task)
                    except ClientError as exc:
                        # The claim stays with this service; expiry or deregistration frees it.
                        log.error("task %s could not be handled: %s", task, exc)
        finally:
            self._stop.set()
            try:
                self.client.deregister(self.identifier)
                log.info("deregistered %s", self.identifier)
            except ClientError as exc:
                log.warning("could not deregister %s: %s", self.identifier, exc)
        return self.stats

    # -- steps ----------------------------------------------------------------------------
    def _done(self) -> int:
        return self.stats.completed + self.stats.failed

    def _claim(self) -> list[str] | None:
        try:
            claimed = self.client.claim_tasks(
                self.identifier,
                self.settings.claim_limit,
                self.settings.scopes,
                self.settings.protocols,
                scopes_exclude=self.settings.scopes_exclude,
            )
        except NotFoundError:
            self._reregister.set()  # expired while away; register again and carry on
            return []
        except ServerUnavailable as exc:
            log.warning("API unavailable while claiming: %s", exc)
            return None
        if claimed is None:
            log.warning("%s is denied claims for too many recent failures", self.identifier)
            return None
        return [str(t) for t in claimed if t]

    def _process(self, task: str) -> None:
        started = time.time()
        self.stats.task_starts.append((task, started))
        ws = TaskWorkspace.for_task(self.settings, self.workroot, self.identifier, task)
        log.info("running %s", task)
        try:
            inputs = self.client.get_task_inputs(task)
            extends = self.client.get_extends_result(task) if inputs.get("extends_result") else None
            options = ws.runtime_options(self.settings.loglevel)
            outcome = self.executor.run(
                inputs, extends, ws.workdir, n_retries=self.settings.n_retries, options=options
            )
            upload_task_files(self.client, self.identifier, task, outcome, ws, self.settings.artifacts)
        except Abandoned:
            log.info("abandoned %s; it returns to waiting when this service deregisters", task)
            return
        except (ServerUnavailable, NotFoundError, ConflictError) as exc:
            log.warning("could not fetch inputs of %s: %s", task, exc)
            return
        finally:
            ws.cleanup()
        self._push(task, outcome)
        log.info("%s %s in %.1f s", task, "completed" if outcome.ok else "failed", time.time() - started)

    def _push(self, task: str, outcome: ExecutionOutcome) -> None:
        deadline = time.monotonic() + PUSH_PATIENCE_S
        delay = 0.5
        while True:
            try:
                self.client.push_result(task, self.identifier, outcome.pdr_key, outcome.ok, outcome.result)
                break
            except ConflictError as exc:
                log.warning("result of %s refused (the claim was lost): %s", task, exc)
                return
            except ServerUnavailable as exc:
                if time.monotonic() > deadline or self._stop.is_set():
                    log.error("gave up pushing the result of %s: %s", task, exc)
                    return
                log.warning("API unavailable while pushing %s; retrying: %s", task, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        log.info("pushed %s", task)
        self.stats.last_result_at = time.time()
        if outcome.ok:
            self.stats.completed += 1
        else:
            self.stats.failed += 1

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self._heartbeat_client.heartbeat(self.identifier)
            except NotFoundError:
                log.warning("registration %s expired; registering again", self.identifier)
                self._reregister.set()
            except ClientError as exc:
                log.warning("heartbeat failed: %s", exc)

    def _until_api(self, step) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                step()
                return
            except ServerUnavailable as exc:
                log.warning("API unavailable (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.@" else "_" for c in name)[:80]
