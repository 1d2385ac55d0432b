"""Run Neo4j Community embedded in a JVM (``Launcher.java`` on the cached jars).

Bolt listens on ``settings.neo4j.host`` (loopback) and a free port; the store lives in
``settings.neo4j_home``; the generated password sits in a 0600 file under
``settings.secrets_dir``. The JVM is a detached child (own session) writing to
``<log_dir>/neo4j-<name>.log``; a JSON pid file in ``settings.runtime_dir`` lets any
process (e.g. the CLI) find and stop it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from .base import (
    Neo4jConnection,
    Neo4jLauncher,
    Neo4jLauncherError,
    Neo4jStartError,
    free_port,
    load_or_create_password,
    password_file,
    port_in_use,
    tail,
    wait_for_bolt,
)
from .fetch import LAUNCHER_SOURCE, jars_cached, launcher_classes, missing_jars_message
from .java import JavaInfo, find_java
from .process import (
    LAUNCHER_MAIN_CLASS,
    diagnose,
    launchers_for_home,
    process_from_record,
    read_record,
    terminate,
    write_record,
)

if TYPE_CHECKING:  # pragma: no cover
    from alchemiscale_local.settings import Settings

JVM_FLAGS = (
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dfile.encoding=UTF-8",
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+DisableExplicitGC",
)
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def size_bytes(value: str) -> int:
    """``'256m'`` -> 268435456."""
    match = re.fullmatch(r"(\d+)([kKmMgG])", value.strip())
    if not match:
        raise ValueError(f"not a size like 512m: {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


class JarLauncher(Neo4jLauncher):
    """Neo4j as a detached JVM on this host."""

    kind = "jar"

    def __init__(
        self, settings: Settings, *, java: JavaInfo | None = None, watch_parent: bool = False
    ) -> None:
        """``watch_parent``: the JVM exits cleanly once this Python process is gone (tests)."""
        super().__init__(settings)
        self._java = java
        self._watch_parent = watch_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    # -- locations -------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.neo4j_home

    @property
    def pid_file(self) -> Path:
        return self.settings.runtime_dir / f"{self.settings.name}.neo4j.json"

    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / f"neo4j-{self.settings.name}.log"

    # -- state -----------------------------------------------------------------
    def _process(self) -> psutil.Process | None:
        if self._proc is not None:
            if self._proc.poll() is None:
                # our own child: alive even before exec() shows the java command line
                try:
                    return psutil.Process(self._proc.pid)
                except psutil.Error:  # pragma: no cover
                    return None
            self._proc = None  # reaped: it died
        return process_from_record(read_record(self.pid_file))

    def is_running(self) -> bool:
        return self._process() is not None

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        proc = self._process()
        return proc.pid if proc else None

    def connection(self) -> Neo4jConnection:
        record = read_record(self.pid_file) or {}
        port = record.get("port") or self._port or self.settings.neo4j.port
        if not port:
            raise Neo4jLauncherError("Neo4j (jar) is not running, so it has no port yet.")
        pw_file = password_file(self.settings)
        if not pw_file.exists():
            raise Neo4jLauncherError(f"no Neo4j password file at {pw_file}: start Neo4j first.")
        return Neo4jConnection(
            uri=f"bolt://{self.settings.neo4j.host}:{port}",
            user="neo4j",
            password=pw_file.read_text().strip(),
            database=self.settings.neo4j.database,
        )

    # -- start -----------------------------------------------------------------
    def _preflight(self) -> JavaInfo:
        proc = self._process()
        if proc is not None:
            raise Neo4jStartError(
                f"Neo4j for deployment '{self.settings.name}' is already running (pid {proc.pid}, "
                f"home {self.home}). Stop it first: `alchemiscale-local neo4j stop`."
            )
        others = launchers_for_home(self.home)
        if others:
            raise Neo4jStartError(
                f"the store lock is held by another process: pid "
                f"{', '.join(str(p.pid) for p in others)} already runs Neo4j on {self.home}. "
                "Stop that Neo4j, or use another --data-dir/--name."
            )
        if not jars_cached(self.settings):
            raise Neo4jStartError(missing_jars_message(self.settings))
        java = self._java or find_java(self.settings)
        if java.version < 17:
            raise Neo4jStartError(f"Java {java.version_string} is too old: Neo4j 5.26 needs 17+.")
        return java

    def _command(self, java: JavaInfo, port: int) -> list[str]:
        n4j = self.settings.neo4j
        classpath = f"{self.settings.jar_dir}{os.sep}*"
        main = str(LAUNCHER_SOURCE)  # source-file mode, if it cannot be compiled
        classes = launcher_classes(self.settings, java.executable.with_name("javac"))
        if classes is not None:
            classpath, main = f"{classpath}{os.pathsep}{classes}", LAUNCHER_MAIN_CLASS
        return [
            str(java.executable),
            f"-Xms{n4j.heap}",
            f"-Xmx{n4j.heap}",
            *JVM_FLAGS,
            "-cp",
            classpath,
            main,
            "--home", str(self.home),
            "--host", n4j.host,
            "--port", str(port),
            "--password-file", str(password_file(self.settings)),
            "--pagecache-bytes", str(size_bytes(n4j.pagecache)),
            "--tx-timeout-seconds", str(n4j.transaction_timeout_s),
            *(["--watch-pid", str(os.getpid())] if self._watch_parent else []),
        ]  # fmt: skip

    def _spawn(self, java: JavaInfo, port: int) -> None:
        log = self.log_path
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.exists():
            os.replace(log, log.with_name(log.name + ".1"))
        self.home.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self._proc = subprocess.Popen(
                self._command(java, port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
                close_fds=True,
            )
        self._port = port
        try:
            created: float | None = psutil.Process(self._proc.pid).create_time()
        except psutil.Error:  # already gone: wait_ready() reports why
            created = None
        record: dict[str, Any] = {
            "pid": self._proc.pid,
            "create_time": created,
            "port": port,
            "host": self.settings.neo4j.host,
            "home": str(self.home),
            "log": str(log),
            "version": self.settings.neo4j.version,
            "started_at": time.time(),
        }
        write_record(self.pid_file, record)

    def start(self) -> Neo4jConnection:
        """Start the JVM and wait until Bolt answers; raise :class:`Neo4jStartError` if not."""
        java = self._preflight()
        load_or_create_password(self.settings)
        explicit = self.settings.neo4j.port
        host = self.settings.neo4j.host
        if explicit and port_in_use(host, explicit):
            raise Neo4jStartError(
                f"Neo4j cannot start: the Bolt port {host}:{explicit} is already in use. "
                "Choose another neo4j.port, or 0 to pick a free one."
            )
        attempts = 1 if explicit else 3
        for attempt in range(attempts):
            self._spawn(java, explicit or free_port(host))
            try:
                return self.wait_ready()
            except Neo4jStartError as exc:
                # a port picked at random may be taken between our check and the JVM's bind
                if attempt + 1 < attempts and "port is already in use" in str(exc):
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_ready(self, timeout: float | None = None) -> Neo4jConnection:
        """Wait for ``READY <port>`` in the log and a successful ``verify_connectivity()``."""
        timeout = self.settings.neo4j.start_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        record = read_record(self.pid_file) or {}
        ready_line = f"READY {record.get('port', self._port)}"
        while True:
            if self._process() is None:
                self._fail("the Neo4j JVM exited during start-up")
            if ready_line in tail(self.log_path, 200):
                break
            if time.monotonic() >= deadline:
                self._fail(f"Neo4j did not report READY within {timeout:.0f} s")
            time.sleep(0.2)
        conn = self.connection()
        err = wait_for_bolt(
            conn, max(5.0, deadline - time.monotonic()), alive=lambda: self._process() is not None
        )
        if err is not None:
            self._fail(f"Bolt did not accept our credentials: {err}")
        return conn

    def _fail(self, what: str) -> None:
        """Make sure the JVM we spawned is gone, then raise with the cause and the log tail."""
        if self._proc is not None:  # we spawned it: never leave it behind
            if self._proc.poll() is None:
                terminate([psutil.Process(self._proc.pid)], timeout=10)
            self._proc.wait(timeout=15)
            self._proc = None
            self.pid_file.unlink(missing_ok=True)
        elif process_from_record(read_record(self.pid_file)) is None:
            self.pid_file.unlink(missing_ok=True)  # stale
        log_tail = tail(self.log_path, 40)
        cause = diagnose(log_tail) or "unknown; read the log and Neo4j's debug log"
        raise Neo4jStartError(
            f"{what}.\nLikely cause: {cause}.\nLog: {self.log_path} "
            f"(debug log: {self.home / 'logs' / 'debug.log'})\n--- last lines ---\n{log_tail}"
        )

    # -- stop ------------------------------------------------------------------
    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM the JVM, wait up to ``timeout`` s, then SIGKILL; remove the pid file."""
        procs: dict[int, psutil.Process] = {}
        own = self._process()
        if own is not None:
            procs[own.pid] = own
        recorded = process_from_record(read_record(self.pid_file))
        if recorded is not None:
            procs[recorded.pid] = recorded
        if not procs:
            # pid file lost: fall back to the JVM(s) whose --home is ours
            for proc in launchers_for_home(self.home):
                procs.setdefault(proc.pid, proc)
        terminate(list(procs.values()), timeout=timeout)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - terminate() already killed it
                pass
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        self._port = None
        return bool(procs)
