"""fsspec backend (S3 through s3fs, or any fsspec filesystem with create-only ``"xb"`` writes).

Writes stream through ``fs.open(path, "xb")``: on S3 that is a single conditional PUT
(``IfNoneMatch="*"``) for objects smaller than the block size, else a multipart upload
whose completion is conditional. Nothing is visible until that final call succeeds, so a
killed writer leaves at most an incomplete multipart upload (see
:meth:`FsspecBackend.cleanup_incomplete`), never a partial object.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from fsspec import AbstractFileSystem

from .paths import TMP_PREFIX, is_temp_name
from .streams import Chunk, digest_stream

log = logging.getLogger(__name__)

_BUSY_RETRY_DELAYS = (0.1, 0.3, 1.0, 2.0)


def _abandon(f: Any) -> None:
    """Throw away an unfinished write (aborts an S3 multipart upload) without committing it."""
    try:
        f.discard()
    except Exception as exc:  # noqa: BLE001 - best-effort cleanup, must not mask the real error
        log.warning("could not discard unfinished upload of %s: %s", getattr(f, "path", f), exc)
    f.closed = True  # so __del__ never commits it


def _commit(f: Any) -> None:
    """Close (= commit) ``f``; retry S3's 409 ConditionalRequestConflict (EBUSY) a few times."""
    try:
        f.close()
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        last: OSError = exc
    for delay in _BUSY_RETRY_DELAYS:
        time.sleep(delay)
        try:
            f.commit()  # s3fs keeps parts / buffer after a failed commit, so it can be repeated
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            last = exc
    raise last


class FsspecBackend:
    """Objects as keys under ``root`` (``bucket/prefix`` for S3) of an fsspec filesystem."""

    def __init__(
        self,
        fs: AbstractFileSystem,
        root: str,
        *,
        block_size: int,
        check_fs: AbstractFileSystem | None = None,
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.block_size = block_size
        self.check_fs = check_fs or fs

    def _path(self, location: str) -> str:
        return f"{self.root}/{location}" if location else self.root

    def _rel(self, name: str) -> str:
        name = name.rstrip("/")
        return name[len(self.root) + 1 :] if name != self.root else ""

    def initialize(self) -> None:
        """Create the bucket / root if missing (region-safe for S3)."""
        if hasattr(self.fs, "call_s3"):
            bucket = self.root.split("/", 1)[0]
            if self.fs.exists(bucket):
                return
            region = self.fs.client_kwargs.get("region_name")
            params: dict[str, Any] = {"Bucket": bucket}
            if region and region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self.fs.call_s3("create_bucket", **params)
            self.fs.invalidate_cache()
        else:
            self.fs.makedirs(self.root, exist_ok=True)

    def exists(self, location: str) -> bool:
        return bool(self.fs.isfile(self._path(location)))

    def create(
        self,
        location: str,
        chunks: Iterable[Chunk],
        before_commit: Callable[[], None],
    ) -> bool:
        """Write ``chunks`` to ``location`` unless it exists; False when it already did."""
        f = self.fs.open(self._path(location), "xb", block_size=self.block_size)
        try:
            for chunk in chunks:
                f.write(chunk)
            before_commit()
        except BaseException:
            _abandon(f)
            raise
        try:
            _commit(f)
        except FileExistsError:
            _abandon(f)
            return False
        except BaseException:
            _abandon(f)
            raise
        return True

    def digest(self, location: str) -> tuple[int, str]:
        with self.open(location) as fh:
            return digest_stream(fh)

    def open(self, location: str) -> BinaryIO:
        f: BinaryIO = self.fs.open(self._path(location), "rb", block_size=self.block_size)
        return f

    def read_bytes(self, location: str) -> bytes:
        data: bytes = self.fs.cat_file(self._path(location))
        return data

    def iter_files(self, prefix: str, *, include_temp: bool = False) -> Iterator[tuple[str, int]]:
        """``(location, size)`` of each object at or under ``prefix``, sorted."""
        path = self._path(prefix)
        try:
            found = self.fs.find(path, detail=True)
        except FileNotFoundError:
            return
        out = []
        for name, info in found.items():
            name = name.rstrip("/")
            if name != path and not name.startswith(path + "/"):
                continue  # "a/bc" is not under prefix "a/b"
            if info.get("type") == "directory":
                continue
            if not include_temp and is_temp_name(name.rsplit("/", 1)[-1]):
                continue
            out.append((self._rel(name), int(info.get("size") or 0)))
        yield from sorted(out)

    def delete(self, locations: Iterable[str]) -> int:
        paths = [self._path(loc) for loc in locations]
        if not paths:
            return 0
        self.fs.rm(paths)
        self.fs.invalidate_cache()
        return len(paths)

    def check(self) -> None:
        """Write and delete a probe object; raises whatever the filesystem raises."""
        probe = f"{self.root}/{TMP_PREFIX}check-{uuid.uuid4().hex}"
        self.check_fs.pipe_file(probe, b"ok")
        self.check_fs.rm_file(probe)

    def cleanup_incomplete(self, older_than_s: float) -> int:
        """Abort multipart uploads (S3) and delete probe leftovers older than ``older_than_s``."""
        cutoff = time.time() - older_than_s
        count = 0
        if hasattr(self.fs, "call_s3"):
            bucket, _, key_prefix = self.root.partition("/")
            kw: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{key_prefix}/" if key_prefix else ""}
            while True:
                page = self.fs.call_s3("list_multipart_uploads", **kw)
                for up in page.get("Uploads", []):
                    initiated: datetime = up["Initiated"]
                    if initiated.replace(tzinfo=initiated.tzinfo or UTC).timestamp() <= cutoff:
                        self.fs.call_s3(
                            "abort_multipart_upload", Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        count += 1
                if not page.get("IsTruncated"):
                    break
                kw.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])
        stale = [
            loc for loc, _ in self.iter_files("", include_temp=True) if is_temp_name(loc.rsplit("/", 1)[-1])
        ]
        return count + self.delete(stale)
