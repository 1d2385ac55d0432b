"""The user client's disk cache of immutable objects, as alchemiscale's (diskcache, LRU, size-capped).

Only what can never change under its key is kept: networks, transformations and chemical
systems (their keys are content hashes) and stored results (kept under their location and
sha256, and checked against that sha256 again when read back).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import zstandard

log = logging.getLogger(__name__)

DEFAULT_SIZE_LIMIT = 1 << 30  # 1 GiB, alchemiscale's default


def default_cache_directory() -> Path:
    """``$XDG_CACHE_HOME/alchemiscale-local`` (default ``~/.cache/alchemiscale-local``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "alchemiscale-local"


class ObjectCache:
    """``get``/``add`` of bytes under a string key; a no-op when disabled."""

    def __init__(
        self,
        directory: Path | str | None = None,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        enabled: bool = True,
    ) -> None:
        if not (directory is None or isinstance(directory, (str, Path))):
            raise TypeError("`cache_directory` must be a `str`, `pathlib.Path`, or `None`.")
        if size_limit < 0:
            raise ValueError("`cache_size_limit` must be greater than or equal to zero.")
        self.enabled = enabled
        self.size_limit = size_limit
        self.directory = (Path(directory) if directory is not None else default_cache_directory()).resolve()
        self._cache: Any = None
        if enabled:
            from diskcache import Cache

            self._cache = Cache(
                str(self.directory), size_limit=size_limit, eviction_policy="least-recently-used"
            )

    def get(self, key: str) -> bytes | None:
        if self._cache is None:
            return None
        try:
            return self._cache.get(key)
        except Exception as exc:  # a broken cache must never break a call: fetch again
            log.warning("client cache read failed for %s: %s", key, exc)
            return None

    def add(self, key: str, value: bytes) -> None:
        if self._cache is not None:
            try:
                self._cache.add(key, value)
            except Exception as exc:
                log.warning("client cache write failed for %s: %s", key, exc)

    def delete(self, key: str) -> None:
        if self._cache is not None:
            self._cache.delete(key)

    def get_text(self, key: str) -> str | None:
        """A cached document's JSON text (stored zstd-compressed); None if absent or unreadable."""
        data = self.get(key)
        if data is None:
            return None
        try:
            return zstandard.ZstdDecompressor().decompress(data).decode()
        except (zstandard.ZstdError, UnicodeDecodeError):
            self.delete(key)
            return None

    def add_text(self, key: str, text: str) -> None:
        if self._cache is not None:
            self.add(key, zstandard.ZstdCompressor().compress(text.encode()))

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
