"""The object store: ProtocolDAGResults and task files under one fsspec root URL."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from alchemiscale_local.models import Scope, ScopedKey

from . import paths
from .errors import (
    ChecksumMismatch,
    InvalidPath,
    ObjectExists,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStoreUnavailable,
)
from .local import LocalBackend
from .options import UNAVAILABLE_ERRORS, s3_check_filesystem, storage_options_from_settings
from .records import ObjectInfo, StoredObject, TaskFile
from .remote import FsspecBackend
from .streams import CHUNK_SIZE, Data, Digest, iter_chunks, verifying_reader

if TYPE_CHECKING:
    from alchemiscale_local.settings import ObjectStoreSettings

DEFAULT_BLOCK_SIZE = 8 << 20  # S3 part size; bounds the memory one upload holds

_STORAGE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM}
_REASONS = {
    errno.EROFS: "it is read-only",
    errno.ENOSPC: "it is full (no space left on device)",
    errno.EDQUOT: "its disk quota is exceeded",
    errno.EIO: "an I/O error",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def _reason(exc: OSError) -> str:
    """A short human reason for a storage error, then the OS's own message."""
    reason = _REASONS.get(exc.errno or -1)
    return f"{reason} ({exc})" if reason else f"{type(exc).__name__}: {exc}"


