"""Key squatting (issue 12, F6): a key that cannot be verified from its content can never be
given different content in a scope; the resubmission is refused with 409 naming the key.

Real Neo4j and a live API. The openfe document is ``tests/fixtures/openfe-1.11.1_
RelativeHybridTopologyProtocol_default.json``, written by openfe 1.11.1 / gufe 1.10
(``RelativeHybridTopologyProtocol(RelativeHybridTopologyProtocol.default_settings()).to_json()``).
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from alchemiscale_local.gufekeys import make_key
from alchemiscale_local.runtimes.toy import build_toy_network

RHTP = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "openfe-1.11.1_RelativeHybridTopologyProtocol_default.json"
)


def _submit(server, chain: list, scope: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/networks",
        json={"network": chain, "scope": scope},
        headers=server.headers("user"),
        timeout=120,
    )


def _protocol_index(chain: list) -> int:
    return next(i for i, (_, d) in enumerate(chain) if d["__qualname__"].endswith("Protocol"))


def _with_protocol(chain: list, key: str, doc: dict) -> list:
    """``chain`` with its protocol replaced by (key, doc); keys that depend on it recomputed."""
    i = _protocol_index(chain)
    renamed = {chain[i][0]: key}
    out: list[list[Any]] = []
    for n, (k, d) in enumerate(chain):
        if n == i:
            out.append([key, doc])
            continue
        text = json.dumps(d)
        for old, new in renamed.items():
            text = text.replace(f'"{old}"', f'"{new}"')
        if text == json.dumps(d):
            out.append([k, d])
            continue
        nd = json.loads(text)
        renamed[k] = make_key(nd)
        out.append([renamed[k], nd])
    return out


def _stored_protocol(server, scope: str, key: str) -> dict:
    return json.loads(server.store.get_keyed_chain_json(f"{key}-{scope}"))[-1][1]


def test_toy_protocol_key_cannot_be_squatted(api_server):
    scope = f"org1-squat-p{uuid.uuid4().hex[:8]}"
    legit = build_toy_network(2, name="legit", settings={"fail_rate": 0.0})
    i = _protocol_index(legit)
    key = legit[i][0]
    squat = copy.deepcopy(legit)
    squat[i][1]["settings"]["fail_rate"] = 1.0  # same key, a protocol that always fails

    assert _submit(api_server, squat, scope).status_code == 200  # first come
    resp = _submit(api_server, legit, scope)
    assert resp.status_code == 409, resp.text
    assert key in resp.json()["detail"] and "different document" in resp.json()["detail"]
    # Nothing of the refused submission was written; the stored protocol is the first one.
    assert _stored_protocol(api_server, scope, key)["settings"]["fail_rate"] == 1.0
    # The same document again is fine (idempotent), and other scopes are unaffected.
    assert _submit(api_server, squat, scope).status_code == 200
    assert _submit(api_server, legit, f"org1-squat-q{uuid.uuid4().hex[:8]}").status_code == 200
    # Member order is not content: the stored document, reordered, is accepted.
    reordered = copy.deepcopy(squat)
    reordered[i][1] = dict(reversed(list(reordered[i][1].items())))
    assert _submit(api_server, reordered, scope).status_code == 200


def test_openfe_protocol_key_cannot_be_squatted(api_server):
    ((key, rhtp),) = json.loads(RHTP.read_text())
    assert (
        rhtp["__module__"].startswith("openfe.") and rhtp["__qualname__"] == "RelativeHybridTopologyProtocol"
    )
    scope = f"org1-squat-o{uuid.uuid4().hex[:8]}"
    legit = _with_protocol(build_toy_network(2, name="openfe"), key, rhtp)
    squat_doc = copy.deepcopy(rhtp)
    squat_doc["settings"]["protocol_repeats"] = 99
    squat = _with_protocol(build_toy_network(2, name="openfe"), key, squat_doc)
    assert [k for k, _ in squat] == [k for k, _ in legit]  # same keys throughout

    assert _submit(api_server, legit, scope).status_code == 200
    resp = _submit(api_server, squat, scope)
    assert resp.status_code == 409, resp.text
    assert key in resp.json()["detail"]
    assert _stored_protocol(api_server, scope, key) == rhtp
    assert _submit(api_server, legit, scope).status_code == 200


def test_verified_keys_are_unaffected(api_server):
    """gufe-table objects are checked by their key; a reordered document of one is accepted."""
    scope = f"org1-squat-v{uuid.uuid4().hex[:8]}"
    chain = build_toy_network(2, name="verified")
    assert _submit(api_server, chain, scope).status_code == 200
    root = chain[-1]
    changed = copy.deepcopy(chain)
    changed[-1] = [root[0], dict(root[1], name="another name")]  # key no longer matches
    resp = _submit(api_server, changed, scope)
    assert resp.status_code == 400 and "does not match" in resp.json()["detail"]


@pytest.fixture(autouse=True)
def _fixture_present():
    if not RHTP.is_file():
        pytest.fail(f"missing test fixture {RHTP}")
