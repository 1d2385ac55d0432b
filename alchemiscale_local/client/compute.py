"""``ComputeClient``: what a compute service uses (routes under ``/compute``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from alchemiscale_local.models import ComputeServiceRegistration, Scope, ScopedKey
from alchemiscale_local.wire import ClaimBody, ServiceTasksBody

from ._files import ComputeTaskFilesMixin
from ._wire import wire_body
from .base import BaseClient, seg, to_sk
from .documents import verify_sha256
from .errors import ValidationError

SK = ScopedKey | str
CHUNK = 1 << 20


def _file_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(CHUNK):
        yield chunk


class ComputeClient(ComputeTaskFilesMixin, BaseClient):
    """Client of the compute API, for compute services.

    Credentials as for the user client, from the ``compute`` section of the credentials file.
    """

    credentials_section = "compute"

    # -- registration -------------------------------------------------------------------
    def register(
        self,
        compute_service_id: str,
        *,
        hostname: str | None = None,
        pid: int | None = None,
        gpu: str | None = None,
        runtimes: list[str] | None = None,
    ) -> str:
        """Register (or re-register) a compute service; returns its identifier."""
        body = wire_body(
            ComputeServiceRegistration,
            identifier=compute_service_id,
            hostname=hostname or socket.gethostname(),
            pid=os.getpid() if pid is None else pid,
            gpu=gpu,
            runtimes=list(runtimes or []),
        )
        return self._post(f"/compute/computeservice/{seg(compute_service_id)}/register", body)

    def heartbeat(self, compute_service_id: str) -> str:
        """Tell the server the service is alive (NotFoundError once it has been expired)."""
        return self._post(f"/compute/computeservice/{seg(compute_service_id)}/heartbeat")

    def deregister(self, compute_service_id: str) -> str:
        """Remove the registration; the service's running tasks go back to waiting."""
        return self._post(f"/compute/computeservice/{seg(compute_service_id)}/deregister")

    def unwanted_tasks(self, compute_service_id: str, tasks: list[SK]) -> list[str]:
        """Of ``tasks`` (running on this service), those it should stop: cancelled, claim lost,
        no longer running, or their network inactive/deleted."""
        body = wire_body(ServiceTasksBody, tasks=list(tasks))
        got = self._post(f"/compute/computeservice/{seg(compute_service_id)}/tasks/unwanted", body)
        return list(got["stop"])

    # -- claims and inputs ----------------------------------------------------------------
    def claim_tasks(
        self,
        compute_service_id: str,
        count: int = 1,
        scopes: Sequence[Scope | str] | None = None,
        protocols: Sequence[str] | None = None,
        scopes_exclude: Sequence[Scope | str] | None = None,
    ) -> list[ScopedKey | None] | None:
        """Claim up to ``count`` tasks (none in ``scopes_exclude``); a list padded with None, or
        None when the service is denied."""
        fields: dict[str, Any] = {
            "compute_service_id": compute_service_id,
            "count": count,
            "scopes": [str(s) for s in (scopes or ["*-*-*"])],
            "protocols": list(protocols) if protocols else None,
        }
        if scopes_exclude:  # only when set, so older servers keep accepting the body
            fields["scopes_exclude"] = [str(s) for s in scopes_exclude]
        body = wire_body(ClaimBody, **fields)
        got = self._post("/compute/claim", body, idempotent=False)
        return None if got is None else [to_sk(k) for k in got]

    def get_task_transformation(self, task: SK) -> ScopedKey:
        """The task's transformation ScopedKey."""
        return ScopedKey.from_str(self._get(f"/compute/tasks/{seg(task)}/transformation"))

    def get_task_inputs(self, task: SK) -> dict[str, Any]:
        """What running the task needs: ``{task, transformation_key, protocol, protocol_module,
        extends, extends_result, transformation}`` (the transformation as a keyed chain)."""
        return self._get(f"/compute/tasks/{seg(task)}/inputs")

    def get_extends_result(self, task: SK) -> bytes:
        """zstd bytes of the successful result the task extends (sha256 checked)."""
        resp = self._request(
            "GET", f"/compute/tasks/{seg(task)}/extends/result", headers={"Accept-Encoding": "identity"}
        )
        verify_sha256(resp.content, resp.headers.get("X-Content-SHA256"), what=f"extended result of {task}")
        return resp.content

    # -- results -------------------------------------------------------------------------
    def push_result(
        self,
        task: SK,
        compute_service_id: str,
        pdr_key: str,
        ok: bool,
        data: bytes | bytearray | memoryview | str | Path | IO[bytes],
    ) -> dict[str, Any]:
        """Upload a ProtocolDAGResult (zstd keyed-chain JSON), streamed from bytes, a path or a file.

        Returns ``{task, status, location, sha256, size}``. ConflictError when the service no
        longer holds the claim.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
            content: Any = payload
        elif isinstance(data, (str, Path)):
            path = Path(data)

            def content() -> Iterator[bytes]:
                with open(path, "rb") as fh:
                    yield from _file_chunks(fh)
        elif hasattr(data, "read"):
            start = data.tell() if data.seekable() else None

            def content() -> Iterator[bytes]:
                if start is not None:
                    data.seek(start)
                return _file_chunks(data)
        else:
            raise ValidationError(None, "data must be bytes, a path or a binary file object")
        params = {
            "compute_service_id": compute_service_id,
            "pdr_key": pdr_key,
            "ok": "true" if ok else "false",
        }
        resp = self._request(
            "POST",
            f"/compute/tasks/{seg(task)}/results",
            params=params,
            content=content,
            headers={"Content-Type": "application/zstd"},
            idempotent=False,
        )
        return resp.json()
