"""Chunked input normalisation, hashing while streaming, and checksum-verifying readers."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from .errors import ChecksumMismatch, ObjectTooLarge

CHUNK_SIZE = 1 << 20

#: What ``push_result`` / ``put_task_file`` accept: bytes, a binary file-like, or an iterable of chunks.
Chunk = bytes | bytearray | memoryview
Data = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


def iter_chunks(data: Data, chunk_size: int = CHUNK_SIZE) -> Iterator[Chunk]:
    """Yield ``data`` as byte chunks without copying it whole into memory."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), chunk_size):
            yield view[start : start + chunk_size]
        return
    if isinstance(data, str):
        raise TypeError("expected bytes, a binary file-like or an iterable of bytes, got str")
    read = getattr(data, "read", None)
    if callable(read):
        while True:
            chunk = read(chunk_size)
            if not chunk:
                return
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"file-like returned {type(chunk).__name__}; open it in binary mode")
            yield chunk
        return
    for chunk in data:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"chunks must be bytes-like, got {type(chunk).__name__}")
        if len(chunk):
            yield chunk


class Digest:
    """sha256 and size of a stream, computed while it passes through :meth:`wrap`."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self._sha = hashlib.sha256()
        self.size = 0
        self.max_bytes = max_bytes

    def wrap(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """Pass chunks through, hashing and counting; raise ObjectTooLarge past ``max_bytes``."""
        for chunk in chunks:
            self.size += len(chunk)
            if self.max_bytes is not None and self.size > self.max_bytes:
                raise ObjectTooLarge(f"object is larger than the limit of {self.max_bytes} bytes")
            self._sha.update(chunk)
            yield chunk

    def consume(self, chunks: Iterable[Chunk]) -> None:
        """Hash a (not yet wrapped) stream to its end without writing it anywhere."""
        for _ in self.wrap(chunks):
            pass

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def digest_stream(fileobj: BinaryIO, chunk_size: int = CHUNK_SIZE) -> tuple[int, str]:
    """``(size, sha256)`` of a readable binary stream."""
    digest = Digest()
    digest.consume(iter_chunks(fileobj, chunk_size))
    return digest.size, digest.sha256


class VerifyingReader(io.RawIOBase):
    """A sequential, read-only stream that checks sha256 when it reaches EOF.

    Raises :class:`ChecksumMismatch` from the read that hits EOF when the digest differs.
    Closing it closes the wrapped stream.
    """

    def __init__(self, raw: BinaryIO, location: str, sha256: str | None) -> None:
        super().__init__()
        self._raw = raw
        self._location = location
        self._expected = sha256.lower() if sha256 else None
        self._sha = hashlib.sha256()
        self._checked = False
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        n = len(data)
        if n:
            view[:n] = data
            self._sha.update(data)
            self.bytes_read += n
        elif not self._checked:
            self._checked = True
            actual = self._sha.hexdigest()
            if self._expected is not None and actual != self._expected:
                raise ChecksumMismatch(self._location, self._expected, actual)
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                super().close()


def verifying_reader(
    raw: BinaryIO, location: str, sha256: str | None, buffer_size: int = CHUNK_SIZE
) -> BinaryIO:
    """Wrap ``raw`` in a buffered :class:`VerifyingReader`."""
    return io.BufferedReader(VerifyingReader(raw, location, sha256), buffer_size)
