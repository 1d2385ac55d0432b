"""Files the TOY protocol leaves in its shared directory, like a real protocol's analysis outputs.

A small JSON summary, a tiny real PNG and a log line, so that keeping a task's files (upload,
listing, download) is exercised without gufe. Called once per task from the toy's execution.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path
from typing import Any

log = logging.getLogger("alchemiscale_local.runtimes.toy")

SUMMARY = "toy_summary.json"
PLOT = "toy_plot.png"
LOG = "toy.log"


def tiny_png(width: int = 8, height: int = 8, seed: int = 0) -> bytes:
    """A valid ``width`` x ``height`` greyscale PNG (a gradient shifted by ``seed``)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + bytes((seed + x * 31 + y * 7) % 256 for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def write_toy_outputs(shared: Path, task_key: str, summary: dict[str, Any]) -> list[Path]:
    """Write the toy's files into ``shared`` and log one line; returns the files written."""
    shared.mkdir(parents=True, exist_ok=True)
    body = {"task": task_key, "toy": True, **summary}
    seed = int.from_bytes(task_key.encode()[-2:], "big") % 256 if task_key else 0
    written = [shared / SUMMARY, shared / PLOT, shared / LOG]
    written[0].write_text(json.dumps(body, indent=1, sort_keys=True, default=str))
    written[1].write_bytes(tiny_png(seed=seed))
    with open(written[2], "a", encoding="utf-8") as fh:
        fh.write(f"toy protocol ran {task_key}: {summary.get('n_values', 0)} value(s)\n")
    log.info("toy protocol wrote %s to %s", ", ".join(p.name for p in written), shared)
    return written
