"""Object store suite, run against a temp dir (file://) and a real S3 HTTP endpoint (moto on loopback)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from alchemiscale_local.backends.objectstore import (
    ChecksumMismatch,
    InvalidPath,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    ObjectTooLarge,
    StoredObject,
    storage_options_from_settings,
)
from alchemiscale_local.backends.objectstore.paths import TMP_PREFIX
from pydantic import SecretStr

from alchemiscale_local.models import Scope, ScopedKey
from alchemiscale_local.settings import ObjectStoreSettings, Settings

pytestmark = pytest.mark.timeout(180)

BUCKET = "objstore-tests"
CREDS = {"key": "testing", "secret": "testing"}
SCOPE = Scope(org="org", campaign="camp", project="proj")
TF = "Transformation-0123abcd"
PDR = "ProtocolDAGResult-89efcafe"
TASK = "Task-feedbeef01"
MiB = 1 << 20


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server on 127.0.0.1 for the module, with the test bucket created.

    moto checks ``If-None-Match: *`` and then writes without a lock, so two racing
    conditional writes can both succeed there; AWS S3 makes them atomic (one gets 412 or
    409). The server runs in this process, so conditional requests are serialised inside
    moto to give it S3's guarantee, which the concurrency tests rely on.
    """
    from moto.s3.responses import S3Response
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    original = S3Response._key_response
    conditional_lock = threading.Lock()

    def atomic_conditional(self: Any, request: Any, full_url: str) -> Any:
        if request.headers.get("If-None-Match"):
            with conditional_lock:
                return original(self, request, full_url)
        return original(self, request, full_url)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setattr(S3Response, "_key_response", atomic_conditional)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        ObjectStore(f"s3://{BUCKET}", {"endpoint_url": endpoint, **CREDS}).initialize()
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """URL + storage options of a fresh, empty store root (a new prefix per test on S3)."""
    if request.param == "file":
        return {"kind": "file", "url": (tmp_path / "objects").as_uri(), "storage_options": {}}
    endpoint = request.getfixturevalue("moto_endpoint")
    url = f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}"
    return {"kind": "s3", "url": url, "storage_options": {"endpoint_url": endpoint, **CREDS}}


@pytest.fixture
def objstore(backend: dict[str, Any]) -> ObjectStore:
    """Built through settings, as the API does."""
    opts = backend["storage_options"]
    settings = ObjectStoreSettings(
        url=backend["url"],
        endpoint_url=opts.get("endpoint_url"),
        access_key_id=SecretStr(opts["key"]) if "key" in opts else None,
        secret_access_key=SecretStr(opts["secret"]) if "secret" in opts else None,
    )
    return ObjectStore.from_settings(settings)


def pdr_bytes(n: int = 0) -> bytes:
    """zstd-compressed keyed-chain-like JSON, as compute services send it."""
    doc = [[PDR, {"__qualname__": "ProtocolDAGResult", "n": n, "units": list(range(200))}]]
    return zstandard.ZstdCompressor().compress(json.dumps(doc).encode())


