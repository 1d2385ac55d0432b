"""One wire contract: the bodies our clients send are the models the routes declare, keys are
parsed once (path keys by one dependency, body keys by the wire models) and follow one pattern."""

from __future__ import annotations

import re

import pytest
from alchemiscale_local.backends.statestore import InvalidInput
from alchemiscale_local.backends.statestore.base import key_of, key_strs, parse_sk

from alchemiscale_local import keyedchain, wire
from alchemiscale_local.api.app import create_app
from alchemiscale_local.client._wire import wire_body
from alchemiscale_local.client.errors import ValidationError
from alchemiscale_local.models import GUFE_KEY_RE, InvalidIdentifier, ScopedKey
from alchemiscale_local.settings import Settings

TASK = "Task-0123abcd-org-camp-proj"
NET = "AlchemicalNetwork-0123abcd-org-camp-proj"


@pytest.fixture(scope="module")
def openapi() -> dict:
    app = create_app(Settings(api={"jwt_secret": "x" * 32}), store=object(), objects=object())  # type: ignore[arg-type]
    return app.openapi()


def test_every_path_segment_is_a_declared_path_parameter(openapi):
    """Keys parsed by a dependency (TaskKey, ...) still appear as path parameters to clients."""
    missing = []
    for path, ops in openapi["paths"].items():
        wanted = set(re.findall(r"{(\w+)(?::path)?}", path))
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            if wanted - declared:
                missing.append(f"{method.upper()} {path}: {sorted(wanted - declared)}")
    assert not missing, missing


@pytest.mark.parametrize(
    ("method", "path", "model"),
    [
        ("post", "/bulk/tasks/status/set", wire.TaskStatusBody),
        ("post", "/bulk/tasks/status/get", wire.LooseTaskKeysBody),
        ("post", "/networks/{network}/tasks/action", wire.ActionBody),
        ("post", "/transformations/{transformation}/tasks", wire.CreateTasksBody),
        ("post", "/bulk/networks/weight/set", wire.NetworkWeightsBody),
        ("post", "/networks/{network}/strategy", wire.StrategyBody),
        ("post", "/compute/claim", wire.ClaimBody),
        ("post", "/compute/computeservice/{identifier}/tasks/unwanted", wire.ServiceTasksBody),
        ("post", "/compute/tasks/{task}/files/{pdr_key}/manifest", wire.ManifestBody),
    ],
)
def test_routes_declare_the_wire_models(openapi, method, path, model):
    schema = openapi["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}


def test_wire_body_sends_keys_as_strings_and_accepts_objects():
    sk = ScopedKey.from_str(TASK)
    body = wire_body(wire.TaskStatusBody, tasks=[sk, TASK, sk.to_dict()], status="invalid")
    assert body == {"tasks": [TASK, TASK, TASK], "status": "invalid"}
    # fields not given stay out (an older server's defaults apply); given ones go, null included
    assert wire_body(wire.ClaimBody, compute_service_id="svc") == {"compute_service_id": "svc"}
    assert wire_body(wire.BulkResultsBody, transformations=[], ok=None) == {"transformations": [], "ok": None}
    # bulk getters: an unreadable key is sent as null (the server answers None for it)
    assert wire_body(wire.LooseTaskKeysBody, tasks=["nonsense", TASK]) == {"tasks": [None, TASK]}


def test_wire_body_refuses_what_the_route_would_with_its_message():
    with pytest.raises(ValidationError) as err:
        wire_body(wire.TaskKeysBody, tasks=["Task-1-org-camp"])
    assert err.value.status == 422
    assert "tasks.0" in str(err.value) and "<Qualname>-<token>-<org>-<campaign>-<project>" in str(err.value)
    with pytest.raises(ValidationError, match="priority"):
        wire_body(wire.TaskPriorityBody, tasks=[TASK], priority=0)


def test_store_checks_the_class_of_a_scoped_key_without_parsing_it_again():
    sk = ScopedKey.from_str(TASK)
    assert key_of(sk, "Task") is sk
    assert key_strs([sk], "Task") == [TASK]
    with pytest.raises(InvalidInput, match="is not a AlchemicalNetwork"):
        key_of(sk, "AlchemicalNetwork")
    # strings from untyped callers and the graph are still parsed, never trusted
    assert parse_sk(NET, qualname="AlchemicalNetwork") == ScopedKey.from_str(NET)
    with pytest.raises(InvalidInput):
        key_of("Task-1-org-camp-proj\n", "Task")
    with pytest.raises(InvalidInput):
        key_of(42, "Task")  # type: ignore[arg-type]


def test_one_gufe_key_pattern():
    assert keyedchain.KEY_RE is GUFE_KEY_RE
    assert GUFE_KEY_RE.match("Transformation-abc123")
    for bad in ("Transformation-abc123\n", "1abc-def", "Transformation-", "Trans formation-abc"):
        assert not GUFE_KEY_RE.match(bad)
        with pytest.raises((InvalidIdentifier, ValueError)):  # pydantic wraps the model's own check
            ScopedKey.from_str(f"{bad}-org-camp-proj")
