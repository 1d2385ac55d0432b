"""Keep what a protocol left behind: choose its files by the policy, upload them, commit a manifest.

Runs in the compute service after each task (success or failure), before the result is pushed,
while the service still holds the claim. It never raises: a failed upload is logged and the
result is pushed all the same.

Chosen, in this order, until ``max_task_bytes``: the protocol log (``protocol.log``: the protocol
process's output; its tail when longer than ``max_log_bytes``), then the files under the shared
and permanent directories that match ``keep`` and not ``exclude``, smallest first, each at most
``max_file_bytes``. Symlinks and names the object store cannot hold are skipped, with a reason.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alchemiscale_local.backends.objectstore.errors import InvalidPath
from alchemiscale_local.backends.objectstore.paths import validate_relpath
from alchemiscale_local.client.errors import ClientError, ConflictError, ServerUnavailable
from alchemiscale_local.runtimes.base import ExecutionOutcome
from alchemiscale_local.settings import ArtifactSettings

from .workspace import LOG_NAME, TaskWorkspace

log = logging.getLogger(__name__)

QUOTA_STATUS = 507


@dataclass(frozen=True)
class Candidate:
    """A file to upload: its stored path, where it is, and which bytes of it."""

    path: str
    source: Path
    size: int
    offset: int = 0


@dataclass
class Selection:
    files: list[Candidate] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    log_size: int | None = None  # full size of a log of which only the tail is kept

    @property
    def total(self) -> int:
        return sum(c.size for c in self.files)


def _matches(relpath: str, globs: list[str]) -> bool:
    name = relpath.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(relpath if "/" in g else name, g) for g in globs)


def _walk(root: Path, prefix: str) -> list[tuple[str, Path, int | None, str | None]]:
    """``(stored path, file, size, problem)`` of everything under ``root`` (no symlinks followed)."""
    out: list[tuple[str, Path, int | None, str | None]] = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            file = Path(dirpath) / name
            rel = f"{prefix}/{file.relative_to(root).as_posix()}"
            if file.is_symlink():
                out.append((rel, file, None, "a symlink (not followed)"))
                continue
            try:
                size = file.stat().st_size
                validate_relpath(rel, "task file path")
            except InvalidPath as exc:
                out.append((rel, file, None, f"name cannot be stored: {exc}"))
                continue
            except OSError as exc:
                out.append((rel, file, None, f"unreadable: {exc}"))
                continue
            out.append((rel, file, size, None))
    return out


def select_files(ws: TaskWorkspace, policy: ArtifactSettings) -> Selection:
    """What the policy keeps of this task's log and files, and why the rest is skipped."""
    sel = Selection()
    room = policy.max_task_bytes
    if ws.log_file.is_file():
        log_size = ws.log_file.stat().st_size
        keep = min(log_size, policy.max_log_bytes, room)
        if keep < log_size:
            sel.log_size = log_size
        if keep > 0 or log_size == 0:
            sel.files.append(Candidate(LOG_NAME, ws.log_file, keep, offset=log_size - keep))
            room -= keep
    found = _walk(ws.shared, "shared") + _walk(ws.permanent, "permanent")
    wanted = []
    for rel, file, size, problem in found:
        if problem is not None:
            sel.skipped.append({"path": rel, "size": size, "reason": problem})
        elif not _matches(rel, policy.keep):
            sel.skipped.append({"path": rel, "size": size, "reason": "not in compute.artifacts.keep"})
        elif _matches(rel, policy.exclude):
            sel.skipped.append({"path": rel, "size": size, "reason": "in compute.artifacts.exclude"})
        elif size is not None and size > policy.max_file_bytes:
            reason = f"larger than compute.artifacts.max_file_bytes ({policy.max_file_bytes})"
            sel.skipped.append({"path": rel, "size": size, "reason": reason})
        else:
            wanted.append(Candidate(rel, file, size or 0))
    for cand in sorted(wanted, key=lambda c: (c.size, c.path)):  # smallest first: keep the most
        if cand.size > room:
            reason = f"over compute.artifacts.max_task_bytes ({policy.max_task_bytes}) for the task"
            sel.skipped.append({"path": cand.path, "size": cand.size, "reason": reason})
            continue
        sel.files.append(cand)
        room -= cand.size
    return sel


def _sha256(cand: Candidate) -> str:
    sha = hashlib.sha256()
    left = cand.size
    with open(cand.source, "rb") as fh:
        fh.seek(cand.offset)
        while left > 0:
            chunk = fh.read(min(1 << 20, left))
            if not chunk:
                break
            sha.update(chunk)
            left -= len(chunk)
    return sha.hexdigest()


@dataclass
class UploadReport:
    kept: int = 0
    kept_bytes: int = 0
    skipped: int = 0
    seconds: float = 0.0
    error: str | None = None


def upload_task_files(
    client: Any,
    service_id: str,
    task: str,
    outcome: ExecutionOutcome,
    ws: TaskWorkspace,
    policy: ArtifactSettings,
) -> UploadReport:
    """Upload what the policy keeps of this task's files and commit the manifest; never raises."""
    report = UploadReport()
    if not policy.enabled:
        return report
    started = time.monotonic()
    try:
        _upload(client, service_id, task, outcome, ws, policy, report)
    except Exception as exc:  # keeping files is best effort: the result must still be pushed
        report.error = f"{type(exc).__name__}: {exc}"
        log.warning("could not keep the files of %s: %s", task, report.error)
    report.seconds = time.monotonic() - started
    if report.error is None:
        log.info(
            "kept %d file(s) (%d bytes) of %s in %.2f s, %d skipped",
            report.kept,
            report.kept_bytes,
            task,
            report.seconds,
            report.skipped,
        )
    return report


def _upload(
    client: Any,
    service_id: str,
    task: str,
    outcome: ExecutionOutcome,
    ws: TaskWorkspace,
    policy: ArtifactSettings,
    report: UploadReport,
) -> None:
    sel = select_files(ws, policy)
    kept: list[dict[str, Any]] = []
    skipped = list(sel.skipped)
    stop: str | None = None
    for cand in sel.files:
        if stop is not None:
            skipped.append({"path": cand.path, "size": cand.size, "reason": stop})
            continue
        try:
            sha = _sha256(cand)
            client.push_task_file(
                task,
                service_id,
                outcome.pdr_key,
                cand.path,
                cand.source,
                sha256=sha,
                size=cand.size,
                offset=cand.offset,
            )
        except (ConflictError, ServerUnavailable):
            raise  # claim lost or API away: nothing more can be stored for this attempt
        except ClientError as exc:
            if exc.status == QUOTA_STATUS:
                stop = str(exc.detail)
                log.warning("task %s: %s", task, stop)
            skipped.append({"path": cand.path, "size": cand.size, "reason": str(exc.detail)})
            continue
        except OSError as exc:  # vanished or unreadable since it was listed
            skipped.append({"path": cand.path, "size": cand.size, "reason": f"unreadable: {exc}"})
            continue
        kept.append({"path": cand.path, "size": cand.size, "sha256": sha})
        report.kept_bytes += cand.size
    manifest = {
        "ok": outcome.ok,
        "created": time.time(),
        "files": kept,
        "skipped": skipped[:10_000],
        "log_size": sel.log_size,
    }
    client.push_task_files_manifest(task, service_id, outcome.pdr_key, manifest)
    report.kept, report.skipped = len(kept), len(skipped)
