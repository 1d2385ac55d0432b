"""One-off: extract the toy network's components from a real gufe document.

Writes ``components.json.gz`` next to this file: a list of ``[gufe_key, keyed_dict]`` pairs
(keyed-chain entries, exactly as gufe wrote them) holding

- the TYK2 ``ProteinComponent`` ("tyk2", 4,670 atoms),
- the default ``SolventComponent`` (water, Na+/Cl-, 0.15 M),
- the first 64 ``SmallMoleculeComponent`` entries, in chain order.

The list has no single root object (the components are independent), so it is a set of chain
entries rather than a rooted keyed chain; every stored key is checked against its content.

Where the data came from: ``rbfe-tyk2/rbfe-large.json.gz`` of the project's shared gufe fixtures
(``shared/fixtures/gufe``; see its ``PROVENANCE.md`` and ``rbfe-tyk2/manifest.json``). That network
was written by gufe (commit 60d4e531) from the TYK2 ligands and protein of OpenFreeEnergy's
openfe-benchmarks repository (commit 87c55d68, ``openfe_benchmarks/data/benchmark_systems/
jacs_set/tyk2``; MIT license) plus RDKit-made analogues of those ligands (the manifest's
"construction" section). The molecules are real structures; the toy protocol that uses them
computes nothing about them.

Run: ``python make_components.py [path/to/rbfe-large.json.gz]``
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from alchemiscale_local.gufekeys import check_key

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
DEFAULT_SOURCE = REPO.parent / "shared" / "fixtures" / "gufe" / "rbfe-tyk2" / "rbfe-large.json.gz"
OUT = HERE / "components.json.gz"
N_LIGANDS = 64


def extract(source: Path) -> list[list]:
    chain = json.loads(gzip.decompress(source.read_bytes()))
    by_class: dict[str, list[list]] = {}
    for key, d in chain:
        by_class.setdefault(d["__qualname__"], []).append([key, d])
    (protein,) = by_class["ProteinComponent"]
    (solvent,) = by_class["SolventComponent"]
    ligands = by_class["SmallMoleculeComponent"][:N_LIGANDS]
    if len(ligands) != N_LIGANDS:
        raise SystemExit(f"{source} holds only {len(ligands)} ligands; {N_LIGANDS} are needed")
    out = [protein, solvent, *ligands]
    for key, d in out:
        res = check_key(key, d)
        if res.status != "verified":
            raise SystemExit(f"{key}: stored key not reproduced ({res.status}: {res.detail})")
    return out


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    entries = extract(source)
    # level 9 and mtime 0: the same input gives the same bytes
    OUT.write_bytes(gzip.compress(json.dumps(entries).encode(), compresslevel=9, mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(entries)} entries) from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
