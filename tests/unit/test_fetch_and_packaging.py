"""The pom pins, the jar cache, and the wheel carrying the launchers' non-Python files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from alchemiscale_local.launchers.neo4j.fetch import (
    POM,
    JarFetchError,
    cached_info,
    fetch_jars,
    jars_cached,
)

from alchemiscale_local.settings import NEO4J_VERSION

REPO = Path(__file__).resolve().parents[2]
NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def test_pom_pins_both_artifacts_to_one_version_property() -> None:
    root = ET.parse(POM).getroot()
    assert root.find("m:properties/m:neo4j.version", NS).text == NEO4J_VERSION
    deps = {
        d.find("m:artifactId", NS).text: d.find("m:version", NS).text
        for d in root.findall("m:dependencies/m:dependency", NS)
    }
    assert deps == {"neo4j": "${neo4j.version}", "neo4j-bolt": "${neo4j.version}"}


def test_jars_cached_after_fetch(isolated_settings) -> None:
    path = fetch_jars(isolated_settings)  # no-op when cached
    assert path == isolated_settings.jar_dir
    assert jars_cached(isolated_settings)
    info = cached_info(isolated_settings)
    assert info["version"] == isolated_settings.neo4j.version
    jars = list(path.glob("*.jar"))
    assert len(jars) == info["jars"] > 100
    names = {j.name for j in jars}
    assert f"neo4j-{NEO4J_VERSION}.jar" in names and f"neo4j-bolt-{NEO4J_VERSION}.jar" in names


def test_fetch_without_mvn_is_clear_error(isolated_settings_factory, tmp_path, monkeypatch) -> None:
    settings = isolated_settings_factory(tmp_path, cache_dir=tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(JarFetchError, match="Maven .* is not on PATH"):
        fetch_jars(settings)
    assert not jars_cached(settings)
    assert not settings.jar_dir.exists()  # nothing half-written


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_contains_launchers_and_imports(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "bench"
    )
    shutil.copytree(REPO, src, ignore=ignore)
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("alchemiscale_local-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "alchemiscale_local/launchers/neo4j/pom.xml",
        "alchemiscale_local/launchers/neo4j/Launcher.java",
        "alchemiscale_local/launchers/neo4j/jar.py",
        "alchemiscale_local/backends/__init__.py",
        "alchemiscale_local/cli/__init__.py",
        "alchemiscale_local/backends/statestore/__init__.py",
        "alchemiscale_local/backends/objectstore/__init__.py",
        "alchemiscale_local/runtimes/toy/data/components.json.gz",
    ):
        assert required in names, required
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = (
        "import alchemiscale_local.backends, alchemiscale_local.launchers, "
        "alchemiscale_local.launchers.neo4j as n, alchemiscale_local.cli\n"
        "from alchemiscale_local.launchers.neo4j.fetch import POM, LAUNCHER_SOURCE\n"
        f"assert str(POM).startswith({str(unpacked)!r}), POM\n"
        "assert POM.is_file() and LAUNCHER_SOURCE.is_file()\n"
        "print(n.get_launcher.__module__)\n"
        "from alchemiscale_local.runtimes.toy.network import build_toy_network\n"
        "assert len(build_toy_network(4)) > 4\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "alchemiscale_local.launchers.neo4j.auto" in run.stdout


def test_launcher_compiled_once_or_source_mode(isolated_settings, tmp_path: Path) -> None:
    from alchemiscale_local.launchers.neo4j.fetch import launcher_classes
    from alchemiscale_local.launchers.neo4j.jar import JarLauncher
    from alchemiscale_local.launchers.neo4j.java import find_java

    fetch_jars(isolated_settings)
    java = find_java()
    javac = java.executable.with_name("javac")
    if not javac.is_file():
        pytest.skip("no javac next to java: the launcher runs in source-file mode")
    classes = launcher_classes(isolated_settings, javac)
    assert classes is not None and (classes / "Launcher.class").is_file()
    assert launcher_classes(isolated_settings, javac) == classes  # cached
    cmd = JarLauncher(isolated_settings)._command(java, 7687)
    assert cmd[cmd.index("-cp") + 2] == "Launcher"
    # without a compiler the source file is run directly
    assert launcher_classes(isolated_settings.model_copy(update={"cache_dir": tmp_path}), javac) is None
