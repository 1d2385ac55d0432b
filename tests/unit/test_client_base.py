"""The client's HTTP base against httpx.MockTransport: retries, token refresh, compression, errors."""

from __future__ import annotations

import gzip
import hashlib
import json

import httpx
import pytest
import zstandard

from alchemiscale_local.client import (
    AlchemiscaleLocalClient,
    AuthError,
    ClientError,
    ComputeClient,
    ConflictError,
    NotFoundError,
    ResultIntegrityError,
    ServerUnavailable,
    ValidationError,
)
from alchemiscale_local.client.credentials import ENV_ID, ENV_KEY, ENV_URL, resolve_credentials
from alchemiscale_local.models import ScopedKey

FAST = {"max_retries": 3, "retry_base_seconds": 0.01, "retry_max_seconds": 0.05}
URL = "http://api.test"


class Server:
    """A scripted fake API: ``routes[(method, path)]`` -> list of responses (last one repeats)."""

    def __init__(self, routes: dict | None = None) -> None:
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []
        self.tokens = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/token":
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"token-{self.tokens}", "token_type": "bearer"})
        script = self.routes.get((request.method, request.url.path))
        if script is None:
            return httpx.Response(404, json={"detail": f"no route {request.url.path}"})
        item = script.pop(0) if len(script) > 1 else script[0]
        return item(request) if callable(item) else item

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def client(server: Server, cls=AlchemiscaleLocalClient, **options):
    if cls is AlchemiscaleLocalClient:  # no disk cache unless a test asks (test_client_cache.py)
        options.setdefault("use_local_cache", False)
    return cls(
        URL, "me", "my-key-0123456789abcdef", transport=httpx.MockTransport(server), **{**FAST, **options}
    )


def test_retries_502_503_504_then_succeeds():
    server = Server(
        {
            ("GET", "/info"): [
                httpx.Response(503, json={"detail": "neo4j down"}),
                httpx.Response(502),
                httpx.Response(504),
                httpx.Response(200, json={"version": "x"}),
            ]
        }
    )
    assert client(server).get_info() == {"version": "x"}
    assert len(server.calls("/info")) == 4


def test_bounded_retries_then_server_unavailable(monkeypatch):
    server = Server(
        {("GET", "/info"): [httpx.Response(503, json={"detail": "backing service unavailable: x"})]}
    )
    slept: list[float] = []
    monkeypatch.setattr("alchemiscale_local.client.base.time.sleep", slept.append)
    with pytest.raises(ServerUnavailable) as info:
        client(server, max_retries=2).get_info()
    assert info.value.status == 503 and "backing service unavailable" in str(info.value)
    assert len(server.calls("/info")) == 3
    # two waits between three attempts, each within the configured ceiling
    assert len(slept) == 2 and all(0 < s <= FAST["retry_max_seconds"] for s in slept), slept


def test_404_is_not_retried():
    server = Server(
        {("GET", "/networks/X-1-a-b-c"): [httpx.Response(404, json={"detail": "no object X-1-a-b-c"})]}
    )
    with pytest.raises(NotFoundError, match="no object X-1-a-b-c") as info:
        client(server).get_network("X-1-a-b-c", visualize=False)
    assert info.value.status == 404 and info.value.detail == "no object X-1-a-b-c"
    assert len(server.calls("/networks/X-1-a-b-c")) == 1


def test_connection_errors_are_retried():
    attempts = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"version": "x"})

    server = Server({("GET", "/info"): [flaky]})
    assert client(server).get_info() == {"version": "x"}
    assert len(attempts) == 3


def test_backoff_grows_with_jitter_and_cap():
    c = client(Server(), retry_base_seconds=1.0, retry_max_seconds=5.0)
    for attempt, step in enumerate([1, 2, 4, 5, 5]):
        delays = {c._backoff(attempt) for _ in range(50)}
        assert all(step * 0.5 <= d <= step for d in delays)
        assert len(delays) > 1  # jitter
    assert c._backoff(0, retry_after="3") == 3.0
    assert c._backoff(0, retry_after="999") == 5.0


