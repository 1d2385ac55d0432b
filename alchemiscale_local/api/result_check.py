"""Checks of an uploaded ProtocolDAGResult before it completes a task (no gufe needed).

An upload must decompress (zstd, bounded size), be a keyed chain (``[[key, dict], ...]``,
root last) whose root is the ProtocolDAGResult named by ``pdr_key``, belong to the task's
transformation (its ``transformation_key`` is that key, or unset), and agree with ``ok``.
"""

from __future__ import annotations

import json
from typing import IO, Any

import zstandard

from alchemiscale_local.runtimes.pdr import summarize

# Decompressed size beyond which an upload is refused (a zstd bomb stops here).
MAX_DECOMPRESSED = 256 << 20


class ResultRejected(ValueError):
    """The upload is not a valid result of the task; the message says why."""


def check_result(spool: IO[bytes], *, pdr_key: str, ok: bool, transformation_key: str) -> list[str]:
    """Validate the zstd bytes in ``spool``; return the tracebacks of its failures."""
    spool.seek(0)
    try:
        with zstandard.ZstdDecompressor().stream_reader(spool, closefd=False) as reader:
            text = reader.read(MAX_DECOMPRESSED + 1)
    except zstandard.ZstdError as exc:
        raise ResultRejected(f"a result must be zstd-compressed keyed-chain JSON: {exc}") from None
    if len(text) > MAX_DECOMPRESSED:
        raise ResultRejected(f"the result decompresses to more than {MAX_DECOMPRESSED} bytes")
    try:
        chain = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ResultRejected(f"a result must be keyed-chain JSON (UTF-8): {exc}") from None
    _check_pairs(chain)
    root_key, root = chain[-1]
    if root.get("__qualname__") != "ProtocolDAGResult":
        raise ResultRejected(f"the result's root is a {root.get('__qualname__')!r}, not a ProtocolDAGResult")
    if root_key != pdr_key:
        raise ResultRejected(
            f"the result's root key {root_key!r} is not the pdr_key {pdr_key!r} sent with it"
        )
    tf = root.get("transformation_key")
    if tf is not None and tf != transformation_key:
        raise ResultRejected(
            f"the result is of transformation {tf!r}, not of the task's transformation {transformation_key!r}"
        )
    try:
        summary = summarize(chain)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResultRejected(f"the ProtocolDAGResult's units and results do not resolve: {exc!r}") from None
    if summary.ok != ok:
        raise ResultRejected(
            f"the upload says ok={str(ok).lower()} but the ProtocolDAGResult is "
            f"{'successful' if summary.ok else 'failed'}"
        )
    return summary.tracebacks


def _check_pairs(chain: Any) -> None:
    if not isinstance(chain, list) or not chain:
        raise ResultRejected("a result must be a non-empty keyed chain [[key, dict], ...]")
    for i, entry in enumerate(chain):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ResultRejected(f"entry {i} of the result is not a [key, dict] pair")
        if not isinstance(entry[1], dict):
            raise ResultRejected(f"entry {i} ({entry[0]}) of the result is not a dict")
