"""Settings precedence (file < env < keyword overrides) and masked output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alchemiscale_local.cli import app
from alchemiscale_local.settings import ENV_PREFIX, load_settings, masked_dump


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ALCHEMISCALE_LOCAL_* variables; the config file is ``tmp_path/config.toml``."""
    import os

    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    config = tmp_path / "config.toml"
    monkeypatch.setenv(f"{ENV_PREFIX}CONFIG_FILE", str(config))
    return config


def test_precedence_file_env_kwargs(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env.write_text('name = "fromfile"\n[neo4j]\nheap = "1g"\npagecache = "128m"\nport = 7001\n')
    s = load_settings()
    assert (s.name, s.neo4j.heap, s.neo4j.pagecache, s.neo4j.port) == ("fromfile", "1g", "128m", 7001)

    monkeypatch.setenv(f"{ENV_PREFIX}NAME", "fromenv")
    monkeypatch.setenv(f"{ENV_PREFIX}NEO4J__HEAP", "2g")
    s = load_settings()
    assert (s.name, s.neo4j.heap, s.neo4j.pagecache) == ("fromenv", "2g", "128m")

    s = load_settings(name="fromkwargs", neo4j={"heap": "3g"})
    assert s.name == "fromkwargs"
    assert s.neo4j.heap == "3g"
    # None means "not given": lower layers still apply
    s = load_settings(name=None)
    assert s.name == "fromenv"


def test_cli_flags_override_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}NAME", "fromenv")
    monkeypatch.setenv(f"{ENV_PREFIX}NEO4J__LAUNCHER", "docker")
    result = CliRunner().invoke(
        app,
        [
            "--name",
            "fromflag",
            "--data-dir",
            str(tmp_path / "d"),
            "--launcher",
            "jar",
            "config",
            "show",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "fromflag"
    assert data["data_dir"] == str(tmp_path / "d")
    assert data["neo4j"]["launcher"] == "jar"


def test_config_show_masks_secrets(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}NEO4J__PASSWORD", "neo4j-secret-value")
    monkeypatch.setenv(f"{ENV_PREFIX}API__JWT_SECRET", "jwt-secret-value")
    monkeypatch.setenv(f"{ENV_PREFIX}OBJECTSTORE__SECRET_ACCESS_KEY", "s3-secret-value")
    runner = CliRunner()
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        for secret in ("neo4j-secret-value", "jwt-secret-value", "s3-secret-value"):
            assert secret not in result.output
        assert "********" in result.output
    data = masked_dump(load_settings())
    assert data["neo4j"]["password"] == "********"
    assert data["api"]["jwt_secret"] == "********"


def test_invalid_setting_is_a_clear_error_exit_2(clean_env: Path) -> None:
    result = CliRunner().invoke(app, ["--name", "bad name!", "config", "show"])
    assert result.exit_code == 2
    assert "invalid settings" in result.output
    assert "name" in result.output
    assert "Traceback" not in result.output
