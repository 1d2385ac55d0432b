"""Exceptions raised by the object store."""

from __future__ import annotations


class ObjectStoreError(Exception):
    """Base class of every object-store error."""


class InvalidPath(ObjectStoreError, ValueError):
    """A path component (scope part, key, file name, relative path) failed validation."""


class ObjectExists(ObjectStoreError, FileExistsError):
    """The key already holds different bytes; objects are write-once."""


class ObjectNotFound(ObjectStoreError, FileNotFoundError):
    """No object at that location."""


class ChecksumMismatch(ObjectStoreError):
    """The bytes read or written do not have the expected sha256."""

    def __init__(self, location: str, expected: str, actual: str) -> None:
        super().__init__(f"checksum mismatch for {location}: expected sha256 {expected}, got {actual}")
        self.location = location
        self.expected = expected
        self.actual = actual


class ObjectTooLarge(ObjectStoreError, ValueError):
    """A streamed upload exceeded the size limit it was given."""


class ObjectStoreUnavailable(ObjectStoreError):
    """The store cannot be reached or written (endpoint down, bad credentials, unwritable root)."""