class ObjectStore:
    """Write-once objects under a root URL (``file://...`` or ``s3://bucket/prefix``).

    Locations are ``/``-separated paths relative to the root; every component is validated.
    Writing a key again is a no-op for equal bytes and :class:`ObjectExists` otherwise.
    Thread-safe; blocking (call it from a worker thread in async code).
    """

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self.url = url
        opts = dict(storage_options or {})
        scheme = urlsplit(url).scheme
        if scheme in ("s3", "s3a"):
            opts.setdefault("use_listings_cache", False)  # other processes write too
        opts.setdefault("skip_instance_cache", True)
        fs, root = fsspec.core.url_to_fs(url, **opts)
        self.fs = fs
        if isinstance(fs, LocalFileSystem):
            self._backend: LocalBackend | FsspecBackend = LocalBackend(root)
        else:
            if not root.strip("/"):
                raise ValueError(f"object store URL {url!r} needs a bucket / root path")
            check_fs = s3_check_filesystem(opts) if scheme in ("s3", "s3a") else None
            self._backend = FsspecBackend(fs, root, block_size=block_size, check_fs=check_fs)

    @classmethod
    def from_settings(cls, settings: ObjectStoreSettings, **kwargs: Any) -> ObjectStore:
        """Build from ``Settings.objectstore`` (url must be resolved, as ``Settings`` does)."""
        if not settings.url:
            raise ValueError("objectstore.url is not set (Settings fills in file://<data dir>/objects)")
        return cls(settings.url, storage_options_from_settings(settings), **kwargs)

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self._backend, LocalBackend)

    # -- error translation ---------------------------------------------------------
    @contextlib.contextmanager
    def _translate(self, location: str, *, writing: bool = False) -> Iterator[None]:
        """Map backend errors onto the store's exceptions."""
        try:
            yield
        except ObjectStoreError:
            raise
        except FileNotFoundError as exc:
            if writing:  # e.g. NoSuchBucket
                raise ObjectStoreUnavailable(f"object store {self.url} root is missing: {exc}") from exc
            raise ObjectNotFound(f"no object at {location!r} in {self.url}") from None
        except (NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectExists(
                f"{location!r} conflicts with an existing object or directory: {exc}"
            ) from None
        except PermissionError as exc:
            raise ObjectStoreUnavailable(f"object store {self.url} denied access: {exc}") from exc
        except UNAVAILABLE_ERRORS as exc:
            raise ObjectStoreUnavailable(f"object store {self.url} unavailable: {exc}") from exc
        except OSError as exc:
            # Read-only, full, over quota, I/O errors, S3 refusals (s3fs raises OSError): the
            # store cannot take objects now; the bytes sent are fine and may be sent again.
            if writing or exc.errno in _STORAGE_ERRNOS:
                raise ObjectStoreUnavailable(
                    f"object store {self.url} cannot store objects: {_reason(exc)}"
                ) from exc
            raise

    # -- generic objects -----------------------------------------------------------
    def put(
        self,
        location: str,
        data: Data,
        *,
        sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredObject:
        """Stream ``data`` to ``location`` atomically, hashing as it goes.

        ``sha256`` (optional) is the digest the sender claims; a mismatch raises
        :class:`ChecksumMismatch` and stores nothing. ``max_bytes`` raises ObjectTooLarge.
        """
        location = paths.validate_relpath(location, "location")
        digest = Digest(max_bytes)
        chunks = digest.wrap(iter_chunks(data))  # hashes and counts as the backend pulls chunks
        expected = sha256.lower() if sha256 else None

        def verify() -> None:
            if expected is not None and digest.sha256 != expected:
                raise ChecksumMismatch(location, expected, digest.sha256)

        with self._translate(location, writing=True):
            if self._backend.exists(location):
                for _ in chunks:  # equal bytes again? hash only, write nothing
                    pass
                verify()
                created = False
            else:
                created = self._backend.create(location, chunks, verify)
            if not created:
                _, existing = self._backend.digest(location)
                if existing != digest.sha256:
                    raise ObjectExists(
                        f"{location!r} already holds different bytes (sha256 {existing}, not {digest.sha256})"
                    )
        return StoredObject(location, digest.size, digest.sha256, created)

    def exists(self, location: str) -> bool:
        location = paths.validate_relpath(location, "location")
        with self._translate(location):
            return self._backend.exists(location)

    def open(self, location: str, sha256: str | None = None) -> BinaryIO:
        """A buffered reader; with ``sha256`` the read that reaches EOF raises ChecksumMismatch."""
        location = paths.validate_relpath(location, "location")
        with self._translate(location):
            return verifying_reader(self._backend.open(location), location, sha256)

    def get(self, location: str, sha256: str | None = None) -> bytes:
        """The whole object, checked against ``sha256`` when given."""
        location = paths.validate_relpath(location, "location")
        with self._translate(location):
            data = self._backend.read_bytes(location)
        if sha256:
            digest = Digest()
            digest.consume([data])
            if digest.sha256 != sha256.lower():
                raise ChecksumMismatch(location, sha256.lower(), digest.sha256)
        return data

    def list_prefix(self, prefix: str = "") -> list[ObjectInfo]:
        """Objects at or under ``prefix`` (whole path components, recursive), sorted by location."""
        prefix = paths.validate_prefix(prefix)
        with self._translate(prefix):
            return [ObjectInfo(loc, size) for loc, size in self._backend.iter_files(prefix)]

    def delete(self, location: str, *, missing_ok: bool = True) -> bool:
        """Delete one object; False (or ObjectNotFound without ``missing_ok``) when absent."""
        location = paths.validate_relpath(location, "location")
        with self._translate(location):
            if not self._backend.exists(location):
                if missing_ok:
                    return False
                raise ObjectNotFound(f"no object at {location!r} in {self.url}")
            self._backend.delete([location])
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under a non-empty ``prefix``; returns how many.

        In-flight temp files of concurrent writers are left alone (see cleanup_incomplete).
        """
        prefix = paths.validate_prefix(prefix)
        if not prefix:
            raise InvalidPath("refusing to delete the whole store (empty prefix)")
        with self._translate(prefix):
            return self._backend.delete([loc for loc, _ in self._backend.iter_files(prefix)])

    # -- ProtocolDAGResults --------------------------------------------------------
    result_location = staticmethod(paths.result_location)

    def push_result(
        self,
        data: Data,
        *,
        scope: Scope | str,
        transformation_key: str | ScopedKey,
        pdr_key: str,
        ok: bool,
        sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredObject:
        """Store a ProtocolDAGResult's zstd keyed-chain bytes unchanged; returns location/size/sha256."""
        location = paths.result_location(scope, transformation_key, pdr_key, ok=ok)
        return self.put(location, data, sha256=sha256, max_bytes=max_bytes)

    def get_result(self, location: str, sha256: str | None = None) -> bytes:
        """The stored bytes of a result; ChecksumMismatch when ``sha256`` is given and differs."""
        return self.get(paths.validate_result_location(location), sha256)

    def open_result(self, location: str, sha256: str | None = None) -> BinaryIO:
        """Streaming reader of a result; verifies ``sha256`` at EOF."""
        return self.open(paths.validate_result_location(location), sha256)

    def iter_result(
        self, location: str, sha256: str | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """A result as chunks (e.g. for a streaming HTTP response); verifies ``sha256`` at the end.

        Opens eagerly, so ObjectNotFound / InvalidPath are raised by this call, not mid-stream.
        """
        fh = self.open_result(location, sha256)

        def chunks() -> Iterator[bytes]:
            with fh:
                while chunk := fh.read(chunk_size):
                    yield chunk

        return chunks()

    def delete_result(self, location: str, *, missing_ok: bool = True) -> bool:
        return self.delete(paths.validate_result_location(location), missing_ok=missing_ok)

    # -- task files ----------------------------------------------------------------
    def put_task_file(
        self,
        scope: Scope | str,
        task_key: str | ScopedKey,
        relpath: str,
        fileobj: Data,
        *,
        sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> StoredObject:
        """Store a file a task produced at ``taskfiles/<scope>/<task key>/<relpath>`` (streamed)."""
        location = paths.task_file_location(scope, task_key, relpath)
        return self.put(location, fileobj, sha256=sha256, max_bytes=max_bytes)

    def open_task_file(
        self, scope: Scope | str, task_key: str | ScopedKey, relpath: str, sha256: str | None = None
    ) -> BinaryIO:
        return self.open(paths.task_file_location(scope, task_key, relpath), sha256)

    def list_task_files(self, scope: Scope | str, task_key: str | ScopedKey) -> list[TaskFile]:
        prefix = paths.task_prefix(scope, task_key)
        return [
            TaskFile(info.location[len(prefix) + 1 :], info.location, info.size)
            for info in self.list_prefix(prefix)
        ]

    def delete_task_files(self, scope: Scope | str, task_key: str | ScopedKey) -> int:
        """Delete everything stored under a task's prefix; returns how many objects."""
        return self.delete_prefix(paths.task_prefix(scope, task_key))

    # -- operations ----------------------------------------------------------------
    def initialize(self) -> None:
        """Create the root directory / bucket when missing."""
        with self._translate(""):
            self._backend.initialize()

    def check(self) -> None:
        """Write and delete a probe; ObjectStoreUnavailable (with the reason) when that fails."""
        try:
            self._backend.check()
        except Exception as exc:
            reason = _reason(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise ObjectStoreUnavailable(f"object store {self.url} unavailable: {reason}") from exc

    def cleanup_incomplete(self, older_than_s: float = 24 * 3600) -> int:
        """Remove leftovers of killed writers (temp files, incomplete multipart uploads)."""
        with self._translate(""):
            return self._backend.cleanup_incomplete(older_than_s)