def push(objstore: ObjectStore, data: Any, *, ok: bool = True, pdr: str = PDR, **kw: Any) -> StoredObject:
    return objstore.push_result(data, scope=SCOPE, transformation_key=TF, pdr_key=pdr, ok=ok, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- results ----------------------------------------------------------------------------
def test_result_round_trip_with_checksum(objstore: ObjectStore) -> None:
    data = pdr_bytes()
    obj = push(objstore, data)
    assert obj.location == f"protocoldagresult/org/camp/proj/{TF}/results/{PDR}/obj.json.zst"
    assert (obj.size, obj.sha256, obj.created) == (len(data), sha(data), True)
    assert objstore.get_result(obj.location, sha256=obj.sha256) == data  # unchanged bytes
    assert objstore.get_result(obj.location) == data
    assert json.loads(zstandard.ZstdDecompressor().decompress(data))[0][0] == PDR
    with objstore.open_result(obj.location, sha256=obj.sha256) as fh:
        assert fh.read() == data
    assert b"".join(objstore.iter_result(obj.location, obj.sha256, chunk_size=100)) == data
    with pytest.raises(ChecksumMismatch):
        objstore.get_result(obj.location, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch):
        objstore.open_result(obj.location, sha256="0" * 64).read()
    # failures go under failures/; ScopedKey and scope strings are accepted
    tf_sk = ScopedKey(gufe_key=TF, org="org", campaign="camp", project="proj")
    fail = objstore.push_result(data, scope="org-camp-proj", transformation_key=tf_sk, pdr_key=PDR, ok=False)
    assert fail.location == f"protocoldagresult/org/camp/proj/{TF}/failures/{PDR}/obj.json.zst"
    missing = obj.location.replace(PDR, "ProtocolDAGResult-00")
    with pytest.raises(ObjectNotFound):
        objstore.get_result(missing)
    with pytest.raises(ObjectNotFound):
        objstore.iter_result(missing)  # raised on the call, before any chunk is streamed
    with pytest.raises(ObjectNotFound):
        objstore.open_result(missing)


def test_streamed_sources(objstore: ObjectStore) -> None:
    data = os.urandom(3 * MiB + 17)
    pulled: list[int] = []

    def gen() -> Iterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            pulled.append(i)
            yield data[i : i + 256 * 1024]

    a = push(objstore, gen(), pdr="ProtocolDAGResult-a1")
    b = push(objstore, io.BytesIO(data), pdr="ProtocolDAGResult-b1")
    c = push(objstore, bytearray(data), pdr="ProtocolDAGResult-c1")
    assert len(pulled) == 13
    for obj in (a, b, c):
        assert (obj.size, obj.sha256) == (len(data), sha(data))
        assert objstore.get_result(obj.location, obj.sha256) == data
    with pytest.raises(TypeError):
        push(objstore, "text", pdr="ProtocolDAGResult-d1")


def test_claimed_checksum_and_size_limit_store_nothing(objstore: ObjectStore) -> None:
    data = pdr_bytes()
    with pytest.raises(ChecksumMismatch):
        push(objstore, data, sha256="f" * 64)
    with pytest.raises(ObjectTooLarge):
        push(objstore, io.BytesIO(os.urandom(2 * MiB)), max_bytes=MiB)
    assert objstore.list_prefix("") == []
    assert push(objstore, data, sha256=sha(data).upper()).sha256 == sha(data)


def test_corruption_detected_on_read(objstore: ObjectStore, backend: dict[str, Any]) -> None:
    data = pdr_bytes()
    obj = push(objstore, data)
    bad = data[:-1] + bytes([data[-1] ^ 1])
    if backend["kind"] == "file":
        Path(objstore.fs._strip_protocol(backend["url"]), obj.location).write_bytes(bad)
    else:
        objstore.fs.pipe_file(f"{backend['url'][5:]}/{obj.location}", bad)
    with pytest.raises(ChecksumMismatch):
        objstore.get_result(obj.location, obj.sha256)
    with pytest.raises(ChecksumMismatch):
        b"".join(objstore.iter_result(obj.location, obj.sha256))


def test_large_object_multipart(objstore: ObjectStore, backend: dict[str, Any]) -> None:
    data = os.urandom(12 * MiB)
    obj = push(objstore, (data[i : i + MiB] for i in range(0, len(data), MiB)))
    assert (obj.size, obj.sha256) == (len(data), sha(data))
    assert objstore.get_result(obj.location, obj.sha256) == data
    with objstore.open_result(obj.location, obj.sha256) as fh:
        assert sha(fh.read()) == obj.sha256
    if backend["kind"] == "s3":  # a multipart upload's ETag is "<md5 of md5s>-<parts>"
        etag = objstore.fs.info(f"{backend['url'][5:]}/{obj.location}")["ETag"].strip('"')
        assert etag.endswith("-2")


def test_rewrite_same_is_noop_different_is_error(objstore: ObjectStore) -> None:
    data = pdr_bytes()
    first = push(objstore, data)
    again = push(objstore, iter([data[:10], data[10:]]))
    assert again == first and again.created is False
    with pytest.raises(ObjectExists):
        push(objstore, pdr_bytes(1))
    assert objstore.get_result(first.location, first.sha256) == data


# -- concurrency and crashes ------------------------------------------------------------
def test_failing_stream_leaves_nothing(objstore: ObjectStore, backend: dict[str, Any]) -> None:
    def broken() -> Iterator[bytes]:
        for _ in range(10):  # past one S3 part, so a multipart upload is in progress
            yield os.urandom(MiB)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="went away"):
        push(objstore, broken())
    assert objstore.list_prefix("") == []
    if backend["kind"] == "file":
        root = Path(objstore.fs._strip_protocol(backend["url"]))
        assert not root.exists() or not any(root.iterdir())  # no temp file, no empty directories
    else:
        bucket, prefix = backend["url"][5:].split("/", 1)
        assert not objstore.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix + "/").get(
            "Uploads"
        )
    assert push(objstore, pdr_bytes()).created


