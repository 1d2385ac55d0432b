"""pytest plugin: a real single-node Slurm (munged + slurmctld + slurmd) in a temporary directory.

Fixture:
    slurm_cluster   module-scoped :class:`SlurmCluster` (starts in about 2 s). Skips (with the
                    reason) when Debian's ``slurm-wlm`` / ``munge`` binaries are missing; CI
                    installs them (``.ci/run``). Use it from a test module with
                    ``from tests.plugins.slurm_cluster import slurm_cluster as slurm_cluster``,
                    or list this module in ``pytest_plugins`` of ``tests/conftest.py``.

How it works: a fresh munge key and a ``munged`` with its own socket, key, pid and log paths; a
``slurm.conf`` naming this host as controller and as the only node (its CPUs, sockets, cores and
RealMemory from ``slurmd -C``) and two FAKE GPUs (gres/gpu on /dev/null-like device nodes), one
default partition, free ports, no accounting, and no cgroups (``proctrack/linuxproc``,
``task/none``: in this sandboxed VM a job under ``task/cgroup`` could not even open /dev/null);
``slurmctld -D`` and ``slurmd -D`` run as children of the test process (``setpriv --pdeathsig``:
a killed pytest takes them along). ``SLURM_CONF`` is exported while the fixture lives, so
``sbatch``/``squeue``/``scancel`` (and any subprocess) talk to this cluster. Teardown cancels
every job, stops the daemons, and ends whatever still carries this cluster's ``SLURM_CONF``
in its environment (``slurmstepd`` and job processes are not children of the test).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
START_TIMEOUT_S = 90.0
# Slurm's default: SIGTERM to a cancelled job's processes, SIGKILL this much later.
KILL_WAIT_S = 30
#: the partition's default job time limit, minutes
DEFAULT_TIME_MIN = 10
#: fake GPUs of the node (gres/gpu on character devices that are /dev/null): no GPU exists here
FAKE_GPUS = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def node_definition() -> str:
    """This machine as a Slurm node: the ``NodeName=...`` line ``slurmd -C`` prints (CPUs, memory)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    # The topology and memory slurmd detects itself: a node that promises more is drained.
    return next(ln for ln in out.splitlines() if ln.startswith("NodeName=")).strip()


def make_fake_gpus(root: Path, n: int) -> list[Path]:
    """``n`` FAKE GPUs: character devices with /dev/null's numbers, for Slurm's gres/gpu to hand out.

    Slurm accepts only devices in gres.conf; it allocates them to jobs and sets
    CUDA_VISIBLE_DEVICES, which is all the tests look at (nothing opens them as GPUs). None where
    device nodes cannot be made (an unprivileged container).
    """
    devdir = root / "dev"
    devdir.mkdir()
    try:
        for i in range(n):
            os.mknod(devdir / f"nvidia{i}", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except OSError:
        return []
    return [devdir / f"nvidia{i}" for i in range(n)]


def write_conf(
    root: Path, node_line: str, munge_socket: Path, gpus: list[Path] | None = None
) -> tuple[Path, str]:
    """``slurm.conf`` (and ``gres.conf``) for a one-node cluster on this host: (path, node name)."""
    node = node_line.split()[0].split("=", 1)[1]
    if gpus:
        (root / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(f"Name=gpu File={dev}\n" for dev in gpus)
        )
        node_line += f" Gres=gpu:{len(gpus)}"
    lines = [
        "ClusterName=alstest",
        *(["GresTypes=gpu"] if gpus else []),
        f"SlurmctldHost={node}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        # No cgroups here: processes are tracked through /proc, tasks are not confined.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "MailProg=/bin/true",
        f"KillWait={KILL_WAIT_S}",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
        # Jobs get a time limit unless they ask for one, as on most clusters: the batch script
        # derives --max-time from the time left.
        f"PartitionName=debug Nodes={node} Default=YES DefaultTime={DEFAULT_TIME_MIN} MaxTime=INFINITE State=UP",
    ]
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf, node


@dataclass
class SlurmCluster:
    """A running one-node Slurm; ``env`` is ``os.environ`` plus its ``SLURM_CONF``."""

    root: Path
    conf: Path
    node: str
    partition: str = "debug"
    gpus: int = 0  # fake ones: see make_fake_gpus
    env: dict[str, str] = field(default_factory=dict)
    _daemons: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def jobs(self) -> dict[str, str]:
        """Live jobs: ``{"<job>_<task>" or "<job>": state}`` (array tasks listed one by one)."""
        out = self.run("squeue", "-h", "-r", "-o", "%i %T").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T", check=False).stdout.strip()

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name} ---\n{text[-chars:]}")
        return "\n".join(parts)

    def check_daemons(self) -> None:
        for name, proc in self._daemons.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")


