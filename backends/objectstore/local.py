"""Local-filesystem backend: create-only atomic writes with temp file + fsync + link.

A writer streams into ``<dir>/.objstore-tmp-<name>.<uuid>`` in the target's directory,
flushes and fsyncs it, then ``os.link``s it to the target (fails if the target exists,
so exactly one content wins) and fsyncs the directory. Readers only ever see complete
files; a killed writer leaves a hidden temp file that listings skip and
:meth:`LocalBackend.cleanup_incomplete` removes.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .paths import TMP_PREFIX, is_temp_name
from .streams import Chunk, digest_stream

#: errno values meaning "this filesystem cannot hard-link"
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


class LocalBackend:
    """Objects as files under ``root``; locations are ``/``-separated relative paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, location: str) -> Path:
        return self.root.joinpath(*location.split("/")) if location else self.root

    def initialize(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def exists(self, location: str) -> bool:
        return self._path(location).is_file()

    def create(
        self,
        location: str,
        chunks: Iterable[Chunk],
        before_commit: Callable[[], None],
    ) -> bool:
        """Write ``chunks`` to ``location`` unless it exists; False when it already did."""
        target = self._path(location)
        tmp = target.with_name(f"{TMP_PREFIX}{target.name}.{uuid.uuid4().hex}")
        fd = self._open_tmp(tmp)
        try:
            with os.fdopen(fd, "wb", buffering=0) as fh:
                for chunk in chunks:
                    fh.write(chunk)
                before_commit()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
                # No hard links here: fall back to check + rename (a tiny race window remains).
                if target.exists():
                    return False
                os.replace(tmp, target)
            _fsync_dir(target.parent)
            return True
        except BaseException:
            self._discard(tmp)
            self._prune(tmp.parent)  # do not leave empty directories behind a failed write
            raise
        finally:
            self._discard(tmp)

    @staticmethod
    def _discard(tmp: Path) -> None:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass

    def _open_tmp(self, tmp: Path) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for attempt in range(5):
            tmp.parent.mkdir(parents=True, exist_ok=True)
            try:
                return os.open(tmp, flags, 0o644)
            except FileNotFoundError:  # a concurrent delete pruned the directory
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def digest(self, location: str) -> tuple[int, str]:
        with self._path(location).open("rb") as fh:
            return digest_stream(fh)

    def open(self, location: str) -> BinaryIO:
        return self._path(location).open("rb", buffering=0)

    def read_bytes(self, location: str) -> bytes:
        return self._path(location).read_bytes()

    def iter_files(self, prefix: str, *, include_temp: bool = False) -> Iterator[tuple[str, int]]:
        """``(location, size)`` of each file at or under ``prefix``, sorted."""
        start = self._path(prefix)
        if start.is_file():
            if include_temp or not is_temp_name(start.name):
                yield prefix, start.stat().st_size
            return
        if not start.is_dir():
            return
        found: list[tuple[str, int]] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if not include_temp and is_temp_name(name):
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:
                    continue  # deleted (or a temp file renamed away) while walking
                found.append((name if rel == "." else f"{rel}/{name}", size))
        yield from sorted(found)

    def delete(self, locations: Iterable[str]) -> int:
        """Remove files, then prune directories left empty (up to the root)."""
        count = 0
        parents: set[Path] = set()
        for location in locations:
            path = self._path(location)
            try:
                path.unlink()
                count += 1
            except FileNotFoundError:
                continue
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune(parent)
        return count

    def _prune(self, directory: Path) -> None:
        root = self.root.resolve()
        while directory.resolve() != root and root in directory.resolve().parents:
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or already gone in a race): stop here
            directory = directory.parent

    def check(self) -> None:
        """Raise OSError when the root cannot be created or written."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f"{TMP_PREFIX}check-{uuid.uuid4().hex}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)

    def cleanup_incomplete(self, older_than_s: float) -> int:
        """Delete temp files of writers that died, older than ``older_than_s`` seconds."""
        cutoff = time.time() - older_than_s
        stale = []
        for location, _ in self.iter_files("", include_temp=True):
            name = location.rsplit("/", 1)[-1]
            if is_temp_name(name):
                try:
                    if self._path(location).stat().st_mtime <= cutoff:
                        stale.append(location)
                except FileNotFoundError:
                    continue
        return self.delete(stale)
