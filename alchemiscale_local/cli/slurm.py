"""Compute services as a Slurm job array: what ``alchemiscale-local compute --slurm-array N`` submits.

:func:`render_script` fills the batch-script template (``templates/compute.sbatch.j2`` by default,
or a user's Jinja2 file) with the shell-quoted compute command; :func:`submit_array` hands it to
``sbatch --parsable --array=0-{N-1}`` on stdin and returns the job id. Every array task runs one
``alchemiscale-local compute`` (its own pool of services on the task's GPUs).

Variables a template gets: ``command`` (the quoted ``alchemiscale-local compute ...`` command line,
without ``--max-time``: the default template derives that from the job's time left),
``compute_args`` (the quoted compute arguments alone), ``job_name``, ``signal_s`` (SIGTERM this
long before the time limit), ``margin_s`` (``--max-time`` is the time left minus this) and
``max_time_given`` (the arguments hold a ``--max-time`` already: the script adds none).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jinja2

DEFAULT_TEMPLATE = "compute.sbatch.j2"
JOB_NAME = "alchemiscale-compute"
SIGNAL_S = 120
MARGIN_S = 300
SBATCH_TIMEOUT_S = 120.0


class SlurmError(RuntimeError):
    """Submitting to Slurm failed (no sbatch, or sbatch refused the job); the message says why."""


def compute_program() -> list[str]:
    """How a job runs this installation's CLI: the ``alchemiscale-local`` script beside this Python.

    An absolute path, so the job uses the same environment whatever its PATH (clusters share the
    file system between login and compute nodes); ``python -m alchemiscale_local.cli`` without one.
    """
    script = Path(sys.executable).parent / "alchemiscale-local"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "alchemiscale_local.cli"]


def _load_template(template: Path | None) -> jinja2.Template:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    if template is None:
        text = resources.files("alchemiscale_local.cli").joinpath("templates", DEFAULT_TEMPLATE).read_text()
    else:
        try:
            text = Path(template).read_text()
        except OSError as exc:
            raise SlurmError(f"cannot read the batch template {template}: {exc.strerror or exc}") from None
    try:
        return env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise SlurmError(f"batch template {template}: line {exc.lineno}: {exc.message}") from None


def render_script(
    compute_argv: list[str],
    *,
    template: Path | None = None,
    program: list[str] | None = None,
    job_name: str = JOB_NAME,
    signal_s: int = SIGNAL_S,
    margin_s: int = MARGIN_S,
) -> str:
    """The batch script that runs ``<program> compute <compute_argv>`` (arguments shell-quoted)."""
    prog = program if program is not None else compute_program()
    try:
        return _load_template(template).render(
            command=shlex.join([*prog, "compute", *compute_argv]),
            compute_args=shlex.join(compute_argv),
            job_name=job_name,
            signal_s=int(signal_s),
            margin_s=int(margin_s),
            max_time_given=any(a == "--max-time" or a.startswith("--max-time=") for a in compute_argv),
        )
    except jinja2.TemplateError as exc:  # an undefined variable in a user's template
        raise SlurmError(f"batch template {template or DEFAULT_TEMPLATE}: {exc}") from None


def submit_array(
    n: int,
    compute_argv: list[str],
    *,
    template: Path | None = None,
    sbatch: str = "sbatch",
    extra: list[str] | None = None,
) -> str:
    """Submit a job array of ``n`` tasks, each running ``alchemiscale-local compute <compute_argv>``.

    ``extra`` are sbatch options (``--time=2:00:00``, ``--gres=gpu:4``, ``--partition=gpu``); they
    override the template's ``#SBATCH`` lines. Returns the array's job id; raises
    :class:`SlurmError` when sbatch is missing or refuses the job (its message included).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SlurmError(f"a job array needs at least one task; got {n!r}")
    script = render_script(compute_argv, template=template)
    argv = [sbatch, "--parsable", f"--array=0-{n - 1}", *(extra or [])]
    try:
        proc = subprocess.run(
            argv, input=script, capture_output=True, text=True, timeout=SBATCH_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise SlurmError(f"{sbatch!r} not found: is Slurm installed, and sbatch on PATH?") from None
    except PermissionError as exc:
        raise SlurmError(f"cannot run {sbatch!r}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"sbatch did not answer within {SBATCH_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        why = proc.stderr.strip() or proc.stdout.strip() or "no message"
        raise SlurmError(f"sbatch refused the job (exit {proc.returncode}): {why}")
    # --parsable: "<jobid>" or "<jobid>;<cluster>"
    job_id = proc.stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered without a job id: {proc.stdout.strip()!r}")
    return job_id
