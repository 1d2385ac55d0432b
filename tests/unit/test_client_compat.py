"""alchemiscale-compatible parts of the client that need no server: the disk cache, Scope and
ScopedKey behaviour, alchemiscale's environment variables, and the wire validator.

The client talks to a scripted fake API (``httpx.MockTransport``) as in test_client_base.py.
"""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
import zstandard
from pydantic import ValidationError as PydanticValidationError

from alchemiscale_local import AlchemiscaleClient, Scope, ScopedKey
from alchemiscale_local.wire import ActionBody, LooseTaskKeysBody, ref_token, result_ref_key
from tests.unit.test_client_base import URL, Server, client

NET = "AlchemicalNetwork-1-a-b-c"
CHAIN = [
    ["AlchemicalNetwork-1", {"__qualname__": "AlchemicalNetwork", "name": "n", "nodes": [], "edges": []}]
]


def test_documents_come_from_the_disk_cache_the_second_time(tmp_path):
    server = Server({("GET", f"/networks/{NET}"): [httpx.Response(200, json=CHAIN)]})
    first = client(server, return_gufe=False, use_local_cache=True, cache_directory=tmp_path)
    assert first.get_network(NET, visualize=False) == CHAIN
    first.close()
    # a new client on the same directory reads it without asking the server
    again = client(server, return_gufe=False, use_local_cache=True, cache_directory=tmp_path)
    assert again.get_network(NET, visualize=False) == CHAIN
    assert len(server.calls(f"/networks/{NET}")) == 1
    # another identity does not read what this one fetched
    other = AlchemiscaleClient(
        URL,
        "someone-else",
        "other-key-0123456789abcdef",
        transport=httpx.MockTransport(server),
        return_gufe=False,
        cache_directory=tmp_path,
    )
    assert other.get_network(NET, visualize=False) == CHAIN
    assert len(server.calls(f"/networks/{NET}")) == 2


def test_without_the_cache_every_call_goes_to_the_server(tmp_path):
    server = Server({("GET", f"/networks/{NET}"): [httpx.Response(200, json=CHAIN)]})
    c = client(server, return_gufe=False, use_local_cache=False, cache_directory=tmp_path)
    c.get_network(NET, visualize=False)
    c.get_network(NET, visualize=False)
    assert len(server.calls(f"/networks/{NET}")) == 2
    assert not any(tmp_path.iterdir())


def test_cached_results_are_verified_and_a_bad_entry_is_fetched_again(tmp_path):
    chain = [["ProtocolDAGResult-1", {"x": 1}]]
    data = zstandard.ZstdCompressor().compress(json.dumps(chain).encode())
    sha = hashlib.sha256(data).hexdigest()
    ref = {"pdr_key": "ProtocolDAGResult-1", "sha256": sha, "location": "protocoldagresult/a/b/c/x"}
    tf = "Transformation-1-a-b-c"
    path = f"/transformations/{tf}/results/ProtocolDAGResult-1"
    server = Server(
        {
            ("GET", f"/transformations/{tf}/results"): [httpx.Response(200, json=[ref])],
            ("GET", path): [httpx.Response(200, content=data, headers={"X-Content-SHA256": sha})],
        }
    )
    c = client(server, return_gufe=False, use_local_cache=True, cache_directory=tmp_path)
    get = lambda: c.get_transformation_results(tf, return_as="ProtocolDAGResults", visualize=False)  # noqa: E731
    assert get() == [chain]
    assert get() == [chain]
    assert len(server.calls(path)) == 1  # the second time from the cache
    assert server.calls(path)[0].headers["accept"] == "application/zstd"
    key = c._cache_key(f"result/{ref['location']}/{sha}")
    c._cache._cache.set(key, b"garbage")  # a damaged entry: dropped, fetched again
    assert get() == [chain]
    assert len(server.calls(path)) == 2


def test_cache_options_are_checked_as_alchemiscale_does(tmp_path):
    with pytest.raises(ValueError, match="cache_size_limit"):
        client(Server(), use_local_cache=True, cache_directory=tmp_path, cache_size_limit=-1)
    with pytest.raises(TypeError, match="cache_directory"):
        client(Server(), use_local_cache=True, cache_directory=3)


def test_alchemiscale_environment_variables_are_read_after_ours(monkeypatch):
    for var in ("ALCHEMISCALE_LOCAL_URL", "ALCHEMISCALE_LOCAL_ID", "ALCHEMISCALE_LOCAL_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ALCHEMISCALE_URL", "http://theirs.test")
    monkeypatch.setenv("ALCHEMISCALE_ID", "their-id")
    monkeypatch.setenv("ALCHEMISCALE_KEY", "their-key-0123456789")
    c = AlchemiscaleClient(use_local_cache=False)
    assert (c.api_url, c.identifier) == ("http://theirs.test", "their-id")
    monkeypatch.setenv("ALCHEMISCALE_LOCAL_URL", "http://ours.test")
    assert AlchemiscaleClient(use_local_cache=False).api_url == "http://ours.test"


def test_scope_and_scopedkey_take_alchemiscales_forms():
    assert str(Scope("org", "campaign", "project")) == "org-campaign-project"
    assert Scope("org", "campaign", "project").specific() is True
    assert bool(Scope("org").specific) is False and Scope("org").specific() is False
    assert Scope(org="a", campaign="*") == Scope("a")
    assert Scope.from_dict(Scope("a", "b").to_dict()) == Scope("a", "b")
    with pytest.raises(ValueError):
        Scope(org="*", campaign="a")
    keys = [ScopedKey.from_str(k) for k in ("Task-b-o-c-p", "Task-a-o-c-p")]
    assert [str(k) for k in sorted(keys)] == ["Task-a-o-c-p", "Task-b-o-c-p"]
    assert ScopedKey.from_dict(keys[0].to_dict()) == keys[0]
    assert sorted([Scope("b"), Scope("a")]) == [Scope("a"), Scope("b")]


def test_one_validator_takes_keys_as_strings_or_objects():
    sk = ScopedKey.from_str("Task-1-o-c-p")
    body = ActionBody.model_validate({"tasks": [str(sk), sk.to_dict()]})
    assert body.tasks == [sk, sk]
    with pytest.raises(PydanticValidationError):
        ActionBody.model_validate({"tasks": [{"gufe_key": "Task-1", "org": "o"}]})
    with pytest.raises(PydanticValidationError):
        ActionBody.model_validate({"tasks": ["not a key"]})
    # bulk getters: an unreadable key is None (answered with None), not a refused batch
    assert LooseTaskKeysBody.model_validate({"tasks": ["junk", sk.to_dict()]}).tasks == [None, sk]


def test_result_reference_keys_round_trip():
    ref = result_ref_key("ProtocolDAGResult-abc123", ("o", "c", "p"))
    assert ref == "ProtocolDAGResultRef-abc123-o-c-p"
    assert ref_token(ref) == "abc123"
    assert ref_token("ProtocolDAGResult-abc123") is None
