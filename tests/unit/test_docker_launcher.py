"""Docker launcher: the container spec from settings, the no-engine error, and ``auto``.

No Docker engine runs here, so these tests drive the launcher with ``FakeDockerClient``,
a FAKE stand-in for ``docker.DockerClient`` (the only fake in the suite). Its "container"
reports the session's real Neo4j port as the published Bolt port, so the readiness check
still talks to a real Neo4j.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from alchemiscale_local.launchers.neo4j.auto import NoLauncherError, get_launcher
from alchemiscale_local.launchers.neo4j.base import PASSWORD_FILE_NAME
from alchemiscale_local.launchers.neo4j.docker import (
    BOLT,
    DockerLauncher,
    DockerUnavailableError,
    connect_docker,
    container_name,
    container_spec,
)
from alchemiscale_local.launchers.neo4j.external import ExternalLauncher
from alchemiscale_local.launchers.neo4j.jar import JarLauncher
from docker.errors import DockerException, NotFound


class FakeContainer:
    """FAKE container: records calls; publishes Bolt on ``host_port``."""

    def __init__(self, client: FakeDockerClient, spec: dict[str, Any]) -> None:
        self.client, self.spec, self.name = client, spec, spec["name"]
        self.status = "running"
        self.ports: dict[str, Any] = {}

    def reload(self) -> None:
        self.ports = {BOLT: [{"HostIp": "127.0.0.1", "HostPort": str(self.client.host_port)}]}

    def logs(self, tail: int = 40) -> bytes:
        return b"fake container log line\n"

    def stop(self, timeout: int = 10) -> None:
        self.status = "exited"

    def remove(self, force: bool = False) -> None:
        self.client.containers.by_name.pop(self.name, None)


class FakeContainers:
    def __init__(self, client: FakeDockerClient) -> None:
        self.client = client
        self.by_name: dict[str, FakeContainer] = {}
        self.run_calls: list[dict[str, Any]] = []

    def get(self, name: str) -> FakeContainer:
        if name not in self.by_name:
            raise NotFound(f"No such container: {name}")
        return self.by_name[name]

    def run(self, **spec: Any) -> FakeContainer:
        self.run_calls.append(spec)
        container = FakeContainer(self.client, spec)
        self.by_name[spec["name"]] = container
        return container


class FakeDockerClient:
    """FAKE ``docker.DockerClient``: ``ping`` answers, containers live in a dict."""

    def __init__(self, host_port: int = 1, ping_error: Exception | None = None) -> None:
        self.host_port = host_port
        self.ping_error = ping_error
        self.containers = FakeContainers(self)

    def ping(self) -> bool:
        if self.ping_error is not None:
            raise self.ping_error
        return True


def test_container_spec_from_settings(isolated_settings_factory, tmp_path: Path) -> None:
    settings = isolated_settings_factory(
        tmp_path,
        name="proj1",
        neo4j={"heap": "1g", "pagecache": "128m", "docker_image": "neo4j:5.26.30-community"},
    )
    spec = container_spec(settings, "pw-123")
    assert spec["name"] == container_name(settings) == "alchemiscale-local-proj1-neo4j"
    assert spec["image"] == "neo4j:5.26.30-community"
    assert spec["detach"] is True
    assert spec["ports"] == {"7687/tcp": ("127.0.0.1", None)}  # loopback, random host port
    assert spec["labels"]["alchemiscale-local.deployment"] == "proj1"
    assert spec["labels"]["alchemiscale-local.component"] == "neo4j"
    env = spec["environment"]
    assert env["NEO4J_AUTH"] == "neo4j/pw-123"
    assert env["NEO4J_server_memory_heap_max__size"] == "1g"
    assert env["NEO4J_server_memory_pagecache_size"] == "128m"
    binds = {v["bind"]: Path(k) for k, v in spec["volumes"].items()}
    assert binds["/data"] == settings.neo4j_home / "docker" / "data"
    assert spec["user"] == f"{os.getuid()}:{os.getgid()}"

    fixed = isolated_settings_factory(tmp_path / "b", neo4j={"port": 7777})
    assert container_spec(fixed, "x")["ports"] == {"7687/tcp": ("127.0.0.1", 7777)}


def test_no_engine_is_a_clear_error() -> None:
    fake = FakeDockerClient(ping_error=DockerException("Error while fetching server API version"))
    with pytest.raises(DockerUnavailableError) as exc:
        connect_docker(lambda: fake)
    message = str(exc.value)
    assert "No Docker engine answered" in message
    assert "--launcher jar" in message and "--launcher external" in message


def test_real_docker_sdk_without_engine(isolated_settings) -> None:
    try:
        connect_docker()
    except DockerUnavailableError as exc:
        assert "No Docker engine answered" in str(exc)
    else:  # pragma: no cover - machines with Docker
        pytest.skip("a Docker engine answers here")
    launcher = DockerLauncher(isolated_settings.model_copy(update={}))
    with pytest.raises(DockerUnavailableError):
        launcher.start()
    assert launcher.is_running() is False


def test_start_with_fake_client_reads_port_and_checks_real_bolt(
    isolated_settings, neo4j_launcher, neo4j_connection
) -> None:
    if neo4j_launcher is None:
        pytest.skip("needs the suite's own Neo4j")
    port = int(neo4j_connection.uri.rsplit(":", 1)[1])
    # the fake container "is" the session Neo4j: give this deployment its password
    secrets = isolated_settings.secrets_dir
    secrets.mkdir(parents=True, mode=0o700)
    (secrets / PASSWORD_FILE_NAME).write_text(neo4j_connection.password)
    fake = FakeDockerClient(host_port=port)
    launcher = DockerLauncher(isolated_settings, client=fake)
    conn = launcher.start()
    assert conn.uri == f"bolt://127.0.0.1:{port}"
    assert conn.password == neo4j_connection.password
    (spec,) = fake.containers.run_calls
    assert spec["environment"]["NEO4J_AUTH"] == f"neo4j/{neo4j_connection.password}"
    assert (isolated_settings.neo4j_home / "docker" / "data").is_dir()
    assert launcher.is_running()
    assert launcher.describe()["uri"] == conn.uri
    # a second start attaches to the running container
    assert launcher.start() == conn
    assert len(fake.containers.run_calls) == 1
    assert launcher.stop() is True
    assert launcher.is_running() is False
    assert launcher.stop() is False


def test_auto_prefers_docker_then_jar(isolated_settings) -> None:
    settings = isolated_settings.model_copy(deep=True)
    settings.neo4j.launcher = "auto"
    answering = FakeDockerClient()
    assert isinstance(get_launcher(settings, docker_client_factory=lambda: answering), DockerLauncher)
    silent = FakeDockerClient(ping_error=DockerException("no engine"))
    chosen = get_launcher(settings, docker_client_factory=lambda: silent)
    assert isinstance(chosen, JarLauncher)  # Java 17+ and Maven/jars are on this machine


def test_auto_with_nothing_names_three_options(isolated_settings, tmp_path: Path) -> None:
    settings = isolated_settings.model_copy(deep=True)
    settings.neo4j.launcher = "auto"
    settings.neo4j.java_home = tmp_path / "no-jdk"
    silent = FakeDockerClient(ping_error=DockerException("no engine"))
    with pytest.raises(NoLauncherError) as exc:
        get_launcher(settings, docker_client_factory=lambda: silent)
    message = str(exc.value)
    for word in ("docker", "jar", "external", "Java 17", "Maven", "neo4j fetch", "NEO4J__URI"):
        assert word in message


def test_explicit_kinds(isolated_settings) -> None:
    settings = isolated_settings.model_copy(deep=True)
    settings.neo4j.launcher = "external"
    with pytest.raises(Exception, match="needs a Bolt URI"):
        get_launcher(settings)
    settings.neo4j.uri = "bolt://127.0.0.1:1"
    assert isinstance(get_launcher(settings), ExternalLauncher)
    settings.neo4j.launcher = "jar"
    assert isinstance(get_launcher(settings), JarLauncher)