def _race(n: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - collected and checked by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@pytest.mark.parametrize("size", [64 * 1024, 9 * MiB], ids=["small", "multipart"])
def test_concurrent_writers_equal_bytes(objstore: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    results = _race(6, lambda i: push(objstore, data))
    assert all(isinstance(r, StoredObject) for r in results), results
    assert {(r.location, r.size, r.sha256) for r in results} == {(results[0].location, size, sha(data))}
    assert sum(r.created for r in results) == 1
    assert objstore.get_result(results[0].location, sha(data)) == data


@pytest.mark.parametrize("size", [64 * 1024, 9 * MiB], ids=["small", "multipart"])
def test_concurrent_writers_different_bytes(objstore: ObjectStore, size: int) -> None:
    contents = [bytes([i]) * size for i in range(6)]
    results = _race(6, lambda i: push(objstore, contents[i]))
    winners = [i for i, r in enumerate(results) if isinstance(r, StoredObject)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ObjectExists) for i, r in enumerate(results) if i != winners[0]), results
    won = results[winners[0]]
    assert objstore.get_result(won.location, won.sha256) == contents[winners[0]]
    assert [o.location for o in objstore.list_prefix("")] == [won.location]


_KILLED_WRITER = """
import json, sys, time
from alchemiscale_local.backends.objectstore import ObjectStore
cfg = json.loads(sys.argv[1])
objstore = ObjectStore(cfg["url"], cfg["storage_options"])
def chunks():
    block = b"\\xab" * (1 << 20)
    for i in range(400):
        yield block
        if i == 12:  # 13 MiB handed over: on S3 at least one 8 MiB part is uploaded
            print("MIDWAY", flush=True)
        if i >= 12:
            time.sleep(0.05)
objstore.push_result(chunks(), scope="org-camp-proj", transformation_key=cfg["tf"], pdr_key=cfg["pdr"], ok=True)
print("FINISHED", flush=True)
"""


def test_writer_killed_mid_write(objstore: ObjectStore, backend: dict[str, Any]) -> None:
    cfg = {"url": backend["url"], "storage_options": backend["storage_options"], "tf": TF, "pdr": PDR}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, json.dumps(cfg)],
        stdout=subprocess.PIPE,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "MIDWAY"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    location = objstore.result_location(SCOPE, TF, PDR, ok=True)
    assert not objstore.exists(location)
    with pytest.raises(ObjectNotFound):
        objstore.get_result(location)
    assert objstore.list_prefix("") == []
    # the half-written upload exists, hidden, until cleanup removes it
    if backend["kind"] == "file":
        root = Path(objstore.fs._strip_protocol(backend["url"]))
        assert [p.name for p in root.rglob(f"{TMP_PREFIX}*")]
    else:
        bucket, prefix = backend["url"][5:].split("/", 1)
        uploads = objstore.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix + "/")
        assert [u["Key"] for u in uploads.get("Uploads", [])] == [f"{prefix}/{location}"]
    assert objstore.cleanup_incomplete(older_than_s=0) >= 1
    if backend["kind"] == "file":
        assert not list(root.rglob(f"{TMP_PREFIX}*"))
    else:
        assert not objstore.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix + "/").get(
            "Uploads"
        )
    data = pdr_bytes()
    obj = push(objstore, data)
    assert objstore.get_result(obj.location, obj.sha256) == data


