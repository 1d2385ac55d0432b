"""Task files: a real compute service keeps what the toy protocol left behind; the user gets it back.

Real parts: the session's Neo4j, the API under uvicorn, a ComputeService running real protocol
child processes, and the object store on file:// and on a moto S3 server (loopback).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alchemiscale_local.client.errors import AuthError, ClientError, ConflictError, ValidationError
from alchemiscale_local.compute.service import ComputeService
from alchemiscale_local.runtimes.toy.network import build_toy_network
from alchemiscale_local.runtimes.toy.outputs import tiny_png
from alchemiscale_local.settings import ArtifactSettings, ComputeSettings
from tests.plugins.api_server import running_api

pytestmark = pytest.mark.timeout(240)

BUCKET = "taskfiles-tests"
CREDS = {"key": "testing", "secret": "testing"}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback for the module, with the bucket created."""
    from alchemiscale_local.backends.objectstore import ObjectStore
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        ObjectStore(f"s3://{BUCKET}", {"endpoint_url": endpoint, **CREDS}).initialize()
        try:
            yield endpoint
        finally:
            server.stop()


@contextlib.contextmanager
def _api(neo4j_connection: Any, tmp: Path, objects: Any | None) -> Iterator[Any]:
    with running_api(neo4j_connection, tmp) as server:
        if objects is not None:  # same app, object store swapped for the S3 one
            from alchemiscale_local.api import create_app
            from tests.plugins.api_server import serve

            app = create_app(server.settings, store=server.store, objects=objects)
            with serve(app) as url:
                server.url, server.app, server.objects = url, app, objects
                yield server
            return
        yield server


@pytest.fixture(scope="module", params=["file", "s3"])
def api(request: pytest.FixtureRequest, neo4j_connection: Any, tmp_path_factory: Any) -> Iterator[Any]:
    objects = None
    if request.param == "s3":
        from alchemiscale_local.backends.objectstore import ObjectStore

        endpoint = request.getfixturevalue("moto_endpoint")
        objects = ObjectStore(f"s3://{BUCKET}/t-{uuid.uuid4().hex[:10]}", {"endpoint_url": endpoint, **CREDS})
    with _api(neo4j_connection, tmp_path_factory.mktemp("taskfiles"), objects) as server:
        server.kind = request.param
        yield server


@pytest.fixture
def policy(api: Any) -> Iterator[ArtifactSettings]:
    """The API's policy object (tests change it in place); restored afterwards."""
    saved = api.settings.compute.artifacts
    api.settings.compute.artifacts = ArtifactSettings()
    api.store.forget_taskfile_usage(api.objects.url)  # the next upload recounts from the store
    yield api.settings.compute.artifacts
    api.settings.compute.artifacts = saved


def submit(client: Any, scope: str, n: int = 1, **toy: Any) -> list[Any]:
    network = build_toy_network(n, name=f"files {uuid.uuid4().hex[:6]}", settings=toy)
    net = client.create_network(network, scope, visualize=False)
    tasks = client.create_transformations_tasks(client.get_network_transformations(net))
    client.action_tasks(tasks, net)
    return tasks


def run_service(api: Any, workroot: Path, n_tasks: int, policy: ArtifactSettings, scope: str) -> Any:
    settings = ComputeSettings(
        max_tasks=n_tasks,
        idle_backoff_s=0.1,
        idle_backoff_max_s=0.5,
        heartbeat_interval_s=2.0,
        n_retries=0,
        scopes=[scope],
        artifacts=policy,
    )
    with api.compute() as client:
        service = ComputeService(client, settings, workroot, name="filestest")
        return service.run()


def _flat(path: str) -> str:
    """``shared/<unit folder>/name`` as ``shared/name``: gufe's execute_DAG gives each unit a shared
    folder of its own (the toy as a gufe Protocol), the plain toy runtime writes to ``shared/``."""
    parts = path.split("/")
    return f"{parts[0]}/{parts[-1]}" if len(parts) > 2 else path


