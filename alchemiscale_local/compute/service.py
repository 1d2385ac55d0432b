"""The compute service loop: register, heartbeat, claim, execute, push, repeat.

Every exchange goes through the compute API by URL, so a service runs the same on
the deployment's host or on another machine.

Finished work is never rerun by this service: a result goes to the on-disk spool before
its first push and is pushed (with backoff, across restarts) until the API takes it or
refuses it for good. While a task runs, the heartbeat asks the API whether it is still
wanted and ends the protocol process of a task nobody wants (alchemiscale #301).
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
from .spool import ResultSpool, SpooledResult
from .workspace import TaskWorkspace

log = logging.getLogger(__name__)

# Longest wait between two pushes of a spooled result (the API or the object store is away).
PUSH_BACKOFF_MAX_S = 30.0
#: exit status of a service whose identity the API refuses (401/403): restarting cannot help
EXIT_REFUSED = 3


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
        self.name = _safe(base)
        self.identifier = f"{self.name}-{uuid.uuid4().hex}"
        self.workroot = workroot
        # Per service name, not per run: a restarted service pushes what its predecessor left.
        self.spool = ResultSpool(workroot / "spool" / self.name, base=workroot)
        self._running: str | None = None  # the task whose protocol process runs now
        self._unwanted: set[str] = set()  # tasks stopped because the API no longer wants them
        self._dropped: set[str] = set()  # results refused for good: never run these again
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
        for entry in self.spool.pending():  # results a previous run of this service could not push
            log.info("pushing the spooled result of %s (from %s)", entry.task, entry.service_id)
            self._push_entry(entry)
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
        tasks = [str(t) for t in claimed if t]
        skipped = [t for t in tasks if t in self._dropped]
        if skipped:
            # The API hands a service its held tasks back first, and has no route to let one go:
            # a fresh registration releases the claim (the task's status decides what happens next).
            log.warning(
                "not running %s again (stopped or refused for good); registering anew", ", ".join(skipped)
            )
            self._register_anew()
            return []
        return tasks

    def _register_anew(self) -> None:
        try:
            self.client.deregister(self.identifier)
        except ClientError as exc:
            log.warning("could not deregister %s: %s", self.identifier, exc)
        self.identifier = f"{self.name}-{uuid.uuid4().hex}"
        self._until_api(self.register)

    def _process(self, task: str) -> None:
        started = time.time()
        self.stats.task_starts.append((task, started))
        ws = TaskWorkspace.for_task(self.settings, self.workroot, self.identifier, task)
        log.info("running %s", task)
        try:
            inputs = self.client.get_task_inputs(task)
            extends = self.client.get_extends_result(task) if inputs.get("extends_result") else None
            options = ws.runtime_options(self.settings.loglevel)
            self._running = task
            try:
                outcome = self.executor.run(
                    inputs, extends, ws.workdir, n_retries=self.settings.n_retries, options=options
                )
            finally:
                self._running = None
            upload_task_files(self.client, self.identifier, task, outcome, ws, self.settings.artifacts)
        except Abandoned:
            if task in self._unwanted:
                log.info("stopped %s: the API no longer wants it; nothing is pushed", task)
            else:
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
        # On disk first: from here on the work survives a full store, an absent API and a restart.
        entry = self.spool.put(task, self.identifier, outcome.pdr_key, outcome.ok, outcome.result)
        if self._push_entry(entry):
            self.stats.last_result_at = time.time()
            if outcome.ok:
                self.stats.completed += 1
            else:
                self.stats.failed += 1

    def _push_entry(self, entry: SpooledResult) -> bool:
        """Push one spooled result until it is taken (True) or refused for good (False).

        5xx and connection errors are retried with backoff for as long as it takes (the
        heartbeat keeps the claim meanwhile); a stop leaves the entry for the next start.
        A permanent 4xx (401 is re-login, inside the client) drops it: the server records
        the refusal as a failure of the task, and this service never runs it again.
        """
        delay = 0.5
        while True:
            try:
                self.client.push_result(entry.task, entry.service_id, entry.pdr_key, entry.ok, entry.path)
                self.spool.remove(entry)
                log.info("pushed %s", entry.task)
                return True
            except ClientError as exc:
                if exc.status is None or exc.status >= 500:
                    if self._stop.is_set():
                        log.warning("stopping with the result of %s kept in %s", entry.task, entry.path)
                        return False
                    log.warning("could not push %s (%s); retrying in %.1f s", entry.task, exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, PUSH_BACKOFF_MAX_S)
                    continue
                self.spool.remove(entry)
                self._dropped.add(entry.task)
                log.error("the result of %s was refused for good, not retried: %s", entry.task, exc)
                return False

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self._heartbeat_client.heartbeat(self.identifier)
            except NotFoundError:
                log.warning("registration %s expired; registering again", self.identifier)
                self._reregister.set()
            except ClientError as exc:
                log.warning("heartbeat failed: %s", exc)
            self._stop_if_unwanted()

    def _stop_if_unwanted(self) -> None:
        """End the running protocol process if the API says nobody wants its task any more."""
        task = self._running
        if task is None:
            return
        try:
            stop = self._heartbeat_client.unwanted_tasks(self.identifier, [task])
        except ClientError as exc:
            log.debug("could not ask whether %s is still wanted: %s", task, exc)
            return
        if task in stop and self._running == task:
            log.warning(
                "%s is no longer wanted (cancelled, network inactive or claim lost); stopping it", task
            )
            self._unwanted.add(task)
            self._dropped.add(task)
            self.executor.abandon()

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
