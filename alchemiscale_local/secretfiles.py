"""Private files for secrets and credentials: 0700 directories, 0600 files, atomic writes."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 for the leaf; return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically with mode 0600 (the file never exists with wider modes)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def write_private_json(path: Path, data: Any) -> Path:
    return write_private_text(path, json.dumps(data, indent=2) + "\n")


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """The secret stored in ``path``, generated (URL-safe, 0600) on first use."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            os.chmod(path, 0o600)
            return value
    value = secrets.token_urlsafe(nbytes)
    write_private_text(path, value)
    return value
