"""A task's directories on the compute host: where they are, what the runtime is told, cleanup.

``<workroot>/<service id>/<task token>/`` holds the request, the result and ``protocol.log``;
the protocol's shared and scratch directories are ``shared/`` and ``scratch/`` in it, or
``<shared_basedir>/<service id>/<task token>`` (and likewise for scratch) when those settings
are given. After a task everything is removed unless ``keep_shared``/``keep_scratch`` say
otherwise, and parent folders left empty go too (no empty per-service or per-task folders).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alchemiscale_local.settings import ComputeSettings

log = logging.getLogger(__name__)

LOG_NAME = "protocol.log"


@dataclass(frozen=True)
class TaskWorkspace:
    """The directories of one task run by one service."""

    workroot: Path
    workdir: Path
    shared: Path
    scratch: Path
    keep_shared: bool
    keep_scratch: bool
    collect: bool  # files are uploaded after the task, so the runtime must not delete shared

    @classmethod
    def for_task(cls, settings: ComputeSettings, workroot: Path, service_id: str, task: str) -> TaskWorkspace:
        token = task.split("-")[1] if task.count("-") >= 1 else task
        workdir = workroot / service_id / token
        shared_base = settings.shared_basedir or None
        scratch_base = settings.scratch_basedir or None
        return cls(
            workroot=workroot,
            workdir=workdir,
            shared=(shared_base / service_id / token) if shared_base else workdir / "shared",
            scratch=(scratch_base / service_id / token) if scratch_base else workdir / "scratch",
            keep_shared=settings.keep_shared,
            keep_scratch=settings.keep_scratch,
            collect=settings.artifacts.enabled,
        )

    @property
    def log_file(self) -> Path:
        return self.workdir / LOG_NAME

    @property
    def permanent(self) -> Path:
        """gufe's ``perm_storage`` root, where the installed gufe has one."""
        return self.workdir / "permanent"

    def runtime_options(self, loglevel: str = "INFO") -> dict[str, Any]:
        """What the protocol process is told (the ``options`` of its ExecutionRequest).

        Shared files are kept by the runtime while they still have to be uploaded; the
        service removes them afterwards unless ``keep_shared`` is set.
        """
        return {
            "keep_shared": self.keep_shared or self.collect,
            "keep_scratch": self.keep_scratch,
            "shared_dir": str(self.shared),
            "scratch_dir": str(self.scratch),
            "loglevel": loglevel,
        }

    def cleanup(self) -> None:
        """Remove what is not to be kept, then prune the empty folders above it."""
        keep_any = self.keep_shared or self.keep_scratch
        if not self.keep_shared:
            _rmtree(self.shared)
        if not self.keep_scratch:
            _rmtree(self.scratch)
        if not keep_any:
            _rmtree(self.permanent)
            _rmtree(self.workdir)  # request, result and log: kept with kept dirs, for debugging
        for path in (self.workdir, self.shared, self.scratch):
            _prune_empty(path, stop_at=self._stop_for(path))

    def _stop_for(self, path: Path) -> Path:
        # prune up to (not including) the base the path was made under
        if path.is_relative_to(self.workroot):
            return self.workroot
        return path.parent.parent  # <basedir>/<service>/<token>: stop at <basedir>


def _rmtree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)


def _prune_empty(path: Path, stop_at: Path) -> None:
    """rmdir ``path`` and its parents while they are empty, never ``stop_at`` or above it."""
    current = path
    while current != stop_at and current.is_relative_to(stop_at):
        try:
            os.rmdir(current)
        except FileNotFoundError:
            pass
        except OSError:
            return  # not empty: stop
        current = current.parent
