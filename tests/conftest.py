"""Shared fixtures: isolated settings and ONE real Neo4j per test session.

- ``isolated_settings``  (function) -> Settings with data/config/log/runtime dirs under
  ``tmp_path``; ``cache_dir`` stays the default so the Neo4j jars are shared and cached.
- ``isolated_settings_factory`` (function) -> ``f(base_dir, **overrides) -> Settings``,
  the same for any directory (several deployments in one test).
- ``neo4j_launcher``     (session)  -> the started :class:`JarLauncher`.
- ``neo4j_connection``   (session)  -> :class:`Neo4jConnection` (uri, user, password, database).
- ``neo4j_driver``       (session)  -> a ``neo4j.Driver`` connected to it.
- ``clean_graph``        (function) -> the same driver, after deleting every node.

Set ``ALCHEMISCALE_LOCAL_TEST_NEO4J_URI`` (+ ``_USER``, ``_PASSWORD``) to run the suite
against an already running Neo4j instead of starting one (``neo4j_launcher`` is then
``None``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from alchemiscale_local.settings import ENV_PREFIX, Settings, load_settings

# The live API server fixtures (api_server, user_client, compute_client) live in a plugin module.
pytest_plugins = ["tests.plugins.api_server", "tests.plugins.slurm_cluster"]

_TEST_URI_ENV = "ALCHEMISCALE_LOCAL_TEST_NEO4J_URI"


@contextmanager
def _no_user_settings(base: Path) -> Iterator[None]:
    """While settings resolve: no ALCHEMISCALE_LOCAL_* env (except CACHE_DIR), no user TOML file."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    try:
        for key in saved:
            if key != f"{ENV_PREFIX}CACHE_DIR":
                del os.environ[key]
        os.environ[f"{ENV_PREFIX}CONFIG_FILE"] = str(base / "config" / "config.toml")
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(saved)


def make_isolated_settings(base: Path, **overrides: Any) -> Settings:
    """Settings whose data, config, log and runtime dirs live under ``base``.

    ``cache_dir`` keeps its default (shared jar cache); the jar launcher is chosen
    unless ``overrides`` says otherwise. Environment and user config file are ignored.
    """
    neo4j = {"launcher": "jar", **overrides.pop("neo4j", {})}
    with _no_user_settings(base):
        dirs = {
            "data_dir": base / "data",
            "config_dir": base / "config",
            "log_dir": base / "log",
            "runtime_dir": base / "run",
        }
        return load_settings(**{**dirs, **overrides, "neo4j": neo4j})


@pytest.fixture
def isolated_settings_factory() -> Any:
    """``isolated_settings_factory(base_dir, **overrides) -> Settings``: isolated settings under ``base_dir``."""
    return make_isolated_settings


@pytest.fixture
def isolated_settings(tmp_path: Path) -> Settings:
    """Fresh settings with every directory except ``cache_dir`` under ``tmp_path``."""
    return make_isolated_settings(tmp_path)


@pytest.fixture(scope="session")
def neo4j_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's Neo4j (jar launcher), started once; stopped at the end."""
    if os.environ.get(_TEST_URI_ENV):
        yield None
        return
    from alchemiscale_local.launchers.neo4j.fetch import fetch_jars
    from alchemiscale_local.launchers.neo4j.jar import JarLauncher

    settings = make_isolated_settings(tmp_path_factory.mktemp("neo4j-session"))
    fetch_jars(settings)  # no-op when cached (`make jars` ran)
    # watch_parent: the JVM exits by itself if this test process is killed
    launcher = JarLauncher(settings, watch_parent=True)
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


@pytest.fixture(scope="session")
def neo4j_connection(neo4j_launcher: Any) -> Any:
    """``Neo4jConnection(uri, user, password, database)`` of the session's Neo4j."""
    from alchemiscale_local.launchers.neo4j.base import Neo4jConnection

    if neo4j_launcher is None:
        return Neo4jConnection(
            uri=os.environ[_TEST_URI_ENV],
            user=os.environ.get("ALCHEMISCALE_LOCAL_TEST_NEO4J_USER", "neo4j"),
            password=os.environ.get("ALCHEMISCALE_LOCAL_TEST_NEO4J_PASSWORD", ""),
            database=os.environ.get("ALCHEMISCALE_LOCAL_TEST_NEO4J_DATABASE", "neo4j"),
        )
    return neo4j_launcher.connection()


@pytest.fixture(scope="session")
def neo4j_driver(neo4j_connection: Any) -> Iterator[Any]:
    """A session-wide ``neo4j.Driver`` for the session's Neo4j."""
    driver = neo4j_connection.driver()
    driver.verify_connectivity()
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def clean_graph(neo4j_driver: Any, neo4j_connection: Any) -> Any:
    """The session driver, after every node and relationship was deleted."""
    with neo4j_driver.session(database=neo4j_connection.database) as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()
    return neo4j_driver