# -- validation ---------------------------------------------------------------------
BAD_RELPATHS = [
    "..",
    "../x",
    "/abs",
    "/etc/passwd",
    "",
    "a/../b",
    "a/./b",
    ".",
    "a//b",
    "a/",
    "a\\b",
    "a\x00b",
    "x" * 300,
    "a/" * 40 + "b",
    "sp ace",
    "q?x",
    TMP_PREFIX + "x",
]


@pytest.mark.parametrize("relpath", BAD_RELPATHS)
def test_bad_task_file_paths_rejected(objstore: ObjectStore, relpath: str) -> None:
    with pytest.raises(InvalidPath):
        objstore.put_task_file(SCOPE, TASK, relpath, io.BytesIO(b"x"))
    with pytest.raises(InvalidPath):
        objstore.open_task_file(SCOPE, TASK, relpath)
    assert objstore.list_prefix("") == []


@pytest.mark.parametrize(
    "kw",
    [
        {"pdr_key": "../ProtocolDAGResult-1"},
        {"pdr_key": "ProtocolDAGResult-1/../../x"},
        {"pdr_key": ""},
        {"pdr_key": ".."},
        {"pdr_key": "no_token"},
        {"transformation_key": "/abs-1"},
        {"transformation_key": "Transformation-1\\x"},
        {"scope": "org-camp"},
        {"scope": "org-camp-*"},
        {"scope": "o/x-camp-proj"},
        {"transformation_key": ScopedKey(gufe_key=TF, org="other", campaign="camp", project="proj")},
    ],
)
def test_bad_result_keys_rejected(objstore: ObjectStore, kw: dict[str, Any]) -> None:
    args = {"scope": SCOPE, "transformation_key": TF, "pdr_key": PDR, "ok": True, **kw}
    with pytest.raises(InvalidPath):
        objstore.push_result(b"x", **args)
    assert objstore.list_prefix("") == []


@pytest.mark.parametrize(
    "location",
    [
        "../x",
        "/etc/passwd",
        "",
        "protocoldagresult/../../etc/passwd",
        "protocoldagresult//x",
        "taskfiles/org/camp/proj/Task-1/x",
        "protocoldagresult/a\\b",
    ],
)
def test_bad_locations_rejected(objstore: ObjectStore, location: str) -> None:
    for call in (objstore.get_result, objstore.open_result, objstore.delete_result):
        with pytest.raises(InvalidPath):
            call(location)
    with pytest.raises(InvalidPath):
        objstore.list_prefix("a/../b")


# -- task files, listing, deletion, check -----------------------------------------------
def test_task_files(objstore: ObjectStore) -> None:
    other = "Task-0000aaaa"
    files = {"out.log": b"log\n", "shared/traj.dcd": os.urandom(MiB + 5), "shared/sub/x.json": b"{}"}
    for rel, content in files.items():
        stored = objstore.put_task_file(SCOPE, TASK, rel, io.BytesIO(content))
        assert stored.location == f"taskfiles/org/camp/proj/{TASK}/{rel}"
        assert (stored.size, stored.sha256) == (len(content), sha(content))
    objstore.put_task_file("org-camp-proj", other, "out.log", iter([b"other"]))
    listed = objstore.list_task_files(SCOPE, TASK)
    assert [(f.relpath, f.size) for f in listed] == sorted((r, len(c)) for r, c in files.items())
    with objstore.open_task_file(SCOPE, TASK, "shared/traj.dcd", sha(files["shared/traj.dcd"])) as fh:
        assert fh.read(10) == files["shared/traj.dcd"][:10]
        assert fh.read() == files["shared/traj.dcd"][10:]
    with pytest.raises(ObjectExists):
        objstore.put_task_file(SCOPE, TASK, "out.log", io.BytesIO(b"changed"))
    assert objstore.delete_task_files(SCOPE, TASK) == 3
    assert objstore.list_task_files(SCOPE, TASK) == []
    with pytest.raises(ObjectNotFound):
        objstore.open_task_file(SCOPE, TASK, "out.log")
    assert [f.relpath for f in objstore.list_task_files(SCOPE, other)] == ["out.log"]


