"""alchemiscale 0.8's own clients on the TaskHub and compute-manager routes of a live API.

``AlchemiscaleComputeClient.query_taskhubs`` / ``.claim_taskhub_tasks`` get alchemiscale's own
``TaskHub`` objects and ScopedKeys back; a concrete ``ComputeManager`` (its
``create_compute_services`` registers services the way the services it starts would, and
records each call) cycles against the deployment: OK creates services, SKIP when a managed
service is over its failure limit, SHUTDOWN once deregistered. Skips without gufe or alchemiscale.
"""

from __future__ import annotations

import uuid

import pytest

gufe = pytest.importorskip("gufe", reason="needs the science env (real gufe)")
pytest.importorskip(
    "alchemiscale.compute.manager", reason="needs alchemiscale 0.8 (--no-deps) and its client deps"
)

from alchemiscale.compute.client import (  # noqa: E402
    AlchemiscaleComputeClient,
    AlchemiscaleComputeManagerClient,
    AlchemiscaleComputeManagerClientError,
)
from alchemiscale.compute.manager import ComputeManager  # noqa: E402
from alchemiscale.compute.settings import ComputeManagerSettings, ComputeServiceSettings  # noqa: E402
from alchemiscale.models import Scope as AScope  # noqa: E402
from alchemiscale.models import ScopedKey as AScopedKey  # noqa: E402
from alchemiscale.storage.models import (  # noqa: E402
    ComputeManagerID,
    ComputeManagerInstruction,
    ComputeManagerStatus,
    ComputeServiceID,
    TaskHub,
)

from alchemiscale_local.runtimes.toy import build_toy_network  # noqa: E402

