"""Finished results kept on the service's disk until the API has taken them.

A result is written here before its first push and removed only once the push
succeeded or was refused for good, so a store that is full or read-only, an API that is
away, or a restart of the service never throws finished work away (and never causes
a rerun). Each entry is ``<name>.zst`` (the result) plus ``<name>.json`` (task, service
id, pdr key, ok); the JSON is written last, atomically: a half-written entry is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledResult:
    task: str
    service_id: str
    pdr_key: str
    ok: bool
    path: Path  # the .zst file

    @property
    def meta_path(self) -> Path:
        return self.path.with_suffix(".json")

    def data(self) -> bytes:
        return self.path.read_bytes()


class ResultSpool:
    """A directory of results waiting to be pushed, oldest first.

    Emptied folders are removed, from ``root`` up to (not including) ``base``, so an idle
    service leaves nothing behind in its work dir.
    """

    def __init__(self, root: Path, base: Path | None = None) -> None:
        self.root = root
        self.base = base if base is not None else root.parent

    def put(self, task: str, service_id: str, pdr_key: str, ok: bool, result: bytes) -> SpooledResult:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        stem = hashlib.sha256(f"{task}\n{pdr_key}".encode()).hexdigest()[:32]
        entry = SpooledResult(task, service_id, pdr_key, ok, self.root / f"{stem}.zst")
        _atomic_write(entry.path, result)
        meta = {k: v for k, v in asdict(entry).items() if k != "path"}
        _atomic_write(entry.meta_path, json.dumps(meta).encode())
        return entry

    def pending(self) -> list[SpooledResult]:
        if not self.root.is_dir():
            return []
        found = []
        for meta_path in sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                meta = json.loads(meta_path.read_text())
                found.append(
                    SpooledResult(
                        meta["task"],
                        meta["service_id"],
                        meta["pdr_key"],
                        bool(meta["ok"]),
                        meta_path.with_suffix(".zst"),
                    )
                )
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring a damaged spool entry %s: %s", meta_path, exc)
        return [e for e in found if e.path.exists()]

    def remove(self, entry: SpooledResult) -> None:
        entry.meta_path.unlink(missing_ok=True)  # first: without it the entry no longer counts
        entry.path.unlink(missing_ok=True)
        folder = self.root
        while folder != self.base and self.base in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (other entries, another service's spool) or gone
                break
            folder = folder.parent


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