def test_list_and_delete(objstore: ObjectStore) -> None:
    a = push(objstore, pdr_bytes(1), pdr="ProtocolDAGResult-a1")
    b = push(objstore, pdr_bytes(2), pdr="ProtocolDAGResult-b2", ok=False)
    c = objstore.push_result(
        pdr_bytes(3), scope=SCOPE, transformation_key="Transformation-99", pdr_key=PDR, ok=True
    )
    tf_prefix = f"protocoldagresult/org/camp/proj/{TF}"
    assert [o.location for o in objstore.list_prefix(tf_prefix)] == sorted([a.location, b.location])
    assert [o.location for o in objstore.list_prefix(tf_prefix + "/results/")] == [a.location]
    assert [
        o.location for o in objstore.list_prefix("protocoldagresult/org/camp/proj/Transformation-9")
    ] == []
    assert {(o.location, o.size) for o in objstore.list_prefix("")} == {
        (x.location, x.size) for x in (a, b, c)
    }
    assert objstore.delete_result(a.location) is True
    assert objstore.delete_result(a.location) is False
    with pytest.raises(ObjectNotFound):
        objstore.delete_result(a.location, missing_ok=False)
    with pytest.raises(InvalidPath):
        objstore.delete_prefix("")
    assert objstore.delete_prefix(tf_prefix) == 1
    assert [o.location for o in objstore.list_prefix("")] == [c.location]
    assert push(objstore, pdr_bytes(1), pdr="ProtocolDAGResult-a1").created  # writable again after delete


def test_check(objstore: ObjectStore) -> None:
    objstore.check()
    assert objstore.list_prefix("") == []  # the probe leaves nothing behind


@pytest.mark.timeout(180)
def test_check_unreachable(backend: dict[str, Any], tmp_path: Path) -> None:
    if backend["kind"] == "file":
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        objstore = ObjectStore((blocker / "objects").as_uri())
    else:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        server.stop()
        objstore = ObjectStore(
            backend["url"], {**backend["storage_options"], "endpoint_url": f"http://{host}:{port}"}
        )
    # it fails rather than hangs; the marker's generous deadline guards the hang
    with pytest.raises(ObjectStoreUnavailable, match="unavailable"):
        objstore.check()


def test_missing_bucket(moto_endpoint: str) -> None:
    objstore = ObjectStore("s3://no-such-bucket-x/p", {"endpoint_url": moto_endpoint, **CREDS})
    with pytest.raises(ObjectStoreUnavailable):
        objstore.check()
    with pytest.raises(ObjectStoreUnavailable):
        push(objstore, b"abc")


# -- settings -----------------------------------------------------------------------
def test_default_url_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.objectstore.url == (tmp_path / "objects").as_uri()
    objstore = ObjectStore.from_settings(settings.objectstore)
    assert objstore.is_local
    obj = push(objstore, b"abc")
    assert (tmp_path / "objects" / obj.location).read_bytes() == b"abc"


def test_storage_options_from_settings() -> None:
    s3 = ObjectStoreSettings(
        url="s3://bkt/prefix",
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        access_key_id=SecretStr("AK"),
        secret_access_key=SecretStr("SK"),
        profile="dev",
    )
    assert storage_options_from_settings(s3) == {
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "key": "AK",
        "secret": "SK",
        "profile": "dev",
    }
    assert storage_options_from_settings(ObjectStoreSettings(url="s3://bkt")) == {}  # env / profile chain
    assert storage_options_from_settings(ObjectStoreSettings(url="file:///tmp/x", region="x")) == {}