def test_one_token_refresh_on_401():
    server = Server(
        {
            ("GET", "/info"): [
                httpx.Response(401, json={"detail": "token expired"}),
                httpx.Response(200, json={"ok": 1}),
            ]
        }
    )
    c = client(server)
    assert c.get_info() == {"ok": 1}
    calls = server.calls("/info")
    assert [r.headers["Authorization"] for r in calls] == ["Bearer token-1", "Bearer token-2"]
    # A second 401 right after the refresh is an error, not a loop.
    server.routes[("GET", "/info")] = [httpx.Response(401, json={"detail": "token expired"})]
    with pytest.raises(AuthError, match="token expired"):
        c.get_info()
    assert server.tokens == 3


def test_token_request_and_wrong_key():
    server = Server()
    server.routes[("GET", "/info")] = [httpx.Response(200, json={})]
    c = client(server)
    c.get_info()
    c.get_info()
    token_req = server.calls("/token")
    assert len(token_req) == 1  # reused
    assert json.loads(token_req[0].content) == {"identifier": "me", "key": "my-key-0123456789abcdef"}

    def deny(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "wrong identifier or key"})

    c2 = AlchemiscaleLocalClient(URL, "me", "bad", transport=httpx.MockTransport(deny), **FAST)
    with pytest.raises(AuthError, match="wrong identifier or key"):
        c2.get_info()


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (422, ValidationError),
        (413, ValidationError),
        (403, AuthError),
        (404, NotFoundError),
        (409, ConflictError),
        (500, ClientError),
        (418, ClientError),
    ],
)
def test_status_to_error_class(status, cls):
    server = Server({("GET", "/info"): [httpx.Response(status, json={"detail": f"d{status}"})]})
    with pytest.raises(cls) as info:
        client(server).get_info()
    assert info.value.status == status and info.value.detail == f"d{status}"
    assert isinstance(info.value, ClientError)


def test_validation_detail_is_readable():
    detail = [{"loc": ["body", "tasks"], "msg": "Field required", "type": "missing"}]
    server = Server({("POST", "/bulk/tasks/status/get"): [httpx.Response(422, json={"detail": detail})]})
    with pytest.raises(ValidationError, match="tasks: Field required"):
        client(server).get_tasks_status(["Task-1-a-b-c"])


def test_non_json_error_body():
    server = Server({("GET", "/info"): [httpx.Response(500, text="<html>oops</html>")]})
    with pytest.raises(ClientError, match="oops"):
        client(server).get_info()


def test_large_json_bodies_are_gzipped():
    server = Server(
        {
            ("POST", "/bulk/tasks/status/get"): [
                lambda r: httpx.Response(
                    200,
                    json=[None]
                    * len(
                        json.loads(
                            gzip.decompress(r.content) if r.headers.get("content-encoding") else r.content
                        )["tasks"]
                    ),
                )
            ]
        }
    )
    c = client(server, compress_threshold=200)
    c.get_tasks_status(["Task-1-a-b-c"])
    small = server.calls("/bulk/tasks/status/get")[-1]
    assert "content-encoding" not in small.headers
    assert small.headers["accept-encoding"] == "gzip"
    keys = [f"Task-{i}-a-b-c" for i in range(100)]
    assert c.get_tasks_status(keys) == [None] * 100
    big = server.calls("/bulk/tasks/status/get")[-1]
    assert big.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(big.content)) == {"tasks": keys}


def test_bulk_calls_are_batched():
    server = Server(
        {
            ("POST", "/bulk/tasks/priority/get"): [
                lambda r: httpx.Response(200, json=[1] * len(json.loads(r.content)["tasks"]))
            ]
        }
    )
    keys = [f"Task-{i}-a-b-c" for i in range(25)]
    assert client(server).get_tasks_priority(keys, batch_size=10) == [1] * 25
    sizes = [len(json.loads(r.content)["tasks"]) for r in server.calls("/bulk/tasks/priority/get")]
    assert sizes == [10, 10, 5]


