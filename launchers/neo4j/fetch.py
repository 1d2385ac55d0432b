"""Resolve the Neo4j jars with Maven, once, into ``settings.jar_dir``.

The packaged ``pom.xml`` is copied to a temporary directory next to the target,
``mvn dependency:copy-dependencies`` fills ``<tmp>/lib``, a marker file is written and
the directory is renamed into place. Later calls see the marker and do nothing, so
everything after the first fetch works offline.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .base import Neo4jLauncherError

if TYPE_CHECKING:  # pragma: no cover
    from alchemiscale_local.settings import Settings

MARKER = ".alchemiscale-local-complete.json"
POM = Path(__file__).with_name("pom.xml")
LAUNCHER_SOURCE = Path(__file__).with_name("Launcher.java")


class JarFetchError(Neo4jLauncherError):
    """The jars could not be resolved."""


def jars_cached(settings: Settings) -> bool:
    """Whether a complete jar set for ``settings.neo4j.version`` is in the cache."""
    return (settings.jar_dir / MARKER).is_file()


def cached_info(settings: Settings) -> dict | None:
    """The marker's contents (version, jar count, bytes) or ``None`` when not cached."""
    marker = settings.jar_dir / MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def find_mvn() -> str | None:
    """The ``mvn`` executable on PATH, if any."""
    return shutil.which("mvn")


def missing_jars_message(settings: Settings) -> str:
    """Advice for when the jar launcher has no jars."""
    return (
        f"Neo4j {settings.neo4j.version} jars are not in {settings.jar_dir}. "
        "Run `alchemiscale-local neo4j fetch` (or `make jars`) once; it needs Maven (mvn) and "
        "network access to Maven Central, and later starts work offline."
    )


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fetch_jars(
    settings: Settings,
    *,
    force: bool = False,
    mvn: str | None = None,
    timeout: float = 1800.0,
) -> Path:
    """Make sure the jars are in ``settings.jar_dir``; return that directory.

    A no-op when the marker is present (unless ``force``). Concurrent callers are
    serialised with a lock file; the directory appears atomically, complete or not at all.
    """
    target = settings.jar_dir
    if jars_cached(settings) and not force:
        return target
    parent = target.parent
    with _lock(parent / f".{target.name}.lock"):
        if jars_cached(settings) and not force:
            return target
        mvn = mvn or find_mvn()
        if not mvn:
            raise JarFetchError(
                "Maven (`mvn`) is not on PATH, so the Neo4j jars cannot be resolved. Install it "
                "(`apt-get install maven`, `brew install maven`, or from maven.apache.org), or use "
                "the docker launcher (`--launcher docker`) or an existing Neo4j "
                "(`--launcher external` with ALCHEMISCALE_LOCAL_NEO4J__URI)."
            )
        env = dict(os.environ)
        try:  # let mvn use the same Java we will run Neo4j with
            from .java import find_java

            env["JAVA_HOME"] = str(find_java(settings).home)
        except Neo4jLauncherError:
            pass
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-", dir=parent) as tmp:
            work = Path(tmp)
            shutil.copy2(POM, work / "pom.xml")
            lib = work / "lib"
            cmd = [
                mvn,
                "-B",
                "-q",
                "-Dstyle.color=never",
                "-f",
                str(work / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={lib}",
                f"-Dneo4j.version={settings.neo4j.version}",
            ]
            try:
                proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise JarFetchError(f"mvn did not finish within {timeout:.0f} s") from exc
            jars = sorted(lib.glob("*.jar")) if lib.is_dir() else []
            if proc.returncode != 0 or not jars:
                out = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
                raise JarFetchError(
                    f"mvn could not resolve org.neo4j:neo4j and org.neo4j:neo4j-bolt "
                    f"{settings.neo4j.version} (exit {proc.returncode}). Is Maven Central "
                    f"reachable, and is that version published?\n{out}"
                )
            info = {
                "version": settings.neo4j.version,
                "jars": len(jars),
                "bytes": sum(j.stat().st_size for j in jars),
                "seconds": round(time.monotonic() - started, 1),
            }
            (lib / MARKER).write_text(json.dumps(info, indent=2))
            if target.exists():
                stale = parent / f".{target.name}.stale-{os.getpid()}"
                os.replace(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(lib, target)
    return target


def launcher_classes(settings: Settings, javac: Path) -> Path | None:
    """``Launcher.java`` compiled once against the cached jars; ``None`` if that fails.

    Running the compiled class saves the ~5 s that source-file mode spends compiling on
    every start. The directory is keyed by the source's hash, so an edited launcher
    is recompiled; it appears atomically.
    """
    import hashlib

    digest = hashlib.sha256(LAUNCHER_SOURCE.read_bytes()).hexdigest()[:16]
    target = settings.jar_dir.parent / f"launcher-{settings.neo4j.version}-{digest}"
    if (target / "Launcher.class").is_file():
        return target
    if not javac.is_file() or not jars_cached(settings):
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-", dir=target.parent) as tmp:
        cmd = [str(javac), "-nowarn", "-cp", f"{settings.jar_dir}{os.sep}*", "-d", tmp, str(LAUNCHER_SOURCE)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode != 0 or not (Path(tmp) / "Launcher.class").is_file():
            return None
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race
            if not (target / "Launcher.class").is_file():
                return None
        else:
            os.mkdir(tmp)  # let TemporaryDirectory clean up something
    return target
