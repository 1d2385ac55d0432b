"""The typer app: --version, --help, sub-app wiring, error handling, fast no-op fetch."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from alchemiscale_local import __version__
from alchemiscale_local.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"alchemiscale-local {__version__}"


def test_help_lists_sub_apps() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("config", "neo4j", "--data-dir", "--name", "--launcher", "--version"):
        assert word in result.stdout
    result = runner.invoke(app, ["neo4j", "--help"])
    assert result.exit_code == 0
    for word in ("fetch", "start", "stop", "status"):
        assert word in result.stdout


def test_bad_launcher_choice_is_usage_error() -> None:
    result = runner.invoke(app, ["--launcher", "podman", "config", "show"])
    assert result.exit_code == 2


def test_status_when_not_running(isolated_settings) -> None:
    s = isolated_settings
    result = runner.invoke(
        app,
        [
            "--data-dir",
            str(s.data_dir),
            "--config-dir",
            str(s.config_dir),
            "--launcher",
            "jar",
            "neo4j",
            "status",
            "--json",
        ],
        env={
            "ALCHEMISCALE_LOCAL_RUNTIME_DIR": str(s.runtime_dir),
            "ALCHEMISCALE_LOCAL_LOG_DIR": str(s.log_dir),
        },
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["launcher"] == "jar" and data["running"] is False


def test_external_without_uri_is_clear_error(isolated_settings) -> None:
    result = runner.invoke(
        app,
        ["--config-dir", str(isolated_settings.config_dir), "--launcher", "external", "neo4j", "start"],
        env={"ALCHEMISCALE_LOCAL_NEO4J__URI": ""},
    )
    assert result.exit_code == 1
    assert "needs a Bolt URI" in result.output
    assert "Traceback" not in result.output


def test_console_script_fetch_is_fast_noop_when_cached(isolated_settings) -> None:
    from alchemiscale_local.launchers.neo4j.fetch import fetch_jars

    fetch_jars(isolated_settings)  # the suite needs the jars anyway
    cmd = [
        sys.executable,
        "-c",
        "from alchemiscale_local.cli import main; main()",
        "--launcher",
        "jar",
        "neo4j",
        "fetch",
    ]
    # "already cached": nothing was resolved or downloaded (no wall-clock ceiling: a loaded
    # machine may start Python slowly; the timeout only guards against a hang)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "already cached" in proc.stdout