def _spawn(name: str, argv: list[str], root: Path, env: dict[str, str]) -> subprocess.Popen:
    prefix = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
    log = open(root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - the daemon owns it
    try:
        return subprocess.Popen([*prefix, *argv], stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()


def _wait(predicate, timeout: float, what: str, cluster: SlurmCluster | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster is not None:
            cluster.check_daemons()
        if predicate():
            return
        time.sleep(0.2)
    logs = cluster.logs() if cluster is not None else ""
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def start_cluster() -> SlurmCluster:
    # Not under pytest's 0700 basetemp: munged insists every directory above its socket is
    # searchable by all. The key stays in a 0700 directory of its own.
    root = Path(tempfile.mkdtemp(prefix="alslurm-"))
    root.chmod(0o755)
    for sub in ("state", "spool", "log", "run"):
        (root / sub).mkdir()
    (root / "run").chmod(0o755)
    keydir = root / "munge"
    keydir.mkdir(mode=0o700)
    key = keydir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = root / "run" / "munge.socket"

    gpus = make_fake_gpus(root, FAKE_GPUS)
    conf, node = write_conf(root, node_definition(), sock, gpus)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root=root, conf=conf, node=node, env=env, gpus=len(gpus))
    try:
        cluster._daemons["munged"] = _spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--key-file={key}",
                f"--socket={sock}",
                f"--pid-file={root / 'run' / 'munged.pid'}",
                f"--log-file={root / 'log' / 'munged.log'}",
                f"--seed-file={keydir / 'munged.seed'}",
            ],
            root,
            env,
        )
        _wait(sock.exists, START_TIMEOUT_S, "munged's socket", cluster)
        cluster._daemons["slurmctld"] = _spawn("slurmctld", ["slurmctld", "-D", "-i"], root, env)
        _wait(
            lambda: cluster.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
            START_TIMEOUT_S,
            "slurmctld to answer",
            cluster,
        )
        cluster._daemons["slurmd"] = _spawn("slurmd", ["slurmd", "-D"], root, env)
        _wait(lambda: cluster.node_state() == "idle", START_TIMEOUT_S, f"node {node} to be idle", cluster)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _carries_conf(proc: psutil.Process, conf: str) -> bool:
    try:
        return proc.environ().get("SLURM_CONF") == conf
    except (psutil.Error, OSError):
        return False


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel every job, wait for them to end, stop the daemons, end leftovers, remove the files."""
    daemons_up = all(p.poll() is None for p in cluster._daemons.values()) and len(cluster._daemons) == 3
    if daemons_up:
        cluster.run("scancel", f"--user={os.getuid()}", check=False)
        try:
            _wait(lambda: not cluster.jobs(), KILL_WAIT_S + 30, "cancelled jobs to end")
        except (RuntimeError, subprocess.SubprocessError):
            pass  # the leftovers are ended below
    for name in ("slurmd", "slurmctld", "munged"):
        proc = cluster._daemons.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # slurmstepd daemonizes away from slurmd: find what is left by the conf it inherited.
    me = os.getpid()
    mine = {me, *(p.pid for p in psutil.Process(me).parents())}
    left = [p for p in psutil.process_iter() if p.pid not in mine and _carries_conf(p, str(cluster.conf))]
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm/munge not installed (missing {', '.join(missing)}); CI installs slurm-wlm, munge")
    cluster = start_cluster()
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        stop_cluster(cluster)
