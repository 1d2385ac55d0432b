"""``keyed_chain``: parse + verify every key of a 4,504-entry gufe network (rbfe-large), against json.loads.

Run alone: ``python -m bench.keyed_chain [--quick]`` (no deployment needed). It was a
wall-clock ceiling in tests/unit/test_keyedchain.py (5 s); speed belongs here.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from alchemiscale_local.keyedchain import parse_chain, verify_keys

from .common import machine_facts, median, print_table, ratio, record, target, timed, write_result

NAME = "keyed_chain"
FIXTURE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "fixtures"
    / "gufe"
    / "rbfe-tyk2"
    / "rbfe-large.json.gz"
)
LIMIT_S = 5.0


def run(quick: bool = False) -> dict:
    raw = gzip.decompress(FIXTURE.read_bytes())
    repeats = 1 if quick else 5
    verify_s, loads_s = [], []
    for _ in range(repeats):
        t, report = timed(lambda: verify_keys(parse_chain(raw)))
        assert report.verified == 4504 and not report.mismatches
        verify_s.append(t)
        loads_s.append(timed(lambda: json.loads(raw))[0])
    figure = {"parse_verify_s": median(verify_s)}
    baseline = {"json_loads_s": median(loads_s)}
    return record(
        NAME,
        figure=figure,
        baseline=baseline,
        ratio={"parse_verify_over_json_loads": ratio(figure["parse_verify_s"], baseline["json_loads_s"])},
        target=target(
            f"parse + verify of 4,504 entries under {LIMIT_S} s",
            LIMIT_S,
            figure["parse_verify_s"],
            figure["parse_verify_s"] < LIMIT_S,
        ),
        parameters={"entries": 4504, "repeats": repeats, "fixture": str(FIXTURE)},
        machine=machine_facts(),
        quick=quick,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print_table(result)
    write_result(result, Path(__file__).resolve().parent / "results" / ("quick" if args.quick else ""))


if __name__ == "__main__":
    main()
