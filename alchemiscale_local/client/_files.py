"""Task files: what a protocol left behind (its log, its shared/permanent files).

User side (mixed into the user client): list, download (streamed, sha256-checked, progress on
big downloads) and the protocol log. Compute side (mixed into the compute client): upload one
file and commit an attempt's manifest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alchemiscale_local.models import ScopedKey
from alchemiscale_local.wire import ManifestBody

from . import display
from ._wire import wire_body
from .base import BaseClient, seg
from .errors import ResultIntegrityError, ValidationError

SK = ScopedKey | str
CHUNK = 1 << 20
#: downloads at least this big show a byte progress bar (when ``visualize``)
PROGRESS_BYTES = 8 << 20


class TaskFilesMixin(BaseClient):
    """User methods for the files kept of a task's attempts."""

    def get_task_files(self, task: SK, *, pdr_key: str | None = None) -> list[dict[str, Any]]:
        """Every kept file of the task, oldest attempt first.

        Each entry: ``{pdr_key, ok, path, size, sha256}``. ``path`` is ``protocol.log`` for the
        protocol's log, ``shared/...`` (or ``permanent/...``) for files it wrote, as laid out
        under the shared directory (gufe: ``shared/shared_<unit key>_attempt_<n>/<file>``).
        Files the policy did not keep are in :meth:`get_task_files_manifests` (``skipped``).
        """
        out = []
        for manifest in self.get_task_files_manifests(task):
            if pdr_key is not None and manifest.get("pdr_key") != pdr_key:
                continue
            for entry in manifest.get("files", []):
                out.append({"pdr_key": manifest["pdr_key"], "ok": manifest.get("ok"), **entry})
        return out

    def get_task_files_manifests(self, task: SK) -> list[dict[str, Any]]:
        """One manifest per attempt: ``{pdr_key, ok, created, files, skipped, log_size, ...}``."""
        return self._get(f"/tasks/{seg(task)}/files")

    def get_task_log(self, task: SK, *, pdr_key: str | None = None) -> str:
        """The protocol log of the task's latest attempt (or of ``pdr_key``), as text.

        When the log was longer than the policy's ``max_log_bytes``, this is its tail.
        """
        resp = self._request(
            "GET", f"/tasks/{seg(task)}/log", params={"pdr_key": pdr_key}, headers={"Accept-Encoding": "gzip"}
        )
        _verify(resp.content, resp.headers.get("X-Content-SHA256"), f"protocol log of {task}")
        return resp.content.decode("utf-8", errors="replace")

    def download_task_files(
        self,
        task: SK,
        dest: str | os.PathLike[str],
        *,
        pdr_key: str | None = None,
        visualize: bool = True,
    ) -> list[Path]:
        """Download the task's kept files to ``dest/<pdr key>/<path>``; returns the paths written.

        Each file is streamed to a temporary name, checked against its recorded sha256 and
        only then renamed into place, so a failed download leaves no partial file.
        """
        files = self.get_task_files(task, pdr_key=pdr_key)
        total = sum(f["size"] for f in files)
        root = Path(dest)
        written = []
        show = visualize and total >= PROGRESS_BYTES
        with display.progress(f"downloading {len(files)} file(s) of {task}", total, show) as advance:
            for entry in files:
                target = root / entry["pdr_key"] / Path(*entry["path"].split("/"))
                self._download_one(task, entry, target, advance)
                written.append(target)
        return written

    def _download_one(self, task: SK, entry: dict[str, Any], target: Path, advance: Any) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.part")
        url = f"/tasks/{seg(task)}/files/{seg(entry['pdr_key'])}/{_path_url(entry['path'])}"
        sha = hashlib.sha256()
        try:
            with open(part, "wb") as fh:
                for chunk in self._stream_get(url):
                    fh.write(chunk)
                    sha.update(chunk)
                    advance(len(chunk))
            if sha.hexdigest() != entry["sha256"]:
                raise ResultIntegrityError(
                    None,
                    f"{entry['path']} of {task}: sha256 {sha.hexdigest()} is not the recorded {entry['sha256']}",
                )
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)

    def _stream_get(self, url: str) -> Iterator[bytes]:
        """GET ``url`` as a stream of raw bytes (one attempt; a stale token is refreshed once)."""
        for refresh in (False, True):
            headers = {**self._auth_header(refresh=refresh, stale=self._token), "Accept-Encoding": "identity"}
            with self._http.stream("GET", url, headers=headers) as resp:
                if resp.status_code == 401 and not refresh:
                    continue
                if resp.status_code >= 400:
                    resp.read()
                    raise self._error(resp, "GET", url)
                yield from resp.iter_raw(CHUNK)
                return


class ComputeTaskFilesMixin(BaseClient):
    """Compute-service methods: upload a task's files, then commit the attempt's manifest."""

    def push_task_file(
        self,
        task: SK,
        compute_service_id: str,
        pdr_key: str,
        path: str,
        source: str | os.PathLike[str],
        *,
        sha256: str,
        size: int,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Stream ``size`` bytes of ``source`` from ``offset`` to the task's attempt ``pdr_key``.

        The server checks size and sha256 before the file becomes visible (ValidationError
        otherwise), the policy's caps (413) and the quota (507, a :class:`ClientError`).
        """
        if any(part in ("", ".", "..") for part in path.split("/")):
            raise ValidationError(None, f"task file path {path!r} has an empty, '.' or '..' component")
        src = Path(source)

        def content() -> Iterator[bytes]:
            left = size
            with open(src, "rb") as fh:
                fh.seek(offset)
                while left > 0:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        raise ValidationError(None, f"{src} shrank while it was uploaded")
                    left -= len(chunk)
                    yield chunk

        resp = self._request(
            "PUT",
            f"/compute/tasks/{seg(task)}/files/{seg(pdr_key)}/{_path_url(path)}",
            params={"compute_service_id": compute_service_id, "sha256": sha256, "size": size},
            content=content,
            headers={"Content-Type": "application/octet-stream"},
        )
        return resp.json()

    def push_task_files_manifest(
        self, task: SK, compute_service_id: str, pdr_key: str, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        """Commit the attempt: after this, users see its files (write-once; equal retries are no-ops)."""
        return self._post(
            f"/compute/tasks/{seg(task)}/files/{seg(pdr_key)}/manifest",
            wire_body(ManifestBody, **manifest),
            params={"compute_service_id": compute_service_id},
        )


def _path_url(path: str) -> str:
    return "/".join(seg(part) for part in path.split("/"))


def _verify(data: bytes, expected: str | None, what: str) -> None:
    if expected and hashlib.sha256(data).hexdigest() != expected.lower():
        raise ResultIntegrityError(None, f"{what}: bytes do not match the recorded sha256 {expected}")
