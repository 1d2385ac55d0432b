"""Mutation check of the core modules (``make mutate``; not in CI): mutmut, per module, under a time limit.

    python scripts/mutate.py [module ...] [--budget-s 600]

Only lines the module's fast tests execute are mutated (a coverage run first, then
``mutmut run --use-coverage``): code covered only by the e2e suite is out of scope here.
Each module is mutated in place by mutmut 2 (it restores the file after every mutant;
this script also puts back any ``.bak`` a killed run left), and each mutant is run
against the fast tests that cover the module. Modules whose tests need Neo4j share one
jar-launched Neo4j that this script starts (``ALCHEMISCALE_LOCAL_TEST_NEO4J_URI``),
so a mutant costs one pytest run, not one Neo4j start. When a module's budget runs out,
the run stops and the score covers the mutants tested so far. Results go to
``bench/results/mutate/<module>.json`` (score, counts, every surviving mutant's diff).
Do not edit the module files while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "mutate"
CACHE = ROOT / ".mutmut-cache"
COVERAGE = ROOT / ".coverage"

# module -> (files to mutate, tests that cover them, needs Neo4j)
MODULES: dict[str, tuple[list[str], list[str], bool]] = {
    "gufekeys": (["alchemiscale_local/gufekeys.py"], ["tests/unit/test_keyedchain.py"], False),
    "keyedchain": (["alchemiscale_local/keyedchain.py"], ["tests/unit/test_keyedchain.py"], False),
    "compute_pool": (["launchers/compute_pool.py"], ["tests/unit/test_compute_pool.py"], False),
    "objectstore_local": (
        ["backends/objectstore/local.py"],
        ["tests/integration/test_objectstore.py", "-k", "file"],
        False,
    ),
    "claims": (
        ["backends/statestore/compute.py"],
        [
            "tests/integration/test_statestore_claim_interleaving.py",
            "tests/integration/test_statestore_claims.py",
            "tests/integration/test_statestore_compute.py",
        ],
        True,
    ),
    "auth": (
        ["alchemiscale_local/api/auth.py", "alchemiscale_local/models.py"],
        ["tests/integration/test_api_auth.py"],
        True,
    ),
}
CHEAP = ["gufekeys", "compute_pool"]


@contextlib.contextmanager
def shared_neo4j() -> Iterator[dict[str, str]]:
    """One Neo4j for every mutant's test run (the suite's external-Neo4j variables)."""
    sys.path.insert(0, str(ROOT))
    from alchemiscale_local.launchers.neo4j.jar import JarLauncher

    from tests.conftest import make_isolated_settings

    base = Path(tempfile.mkdtemp(prefix="mutate-neo4j-"))
    launcher = JarLauncher(make_isolated_settings(base), watch_parent=True)
    conn = launcher.start()
    try:
        yield {
            "ALCHEMISCALE_LOCAL_TEST_NEO4J_URI": conn.uri,
            "ALCHEMISCALE_LOCAL_TEST_NEO4J_USER": conn.user,
            "ALCHEMISCALE_LOCAL_TEST_NEO4J_PASSWORD": conn.password,
            "ALCHEMISCALE_LOCAL_TEST_NEO4J_DATABASE": conn.database,
        }
    finally:
        launcher.stop()
        shutil.rmtree(base, ignore_errors=True)


def restore_backups(files: list[str]) -> None:
    """A mutmut run stopped mid-mutant leaves ``file.bak`` (the original): put it back."""
    for f in files:
        bak = ROOT / (f + ".bak")
        if bak.exists():
            shutil.move(bak, ROOT / f)
            print(f"restored {f} from its .bak", file=sys.stderr)


def read_cache() -> list[dict]:
    if not CACHE.exists():
        return []
    with contextlib.closing(sqlite3.connect(CACHE)) as db:
        rows = db.execute(
            "SELECT m.id, m.status, l.line_number, l.line, s.filename FROM Mutant m "
            "JOIN Line l ON m.line = l.id JOIN SourceFile s ON l.sourcefile = s.id ORDER BY m.id"
        ).fetchall()
    return [
        {"id": r[0], "status": r[1], "line_number": r[2] + 1, "line": r[3].strip(), "file": r[4]}
        for r in rows
    ]


def show(mutant_id: int) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", str(mutant_id)], cwd=ROOT, capture_output=True, text=True
    )
    return proc.stdout.strip()


def run_module(name: str, budget_s: float, env: dict[str, str]) -> dict:
    files, tests, _ = MODULES[name]
    CACHE.unlink(missing_ok=True)
    pytest_args = ["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", "120", *tests]
    # Which lines the fast tests run: only those are mutated.
    COVERAGE.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--include={','.join(files)}", *pytest_args],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    runner = " ".join([sys.executable, *pytest_args])
    argv = [
        sys.executable,
        "-m",
        "mutmut",
        "run",
        "--paths-to-mutate",
        ",".join(files),
        "--runner",
        runner,
        "--tests-dir",
        "tests",
        "--no-progress",
        "--CI",
        "--use-coverage",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, start_new_session=True)
    stopped = False
    try:
        proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        stopped = True
        os.killpg(proc.pid, signal.SIGINT)  # mutmut restores the mutated file on the way out
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        restore_backups(files)
    elapsed = time.monotonic() - start
    mutants = read_cache()
    counts: dict[str, int] = {}
    for m in mutants:
        counts[m["status"]] = counts.get(m["status"], 0) + 1
    killed = counts.get("ok_killed", 0) + counts.get("ok_suspicious", 0)
    timeouts = counts.get("bad_timeout", 0)
    survived = [m for m in mutants if m["status"] == "bad_survived"]
    tested = killed + timeouts + len(survived)
    for m in survived:
        m["diff"] = show(m["id"])
    CACHE.unlink(missing_ok=True)
    COVERAGE.unlink(missing_ok=True)
    return {
        "module": name,
        "files": files,
        "tests": tests,
        "budget_s": budget_s,
        "elapsed_s": round(elapsed, 1),
        "stopped_by_budget": stopped,
        "mutants": len(mutants),
        "tested": tested,
        "killed": killed,
        "timeouts": timeouts,
        "survived": len(survived),
        "score": round((killed + timeouts) / tested, 3) if tested else None,
        "counts": counts,
        "survivors": survived,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="*", help=f"default {' '.join(CHEAP)}; known: {' '.join(MODULES)}")
    parser.add_argument("--budget-s", type=float, default=float(os.environ.get("MUTATE_BUDGET_S", 600)))
    args = parser.parse_args(argv)
    names = args.modules or os.environ.get("MUTATE_MODULES", " ".join(CHEAP)).split()
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    needs_neo4j = any(MODULES[n][2] for n in names)
    with shared_neo4j() if needs_neo4j else contextlib.nullcontext({}) as env:
        for name in names:
            result = run_module(name, args.budget_s, env)
            (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
            print(
                f"{name}: score {result['score']} ({result['killed']} killed, {result['timeouts']} timed out, "
                f"{result['survived']} survived of {result['tested']} tested; {result['mutants']} mutants; "
                f"{result['elapsed_s']} s{', budget reached' if result['stopped_by_budget'] else ''})"
            )
            for m in result["survivors"]:
                print(f"  survived #{m['id']} {m['file']}:{m['line_number']}: {m['line']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