def test_scoped_keys_and_none_in_bulk_answers():
    server = Server(
        {
            ("POST", "/networks/AlchemicalNetwork-1-a-b-c/tasks/action"): [
                httpx.Response(200, json=["Task-1-a-b-c", None])
            ]
        }
    )
    out = client(server).action_tasks(["Task-1-a-b-c", "Task-2-a-b-c"], "AlchemicalNetwork-1-a-b-c")
    assert out == [ScopedKey.from_str("Task-1-a-b-c"), None]


def test_result_bytes_are_verified():
    chain = [["ProtocolDAGResult-1", {"x": 1}]]
    data = zstandard.ZstdCompressor().compress(json.dumps(chain).encode())
    good = hashlib.sha256(data).hexdigest()
    ref = {"pdr_key": "ProtocolDAGResult-1", "sha256": good, "task": "Task-1-a-b-c"}
    tf = "Transformation-1-a-b-c"
    server = Server(
        {
            ("GET", f"/transformations/{tf}/results"): [httpx.Response(200, json=[ref])],
            ("GET", f"/transformations/{tf}/results/ProtocolDAGResult-1"): [
                httpx.Response(200, content=data, headers={"X-Content-SHA256": good})
            ],
        }
    )
    c = client(server, return_gufe=False)
    assert c.get_transformation_results(tf, return_as="ProtocolDAGResults", visualize=False) == [chain]
    server.routes[("GET", f"/transformations/{tf}/results/ProtocolDAGResult-1")] = [
        httpx.Response(200, content=data + b"x")
    ]
    with pytest.raises(ResultIntegrityError, match="does not match"):
        c.get_transformation_results(tf, return_as="ProtocolDAGResults", visualize=False)


def test_push_result_streams_files_and_retries_from_the_start(tmp_path):
    bodies = []

    def upload(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        if len(bodies) == 1:
            return httpx.Response(503, json={"detail": "busy"})
        return httpx.Response(200, json={"status": "complete"})

    task = "Task-1-a-b-c"
    server = Server({("POST", f"/compute/tasks/{task}/results"): [upload]})
    c = client(server, cls=ComputeClient)
    data = b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 10_000
    path = tmp_path / "r.zst"
    path.write_bytes(data)
    assert c.push_result(task, "svc", "ProtocolDAGResult-1", True, path) == {"status": "complete"}
    assert bodies == [data, data]
    req = server.calls(f"/compute/tasks/{task}/results")[-1]
    assert dict(req.url.params) == {
        "compute_service_id": "svc",
        "pdr_key": "ProtocolDAGResult-1",
        "ok": "true",
    }
    bodies.clear()
    with open(path, "rb") as fh:
        assert c.push_result(task, "svc", "ProtocolDAGResult-1", False, fh)["status"] == "complete"
    assert bodies == [data, data]
    with pytest.raises(ValidationError):
        c.push_result(task, "svc", "p", True, 12345)


def test_claim_returns_none_when_denied():
    server = Server({("POST", "/compute/claim"): [httpx.Response(200, json=None)]})
    assert client(server, cls=ComputeClient).claim_tasks("svc") is None


# -- credentials ------------------------------------------------------------------------------
@pytest.fixture
def no_env(monkeypatch, tmp_path):
    for name in (ENV_URL, ENV_ID, ENV_KEY):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_CONFIG_FILE", str(tmp_path / "cfg" / "config.toml"))
    return monkeypatch


def _write_credentials(path, url="http://file:1"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "api_url": url,
                "user": {"identifier": "fu", "key": "fk"},
                "compute": {"identifier": "fc", "key": "fck"},
            }
        )
    )
    path.chmod(0o600)
    return path


def test_credentials_precedence(no_env, tmp_path):
    path = _write_credentials(tmp_path / "creds.json")
    creds = resolve_credentials(credentials_file=path)
    assert (creds.api_url, creds.identifier, creds.key) == ("http://file:1", "fu", "fk")
    assert creds.sources["key"].startswith("file")
    compute = resolve_credentials(section="compute", credentials_file=path)
    assert (compute.identifier, compute.key) == ("fc", "fck")

    no_env.setenv(ENV_URL, "http://env:2/")
    no_env.setenv(ENV_ID, "eu")
    creds = resolve_credentials(credentials_file=path)
    assert (creds.api_url, creds.identifier, creds.key) == ("http://env:2", "eu", "fk")
    no_env.setenv(ENV_KEY, "ek")
    with pytest.warns(UserWarning, match="overrides"):
        creds = resolve_credentials("http://arg:3", credentials_file=path)
    assert (creds.api_url, creds.identifier, creds.key) == ("http://arg:3", "eu", "ek")
    assert creds.sources == {"api_url": "argument", "identifier": "environment", "key": "environment"}


