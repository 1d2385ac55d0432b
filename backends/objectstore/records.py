"""Small value types returned by the object store."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StoredObject:
    """What the state store records for an object: location (relative to the root), size, sha256."""

    location: str
    size: int
    sha256: str
    created: bool = field(default=True, compare=False)  # False when equal bytes were already there


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object."""

    location: str
    size: int


@dataclass(frozen=True)
class TaskFile:
    """A listed task file: its path relative to the task's prefix, where it lives, its size."""

    relpath: str
    location: str
    size: int