CLIENT_OPTIONS = {"max_retries": 1, "retry_base_seconds": 1.1, "retry_max_seconds": 2.0}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """alchemiscale's clients keep a disk cache under XDG_CACHE_HOME when given no directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def networks(user_client):
    """Two submitted toy networks in one fresh scope, the second at weight 0.25; 3 + 1 tasks."""
    scope = f"org1-ahubs-p{uuid.uuid4().hex[:8]}"
    out = []
    for i, count in enumerate((3, 1)):
        chain = build_toy_network(1, name=f"alch hubs {scope} {i}", settings={"repeats": 1})
        net = user_client.create_network(chain, scope, visualize=False)
        (tf,) = user_client.get_network_transformations(net)
        tasks = user_client.create_tasks(tf, count=count)
        user_client.action_tasks(tasks, net)
        out.append((net, [str(t) for t in tasks]))
    user_client.set_network_weight(out[1][0], 0.25)
    return scope, out


def _compute_client(api_server, tmp_path) -> AlchemiscaleComputeClient:
    ident, key = api_server.credentials["compute"]
    return AlchemiscaleComputeClient(
        api_server.url, ident, key, cache_directory=tmp_path / "cc", **CLIENT_OPTIONS
    )


def _manager_client(api_server, tmp_path) -> AlchemiscaleComputeManagerClient:
    ident, key = api_server.credentials["compute"]
    return AlchemiscaleComputeManagerClient(
        api_server.url, ident, key, cache_directory=tmp_path / "mc", **CLIENT_OPTIONS
    )


def test_query_taskhubs_gives_alchemiscales_taskhubs(api_server, networks, tmp_path):
    scope, nets = networks
    client = _compute_client(api_server, tmp_path)
    keys = client.query_taskhubs([AScope.from_str(scope)])
    assert all(isinstance(k, AScopedKey) and k.qualname == "TaskHub" for k in keys) and len(keys) == 2
    hubs = client.query_taskhubs([AScope.from_str(scope)], return_gufe=True)
    assert set(hubs) == set(keys)
    by_network = {hub.network: (sk, hub) for sk, hub in hubs.items()}
    assert set(by_network) == {str(net) for net, _ in nets}
    for (net, _tasks), weight in zip(nets, (0.5, 0.25), strict=True):
        sk, hub = by_network[str(net)]
        assert isinstance(hub, TaskHub) and hub.weight == weight
        # our hub key is alchemiscale's: TaskHub's own gufe key for that network, in its scope
        assert hub.key == sk.gufe_key == TaskHub(network=AScopedKey.from_str(str(net)), weight=weight).key
        assert str(sk.scope) == scope


def test_claim_taskhub_tasks_with_alchemiscales_client(api_server, user_client, networks, tmp_path):
    scope, nets = networks
    client = _compute_client(api_server, tmp_path)
    sid = ComputeServiceID.new_from_name("hubclaims")
    assert client.register(sid) == sid
    keys = {
        hub.network: sk
        for sk, hub in client.query_taskhubs([AScope.from_str(scope)], return_gufe=True).items()
    }
    hub_a, hub_b = (keys[str(net)] for net, _ in nets)
    claimed = client.claim_taskhub_tasks(hub_a, sid, count=4)
    assert len(claimed) == 4 and claimed[3] is None
    assert all(isinstance(t, AScopedKey) for t in claimed[:3])
    assert sorted(map(str, claimed[:3])) == sorted(nets[0][1])
    assert client.claim_taskhub_tasks(hub_b, sid, count=1, protocols=["NoSuchProtocol"]) == [None]
    (task,) = client.claim_taskhub_tasks(hub_b, sid)
    assert str(task) == nets[1][1][0]
    assert user_client.get_tasks_status(nets[0][1] + nets[1][1]) == ["running"] * 4
    assert client.deregister(sid) == sid
    assert user_client.get_tasks_status(nets[0][1]) == ["waiting"] * 3  # released on deregister


class RecordingManager(ComputeManager):
    """A concrete manager: each service it "creates" registers as the real one would, with the
    manager's id; every call is recorded."""

    def __init__(self, *args, compute_client: AlchemiscaleComputeClient, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.compute_client = compute_client
        self.calls: list[tuple[dict, int]] = []
        self.services: list[ComputeServiceID] = []

    def create_compute_services(self, data: dict, target: int) -> int:
        self.calls.append((data, target))
        for _ in range(target):
            sid = ComputeServiceID.new_from_name(f"{self.settings.name}svc")
            self.compute_client.register(sid, compute_manager_id=self.compute_manager_id)
            self.services.append(sid)
        return target


def _manager(api_server, tmp_path, scope: str, name: str) -> RecordingManager:
    ident, key = api_server.credentials["compute"]
    service_settings = ComputeServiceSettings(
        api_url=api_server.url,
        identifier=ident,
        key=key,
        name=f"{name}svc",
        shared_basedir=tmp_path / "shared",
        scratch_basedir=tmp_path / "scratch",
        scopes=[AScope.from_str(scope)],
        claim_limit=1,
    )
    settings = ComputeManagerSettings(
        name=name,
        logfile=None,
        max_compute_services=3,
        max_submit_per_cycle=2,
        sleep_interval=0,
        loglevel="WARNING",
        client_max_retries=1,
        client_retry_base_seconds=1.1,
        client_retry_max_seconds=2.0,
    )
    return RecordingManager(settings, service_settings, compute_client=_compute_client(api_server, tmp_path))


def test_compute_manager_cycles_ok_skip_shutdown(api_server, networks, tmp_path):
    scope, _nets = networks
    name = "mgr" + uuid.uuid4().hex[:8]
    manager = _manager(api_server, tmp_path, scope, name)
    manager._register()
    assert manager.cycle() is True  # OK: 4 waiting tasks, no services -> creates 2 (rate limit)
    ((data, target),) = manager.calls
    assert data == {"compute_service_ids": [], "num_tasks": 4} and target == 2
    assert manager.cycle() is True  # OK: 2 of 3 services -> 1 more
    assert manager.calls[1][1] == 1 and sorted(manager.calls[1][0]["compute_service_ids"]) == sorted(
        map(str, manager.services[:2])
    )
    assert manager.cycle() is True and len(manager.calls) == 2  # at capacity: nothing created
    # a managed service over its failure limit: SKIP, nothing created
    for _ in range(api_server.settings.api.max_failures + 1):
        api_server.store.log_failure_computeservice(str(manager.services[0]))
    instruction, payload = manager.client.get_instruction(
        [AScope.from_str(scope)], None, manager.compute_manager_id
    )
    assert instruction == ComputeManagerInstruction.SKIP
    assert sorted(payload["compute_service_ids"]) == sorted(map(str, manager.services))
    assert manager.cycle() is True and len(manager.calls) == 2
    saturation = api_server.store.computemanager_by_name(name)["saturation"]
    assert saturation == 1.0  # the status each cycle reports: 3 of 3 services
    manager._deregister()
    assert manager.cycle() is False  # SHUTDOWN
    for sid in manager.services:
        manager.compute_client.deregister(sid)


def test_compute_manager_start_registers_cycles_and_deregisters(api_server, networks, tmp_path):
    scope, _nets = networks
    name = "mgr" + uuid.uuid4().hex[:8]
    manager = _manager(api_server, tmp_path, scope, name)
    manager.start(max_cycles=2)
    assert [target for _data, target in manager.calls] == [2, 1]
    assert api_server.store.computemanager_by_name(name) is None  # deregistered on the way out
    # its services keep the manager's name: a new manager of that name manages them again
    again = ComputeManagerID.new_from_name(name)
    client = _manager_client(api_server, tmp_path)
    assert client.register(again) == again
    _instruction, payload = client.get_instruction([AScope.from_str(scope)], [], again)
    assert sorted(payload["compute_service_ids"]) == sorted(map(str, manager.services))
    client.deregister(again)
    for sid in manager.services:
        manager.compute_client.deregister(sid)


def test_every_compute_manager_client_method(api_server, tmp_path):
    client = _manager_client(api_server, tmp_path)
    name = "mgr" + uuid.uuid4().hex[:8]
    first = ComputeManagerID.new_from_name(name)
    assert client.register(first) == first
    with pytest.raises(AlchemiscaleComputeManagerClientError, match="409.*already registered"):
        client.register(ComputeManagerID.new_from_name(name))
    second = ComputeManagerID.new_from_name(name)
    assert client.register(second, steal=True) == second
    assert client.get_instruction([], None, first)[0] == ComputeManagerInstruction.SHUTDOWN
    instruction, payload = client.get_instruction([AScope.from_str("*-*-*")], ["ToyProtocol"], second)
    assert instruction == ComputeManagerInstruction.OK and payload["compute_service_ids"] == []
    assert client.update_status(second, ComputeManagerStatus.OK, saturation=0.5) == second
    with pytest.raises(AlchemiscaleComputeManagerClientError, match="400.*saturation is required"):
        client.update_status(second, ComputeManagerStatus.OK)
    assert client.update_status(second, ComputeManagerStatus.ERROR, detail="RuntimeError('x')") == second
    assert client.deregister(second) == second
    assert client.get_instruction([], None, second)[0] == ComputeManagerInstruction.OK  # ERROR: kept
    assert client.clear_error(name) is None
    assert client.get_instruction([], None, second)[0] == ComputeManagerInstruction.SHUTDOWN