def test_service_keeps_the_toy_files_and_log(api: Any, policy: ArtifactSettings, tmp_path: Path) -> None:
    scope = f"files-{api.kind}-ok"
    with api.client() as user:
        (task,) = submit(user, scope)
        stats = run_service(api, tmp_path / "work", 1, policy, scope)
        assert stats.completed == 1
        files = {_flat(f["path"]): f for f in user.get_task_files(task)}
        assert set(files) == {
            "protocol.log",
            "shared/toy_summary.json",
            "shared/toy_plot.png",
            "shared/toy.log",
        }
        assert all(f["ok"] is True for f in files.values())
        written = user.download_task_files(task, tmp_path / "dl", visualize=False)
        by_name = {p.name: p for p in written}
        summary = json.loads(by_name["toy_summary.json"].read_text())
        assert summary["task"] == str(task) and summary["ok"] is True
        png = by_name["toy_plot.png"].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert png == tiny_png(seed=int.from_bytes(str(task).encode()[-2:], "big") % 256)
        for path in written:  # byte-equal to what the manifest recorded
            entry = files[_flat(path.relative_to(tmp_path / "dl").as_posix().split("/", 1)[1])]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        log = user.get_task_log(task)
        assert "toy protocol wrote toy_summary.json" in log
        # nothing left on the compute host: no per-task or per-service folder
        assert list((tmp_path / "work").iterdir()) == []


def test_failed_task_keeps_its_files_and_log_too(api: Any, policy: ArtifactSettings, tmp_path: Path) -> None:
    scope = f"files-{api.kind}-fail"
    with api.client() as user:
        (task,) = submit(user, scope, fail_rate=1.0)
        stats = run_service(api, tmp_path / "work", 1, policy, scope)
        assert stats.failed == 1
        assert user.get_tasks_status([task]) == ["error"]
        (manifest,) = user.get_task_files_manifests(task)
        assert manifest["ok"] is False
        assert {"protocol.log", "shared/toy.log"} <= {_flat(f["path"]) for f in manifest["files"]}
        failure = user.get_task_failures(task, return_as="refs", visualize=False)
        assert failure[0]["pdr_key"] == manifest["pdr_key"]  # files sit next to that result


def test_policy_globs_caps_and_quota_at_the_service(
    api: Any, policy: ArtifactSettings, tmp_path: Path
) -> None:
    """Globs choose the files; the quota refuses with a clear message and the result still arrives."""
    scope = f"files-{api.kind}-quota"
    policy.keep = ["*.json"]
    policy.quota_bytes = 0  # only the log would fit... nothing does
    with api.client() as user:
        (task,) = submit(user, scope)
        stats = run_service(api, tmp_path / "work", 1, policy, scope)
        assert stats.completed == 1  # the result is never lost to the files
        assert user.get_task_results(task, return_as="refs", visualize=False)
        (manifest,) = user.get_task_files_manifests(task)
        assert manifest["files"] == []
        reasons = {_flat(s["path"]): s["reason"] for s in manifest["skipped"]}
        assert "task file quota reached" in reasons["protocol.log"]
        assert "compute.artifacts.quota_bytes" in reasons["shared/toy_summary.json"]
        assert reasons["shared/toy_plot.png"] == "not in compute.artifacts.keep"
        with pytest.raises(ClientError) as err:
            user.get_task_log(task)
        assert err.value.status == 404 and "no protocol log kept" in str(err.value)


def _claimed(api: Any, user: Any, compute: Any, scope: str) -> tuple[Any, str]:
    (task,) = submit(user, scope)
    service = f"svc-{uuid.uuid4().hex[:8]}"
    compute.register(service)
    claimed = compute.claim_tasks(service, 1, [scope])
    assert claimed == [task]
    return task, service


def _push(
    compute: Any, task: Any, service: str, pdr: str, path: str, data: bytes, tmp: Path, **kw: Any
) -> dict:
    src = tmp / uuid.uuid4().hex
    src.write_bytes(data)
    sha = kw.pop("sha256", hashlib.sha256(data).hexdigest())
    return compute.push_task_file(task, service, pdr, path, src, sha256=sha, size=kw.pop("size", len(data)))