def test_credentials_from_the_deployment_file(no_env, tmp_path):
    from alchemiscale_local.settings import load_settings

    path = _write_credentials(load_settings().credentials_file, url="http://deployed:9")
    assert str(path).startswith(str(tmp_path))
    c = AlchemiscaleLocalClient()
    assert (c.api_url, c.identifier) == ("http://deployed:9", "fu")
    assert ComputeClient().identifier == "fc"


def test_missing_credentials_say_where_to_look(no_env, tmp_path):
    with pytest.raises(AuthError) as info:
        AlchemiscaleLocalClient(credentials_file=tmp_path / "none.json")
    msg = str(info.value)
    assert ENV_URL in msg and ENV_ID in msg and ENV_KEY in msg and "none.json" in msg and "up" in msg
    with pytest.raises(AuthError, match="no key"):
        AlchemiscaleLocalClient("http://x", "id", credentials_file=tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AuthError, match="cannot read credentials file"):
        AlchemiscaleLocalClient(credentials_file=bad)


def test_return_gufe_option():
    from alchemiscale_local.client.documents import gufe_available

    if gufe_available():
        assert AlchemiscaleLocalClient(URL, "a", "b")._as_gufe is True
    else:
        with pytest.raises(ImportError):
            AlchemiscaleLocalClient(URL, "a", "b", return_gufe=True)
        assert AlchemiscaleLocalClient(URL, "a", "b")._as_gufe is False
    assert AlchemiscaleLocalClient(URL, "a", "b", return_gufe=False)._as_gufe is False


def test_documents_from_objects_with_to_keyed_chain(tmp_path):
    from alchemiscale_local.client.documents import to_keyed_chain

    chain = [["A-1", {"x": 1}], ["B-2", {"a": {":gufe-key:": "A-1"}}]]

    class Fake:
        def to_keyed_chain(self):
            return [tuple(e) for e in chain]

    assert to_keyed_chain(Fake()) == chain
    assert to_keyed_chain(tuple(tuple(e) for e in chain)) == chain
    gz = tmp_path / "chain.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(chain).encode()))
    assert to_keyed_chain(gz) == chain
    for bad in ("[not json", [["only-one"]], 42):
        with pytest.raises(ValidationError):
            to_keyed_chain(bad)


def test_ambiguous_failures_are_not_repeated_for_claims_and_creation():
    attempts: dict[str, int] = {}

    def timeout(request: httpx.Request) -> httpx.Response:
        attempts[request.url.path] = attempts.get(request.url.path, 0) + 1
        raise httpx.ReadTimeout("slow", request=request)

    server = Server(
        {
            ("POST", "/compute/claim"): [timeout],
            ("GET", "/info"): [timeout],
            ("POST", "/transformations/T-1-a-b-c/tasks"): [timeout],
            ("POST", "/bulk/tasks/status/get"): [timeout],
        }
    )
    with pytest.raises(ServerUnavailable, match="may or may not have taken effect"):
        client(server, cls=ComputeClient).claim_tasks("svc")
    with pytest.raises(ServerUnavailable, match="may or may not"):
        client(server).create_tasks("T-1-a-b-c")
    with pytest.raises(ServerUnavailable, match="gave up after 4 attempts"):
        client(server).get_info()
    with pytest.raises(ServerUnavailable, match="gave up"):
        client(server).get_tasks_status(["Task-1-a-b-c"])  # a read, even though it is a POST
    assert attempts == {
        "/compute/claim": 1,
        "/transformations/T-1-a-b-c/tasks": 1,
        "/info": 4,
        "/bulk/tasks/status/get": 4,
    }
