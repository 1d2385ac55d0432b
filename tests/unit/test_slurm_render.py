"""The Slurm batch script: rendering, quoting, the time-left arithmetic, and submit errors.

The rendered scripts run under the real bash; the job array itself runs against a real Slurm in
tests/e2e/test_slurm.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alchemiscale_local.cli.slurm import SlurmError, render_script, submit_array

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "slurm" / "compute.sbatch"
# A program that prints its arguments as JSON: what the script's `exec` line hands over, exactly.
ARGV_PRINTER = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
AWKWARD = ["--credentials", "/tmp/my creds.json", "--scope", "org-*-*", "it's", '"$HOME"', "a;b", ""]


def _run_script(text: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", text], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_default_template_directives_and_syntax():
    script = render_script(["--credentials", "c.json"])
    assert script.startswith("#!/bin/bash\n")
    directives = re.findall(r"^#SBATCH (\S+)$", script, re.M)
    assert directives == ["--job-name=alchemiscale-compute", "--output=%x-%A_%a.out", "--signal=B:TERM@120"]
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    # exec: the compute command replaces the shell, so Slurm's SIGTERM reaches it
    assert re.search(r"^exec .* compute --credentials c\.json \"\$\{max_time\[@\]\}\"$", script, re.M)


def test_arguments_reach_the_command_unchanged_and_no_max_time_outside_slurm():
    script = render_script(AWKWARD, program=ARGV_PRINTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = _run_script(script, env)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed == ["compute", *AWKWARD]  # outside a job: no time limit known, no --max-time


def test_a_given_max_time_is_kept_and_none_is_added():
    script = render_script(["--max-time", "600"], program=ARGV_PRINTER)
    assert "squeue" not in script
    # in a job (SLURM_JOB_ID set) too: only the given value reaches the command
    proc = _run_script(script, {**os.environ, "SLURM_JOB_ID": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["compute", "--max-time", "600"]
    assert "squeue" not in render_script(["--max-time=5"])


@pytest.mark.parametrize("source", ["template", "example"])
@pytest.mark.parametrize(
    ("slurm_time", "seconds"),
    [
        ("1-02:03:04", "93784"),
        ("1:00:00", "3600"),
        ("08:09", "489"),
        ("45", "45"),
        ("0:00", "0"),
        ("UNLIMITED", ""),
        ("NOT_SET", ""),
        ("INVALID", ""),
        ("", ""),
    ],
)
def test_slurm_seconds(source, slurm_time, seconds):
    """squeue's %L (time left) in seconds; the template and the example share the function."""
    text = render_script([]) if source == "template" else EXAMPLE.read_text()
    func = re.search(r"^slurm_seconds\(\) \{\n.*?^\}\n", text, re.M | re.S)
    assert func, "slurm_seconds() not found"
    proc = subprocess.run(
        ["bash", "-c", f'{func.group(0)}\nslurm_seconds "$1"', "bash", slurm_time],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == seconds


def test_example_is_valid_bash_with_the_documented_directives():
    text = EXAMPLE.read_text()
    assert subprocess.run(["bash", "-n", str(EXAMPLE)], check=False).returncode == 0
    directives = re.findall(r"^#SBATCH (\S+)$", text, re.M)
    assert "--signal=B:TERM@120" in directives and "--output=%x-%A_%a.out" in directives
    assert any(d.startswith("--gres=gpu:") for d in directives)
    assert re.search(r"^exec alchemiscale-local compute \\$", text, re.M)
    assert "--gpus auto --per-gpu 1" in text and '"${max_time[@]}"' in text


def test_user_template_gets_the_variables(tmp_path):
    tpl = tmp_path / "mine.sbatch.j2"
    tpl.write_text("#!/bin/bash\n#SBATCH -J {{ job_name }}\n# {{ compute_args }}\nexec {{ command }}\n")
    script = render_script(["--cpu-services", "2", "a b"], template=tpl, program=["prog"])
    assert script.splitlines()[1:] == [
        "#SBATCH -J alchemiscale-compute",
        "# --cpu-services 2 'a b'",
        "exec prog compute --cpu-services 2 'a b'",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the batch template"),
        ("exec {{ command }} {{ nope }}", "'nope' is undefined"),
        ("exec {{ command ", "line 1"),
    ],
)
def test_bad_user_template_is_a_slurm_error(tmp_path, content, message):
    tpl = tmp_path / "bad.j2"
    if content is not None:
        tpl.write_text(content)
    with pytest.raises(SlurmError, match=re.escape(message)):
        render_script([], template=tpl)


@pytest.mark.parametrize("n", [0, -1, True, 1.5])
def test_array_size_must_be_a_positive_int(n):
    with pytest.raises(SlurmError, match="at least one task"):
        submit_array(n, [])


def test_missing_sbatch_is_a_slurm_error(tmp_path):
    with pytest.raises(SlurmError, match="not found: is Slurm installed"):
        submit_array(2, [], sbatch=str(tmp_path / "no-such-sbatch"))


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="sbatch not installed (CI installs slurm-wlm)")
@pytest.mark.skipif(Path("/etc/slurm/slurm.conf").exists(), reason="this machine has a Slurm configuration")
def test_sbatch_refusal_carries_its_message(monkeypatch):
    """The real sbatch with no cluster configured refuses; its stderr is the error's text."""
    monkeypatch.delenv("SLURM_CONF", raising=False)
    with pytest.raises(SlurmError, match=r"(?s)sbatch refused the job \(exit 1\): .*configuration source"):
        submit_array(2, ["--credentials", "c.json"])