def test_upload_routes_check_input_caps_and_claims(
    api: Any, policy: ArtifactSettings, tmp_path: Path
) -> None:
    scope = f"files-{api.kind}-routes"
    pdr = f"ProtocolDAGResult-{uuid.uuid4().hex}"
    policy.max_file_bytes = 100
    policy.max_task_bytes = 150
    with api.client() as user, api.compute() as compute:
        task, service = _claimed(api, user, compute, scope)
        assert _push(compute, task, service, pdr, "shared/a.json", b"{}", tmp_path)["size"] == 2
        with pytest.raises(ValidationError, match="max_file_bytes"):
            _push(compute, task, service, pdr, "shared/big.json", b"x" * 101, tmp_path)
        _push(compute, task, service, pdr, "shared/b.json", b"y" * 100, tmp_path)
        with pytest.raises(ValidationError, match="max_task_bytes"):
            _push(compute, task, service, pdr, "shared/c.json", b"z" * 60, tmp_path)
        with pytest.raises(ValidationError, match="sha256"):  # wrong digest: nothing stored
            _push(compute, task, service, pdr, "shared/d.json", b"d", tmp_path, sha256="0" * 64)
        for bad in ("../x.json", "shared/../../x", "manifest.json", "shared/a b.json"):
            with pytest.raises((ValidationError, ClientError)) as err:
                _push(compute, task, service, pdr, bad, b"1", tmp_path)
            assert err.value.status in (None, 400)  # None: refused before sending
        import httpx

        for raw in ("shared/%2E%2E/%2E%2E/x", "shared/a%00b", "%2Fetc%2Fpasswd"):  # server-side checks
            resp = httpx.put(
                f"{api.url}/compute/tasks/{task}/files/{pdr}/{raw}",
                params={"compute_service_id": service, "sha256": "0" * 64, "size": 1},
                content=b"f",
                headers=api.headers("compute"),
            )
            assert resp.status_code == 400, (raw, resp.text)
        with pytest.raises(ValidationError, match="not uploaded"):
            compute.push_task_files_manifest(
                task,
                service,
                pdr,
                {
                    "ok": True,
                    "created": 1.0,
                    "files": [{"path": "shared/d.json", "size": 1, "sha256": "0" * 64}],
                },
            )
        assert user.get_task_files(task) == []  # nothing visible before the manifest
        files = [{"path": "shared/a.json", "size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()}]
        compute.push_task_files_manifest(task, service, pdr, {"ok": True, "created": 1.0, "files": files})
        assert [f["path"] for f in user.get_task_files(task)] == ["shared/a.json"]
        # another service (no claim) cannot add files
        other = f"svc-{uuid.uuid4().hex[:8]}"
        compute.register(other)
        with pytest.raises(ConflictError):
            _push(compute, task, other, pdr, "shared/e.json", b"e", tmp_path)
        # scopes: a user outside the task's scope sees nothing; user tokens cannot upload
        with api.client("limited") as limited, pytest.raises(AuthError):
            limited.get_task_files(task)
        resp = httpx.put(
            f"{api.url}/compute/tasks/{task}/files/{pdr}/shared/f.json",
            params={"compute_service_id": service, "sha256": "0" * 64, "size": 1},
            content=b"f",
            headers=api.headers("user"),
        )
        assert resp.status_code == 403


def test_quota_is_shared_and_counted_from_the_store(
    api: Any, policy: ArtifactSettings, tmp_path: Path
) -> None:
    """The quota covers every task file already stored (counted once, then kept up to date)."""
    scope = f"files-{api.kind}-total"
    pdr = f"ProtocolDAGResult-{uuid.uuid4().hex}"
    with api.client() as user, api.compute() as compute:
        task, service = _claimed(api, user, compute, scope)
        used = sum(
            i.size for i in api.objects.list_prefix("taskfiles") if not i.location.endswith("manifest.json")
        )
        policy.quota_bytes = used + 10
        _push(compute, task, service, pdr, "shared/a.txt", b"0123456789", tmp_path)
        with pytest.raises(ClientError) as err:
            _push(compute, task, service, pdr, "shared/b.txt", b"1", tmp_path)
        assert err.value.status == 507
        assert "task file quota reached" in str(err.value) and "QUOTA_BYTES" in str(err.value)
