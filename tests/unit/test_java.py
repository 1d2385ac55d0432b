"""Java detection: version parsing on real `java -version` outputs, and the real JDK here."""

from __future__ import annotations

from pathlib import Path

import pytest
from alchemiscale_local.launchers.neo4j.java import (
    JavaNotFoundError,
    find_java,
    java_version,
    parse_java_version,
)
from alchemiscale_local.launchers.neo4j.process import diagnose

OUTPUTS = {
    'openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)': (
        17,
        "17.0.15",
    ),
    'java version "1.8.0_392"\nJava(TM) SE Runtime Environment (build 1.8.0_392-b08)': (8, "1.8.0_392"),
    'openjdk version "11.0.22" 2024-01-16': (11, "11.0.22"),
    'openjdk version "21" 2023-09-19': (21, "21"),
    'openjdk version "25-ea" 2025-09-16': (25, "25-ea"),
    'openjdk version "21.0.5" 2024-10-15 LTS': (21, "21.0.5"),
}


@pytest.mark.parametrize("output,expected", list(OUTPUTS.items()))
def test_parse_java_version(output: str, expected: tuple[int, str]) -> None:
    assert parse_java_version(output) == expected


def test_parse_garbage_raises() -> None:
    with pytest.raises(ValueError):
        parse_java_version("command not found")


def test_real_java_is_17_or_newer() -> None:
    info = find_java()
    assert info.version >= 17
    assert info.executable.is_file()
    assert (info.home / "bin" / "java").exists()
    again = java_version(info.executable)
    assert again.version == info.version


def test_java_home_env_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    home = find_java().home
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert find_java().home == home


def test_explicit_java_home_without_java_is_clear_error(isolated_settings, tmp_path: Path) -> None:
    settings = isolated_settings.model_copy(deep=True)
    settings.neo4j.java_home = tmp_path / "no-jdk"
    with pytest.raises(JavaNotFoundError, match="has no bin/java"):
        find_java(settings)


def test_no_java_anywhere_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JavaNotFoundError) as exc:
        find_java(jvm_roots=())
    assert "Java 17 or newer" in str(exc.value)
    assert "JAVA_HOME" in str(exc.value)


def test_diagnose_names_likely_causes() -> None:
    too_old = (
        "Error: LinkageError occurred while loading main class Launcher\n"
        "java.lang.UnsupportedClassVersionError: org/neo4j/dbms/api/DatabaseManagementServiceBuilder "
        "has been compiled by a more recent version of the Java Runtime (class file version 61.0)"
    )
    assert "Java runtime is too old" in diagnose(too_old)
    port = (
        'Please see the attached cause exception "bind(..) failed with error(-98): Address already in use".'
    )
    assert "port is already in use" in diagnose(port)
    lock = (
        "org.neo4j.io.locker.FileLockException: Lock file has been locked by another process: /x/store_lock."
    )
    assert "store lock is held" in diagnose(lock)
    missing = "Launcher.java:10: error: package org.neo4j.configuration does not exist"
    assert "neo4j fetch" in diagnose(missing)
    assert diagnose("all good") is None
