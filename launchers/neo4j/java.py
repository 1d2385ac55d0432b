"""Find a Java runtime that can run Neo4j 5.26 (Java 17 or newer).

Search order: ``settings.neo4j.java_home`` (if set it must be usable: no fallback),
then ``$JAVA_HOME``, ``java`` on ``PATH``, and finally ``/usr/lib/jvm/*``.
Among the fallbacks Neo4j 5.26's supported releases (21, 17) are preferred.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .base import Neo4jLauncherError

if TYPE_CHECKING:  # pragma: no cover
    from alchemiscale_local.settings import Settings

MIN_JAVA = 17
#: feature releases Neo4j 5.26 is documented to support
SUPPORTED_JAVA = (17, 21)
JVM_ROOTS = ("/usr/lib/jvm",)

_VERSION_RE = re.compile(r'version\s+"(?P<v>[^"]+)"')
_SPEC_RE = re.compile(r"java\.specification\.version\s*=\s*(?P<v>\S+)")


class JavaNotFoundError(Neo4jLauncherError):
    """No Java >= 17 could be found."""


@dataclass(frozen=True)
class JavaInfo:
    """A Java executable and its feature release (17, 21, ...)."""

    executable: Path
    version: int
    version_string: str

    @property
    def home(self) -> Path:
        """The JAVA_HOME this executable belongs to (``<home>/bin/java``)."""
        return self.executable.resolve().parent.parent


def parse_java_version(output: str) -> tuple[int, str]:
    """The feature release and full version from ``java -version`` output.

    Handles ``1.8.0_392`` (-> 8), ``17.0.15`` (-> 17), ``21`` and ``25-ea`` (-> 21, 25).
    """
    match = _SPEC_RE.search(output) or _VERSION_RE.search(output)
    if not match:
        raise ValueError(f"cannot read a Java version from: {output.strip()[:200]!r}")
    full = match.group("v")
    parts = re.split(r"[._+-]", full)
    major = int(parts[0])
    if major == 1 and len(parts) > 1:
        major = int(parts[1])
    return major, full


def java_version(executable: Path, timeout: float = 30.0) -> JavaInfo:
    """Run ``<executable> -version`` and parse it."""
    proc = subprocess.run(
        [str(executable), "-version"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = (proc.stderr or "") + (proc.stdout or "")
    major, full = parse_java_version(output)
    return JavaInfo(executable=Path(executable), version=major, version_string=full)


def _candidates(roots: Iterable[str]) -> Iterable[tuple[str, Path]]:
    env_home = os.environ.get("JAVA_HOME")
    if env_home:
        yield "JAVA_HOME", Path(env_home) / "bin" / "java"
    on_path = shutil.which("java")
    if on_path:
        yield "PATH", Path(on_path)
    for root in roots:
        for home in sorted(glob.glob(os.path.join(root, "*"))):
            exe = Path(home) / "bin" / "java"
            if exe.is_file():
                yield root, exe


def _rank(info: JavaInfo) -> tuple[int, int]:
    supported = info.version in SUPPORTED_JAVA
    return (0 if supported else 1, -info.version if supported else info.version)


def find_java(settings: Settings | None = None, *, jvm_roots: Iterable[str] = JVM_ROOTS) -> JavaInfo:
    """The Java to run Neo4j with; raise :class:`JavaNotFoundError` with advice if none fits.

    ``jvm_roots`` are the directories scanned last for ``*/bin/java``.
    """
    explicit = settings.neo4j.java_home if settings is not None else None
    if explicit is not None:
        exe = Path(explicit) / "bin" / "java"
        if not exe.is_file():
            raise JavaNotFoundError(
                f"settings.neo4j.java_home={explicit} has no bin/java. "
                "Point it at a Java 17 or 21 installation, or unset it."
            )
        info = java_version(exe)
        if info.version < MIN_JAVA:
            raise JavaNotFoundError(
                f"Java at {exe} is version {info.version_string}; Neo4j 5.26 needs Java 17 or newer "
                "(17 or 21 recommended). Set neo4j.java_home to a newer JDK."
            )
        return info

    seen: dict[Path, JavaInfo | str] = {}
    ordered: list[JavaInfo] = []
    for origin, exe in _candidates(jvm_roots):
        real = exe.resolve()
        if real in seen:
            continue
        try:
            info = java_version(exe)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            seen[real] = f"{exe} ({origin}): unusable: {exc}"
            continue
        seen[real] = info
        if info.version >= MIN_JAVA:
            ordered.append(info)
            if origin in ("JAVA_HOME", "PATH"):
                # an explicit environment choice wins over the /usr/lib/jvm scan
                return info
    if ordered:
        return sorted(ordered, key=_rank)[0]

    found = [v if isinstance(v, str) else f"{v.executable}: Java {v.version_string}" for v in seen.values()]
    detail = ("Found: " + "; ".join(found) + ". ") if found else "No java executable was found. "
    raise JavaNotFoundError(
        "Neo4j 5.26 needs Java 17 or newer (17 or 21 recommended). "
        + detail
        + "Install one (e.g. `apt-get install openjdk-17-jre-headless`, or Temurin 17/21) and put it on "
        "PATH, set JAVA_HOME, or set ALCHEMISCALE_LOCAL_NEO4J__JAVA_HOME."
    )


def java_available(settings: Settings | None = None) -> bool:
    """Whether :func:`find_java` would succeed."""
    try:
        find_java(settings)
    except JavaNotFoundError:
        return False
    return True
