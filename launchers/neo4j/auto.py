"""Pick the Neo4j launcher for a deployment: ``get_launcher(settings)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import Neo4jLauncher, Neo4jLauncherError
from .docker import DockerLauncher, DockerUnavailableError, connect_docker
from .external import ExternalLauncher
from .fetch import find_mvn, jars_cached
from .jar import JarLauncher
from .java import JavaNotFoundError, find_java

if TYPE_CHECKING:  # pragma: no cover
    from alchemiscale_local.settings import Settings


class NoLauncherError(Neo4jLauncherError):
    """``auto`` found no way to run Neo4j."""


def no_launcher_message(docker_error: str, jar_error: str) -> str:
    """The one message that names the three options and how to get each."""
    return (
        "No way to run Neo4j was found. Choose one of:\n"
        f"  1. docker:   start a Docker engine (Docker Desktop, or `dockerd`) - {docker_error}\n"
        "  2. jar:      install Java 17+ (e.g. `apt-get install openjdk-17-jdk-headless`) and Maven "
        f"(`apt-get install maven`), then run `alchemiscale-local neo4j fetch` - {jar_error}\n"
        "  3. external: point at a running Neo4j 5.x with --launcher external and "
        "ALCHEMISCALE_LOCAL_NEO4J__URI / ALCHEMISCALE_LOCAL_NEO4J__PASSWORD."
    )


def get_launcher(
    settings: Settings,
    *,
    docker_client_factory: Callable[[], Any] | None = None,
) -> Neo4jLauncher:
    """The launcher ``settings.neo4j.launcher`` names; for ``auto``: docker, else jar, else an error."""
    kind = settings.neo4j.launcher
    if kind == "jar":
        return JarLauncher(settings)
    if kind == "docker":
        return DockerLauncher(settings, client_factory=docker_client_factory)
    if kind == "external":
        return ExternalLauncher(settings)

    try:
        client = connect_docker(docker_client_factory)
        return DockerLauncher(settings, client=client)
    except DockerUnavailableError as exc:
        docker_error = f"no engine answered ({exc.__cause__ or exc})"
    try:
        java = find_java(settings)
    except JavaNotFoundError as exc:
        jar_error = str(exc).split(". ")[0]
    else:
        if jars_cached(settings) or find_mvn():
            return JarLauncher(settings, java=java)
        jar_error = f"Java {java.version} found, but neither Maven nor cached jars"
    raise NoLauncherError(no_launcher_message(docker_error, jar_error))
