"""Schemathesis over the app's OpenAPI schema: no generated request gets a 5xx.

Bounded: a few examples per operation and generation mode, derandomized (reproducible),
with a valid bearer token of the right kind. Positive cases reuse real keys for the path
parameters so bodies and queries reach the state store; negative cases fuzz everything.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from api_helpers import submit_toy  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from tests.plugins.api_server import make_settings  # noqa: E402

MAX_EXAMPLES = 8


def _schema():
    from alchemiscale_local.api import create_app

    app = create_app(make_settings(Path(tempfile.mkdtemp(prefix="schema-"))))
    return schemathesis.openapi.from_dict(app.openapi())


SCHEMA = _schema()
OPERATIONS = sorted((op.method.upper(), op.path) for op in (r.ok() for r in SCHEMA.get_all_operations()))


@pytest.fixture(scope="module")
def real_keys(api_server):
    with api_server.client() as client:
        net, _, tfs = submit_toy(client, "org1-fuzz-proj", n=2)
        tasks = client.create_tasks(tfs[0], count=2)
        client.action_tasks(tasks, net)
        cs = client.get_network_chemicalsystems(net)[0]
    return {
        "network": str(net),
        "transformation": str(tfs[0]),
        "chemicalsystem": str(cs),
        "task": str(tasks[0]),
        "scoped_key": str(net),
        "identifier": "test-user",
        "scope": "org1-fuzz-proj",
    }


def test_schema_covers_the_api():
    assert len(OPERATIONS) >= 60
    assert ("POST", "/compute/claim") in OPERATIONS and ("GET", "/networks/{network}") in OPERATIONS


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"]
)
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_server_errors(api_server, real_keys, method, path, mode):
    operation = SCHEMA[path][method]
    role = "compute" if path.startswith("/compute") else "user"
    headers = api_server.headers(role)
    params = {name: real_keys[name] for name in real_keys if "{" + name + "}" in path}
    if params and mode is GenerationMode.POSITIVE:
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=params)
    else:
        strategy = operation.as_strategy(generation_mode=mode)
    failures: list[str] = []

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        response = case.call(base_url=api_server.url, headers=headers, timeout=60)
        if response.status_code >= 500:
            failures.append(
                f"{response.status_code} {response.text[:300]}\n  reproduce: {case.as_curl_command()}"
            )

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            pytest.skip("the operation has no inputs that can be made invalid")
        raise
    assert not failures, "\n".join(failures)
