"""Build RBFE-shaped AlchemicalNetwork keyed chains for the TOY protocol, without gufe.

The components are real (TYK2 protein, water, 64 TYK2 ligands: see ``data/make_components.py``);
the atom mappings are NOT: each pairs atoms of equal element at equal index, and says so in its
annotations. Only the ToyProtocol runs these networks, and it reads neither atoms nor mappings.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import inspect
import json
import math
import random
from importlib import resources
from typing import Any

from ...gufekeys import gufe_ref, make_key
from .protocol import ToyProtocol, ToySettings

__all__ = ["MAX_LIGANDS", "MAX_TRANSFORMATIONS", "build_toy_network", "load_components"]

MAX_LIGANDS = 64
MAX_TRANSFORMATIONS = MAX_LIGANDS * (MAX_LIGANDS - 1)  # two legs for each of the 2016 pairs
_MAPPING_NOTE = json.dumps(
    {
        "toy_mapping": "atoms of equal element at equal index; not a chemical "
        "atom mapping (made for the toy protocol, which ignores it)"
    },
    sort_keys=True,
)


@functools.lru_cache(maxsize=1)
def _components_json() -> bytes:
    data = resources.files(__package__).joinpath("data", "components.json.gz").read_bytes()
    return gzip.decompress(data)


def load_components() -> tuple[list, list, list[list]]:
    """Fresh ``([key, protein], [key, solvent], [[key, ligand], ...])`` from the package data.

    Parsed anew on every call (~10 ms) so callers may mutate what they get; the keys are the
    ones gufe wrote, so the ~800 KB protein is never re-hashed here.
    """
    entries = json.loads(_components_json())
    return entries[0], entries[1], entries[2:]


def _entry(d: dict[str, Any]) -> list:
    return [make_key(d), d]


def _chemical_system(components: dict[str, str], name: str) -> list:
    # gufe writes the components dict with its labels sorted
    return _entry(
        {
            "components": {label: gufe_ref(components[label]) for label in sorted(components)},
            "name": name,
            "__qualname__": "ChemicalSystem",
            "__module__": "gufe.chemicalsystem",
            ":version:": 1,
        }
    )


def _mapping(a: list, b: list) -> list:
    atoms_a, atoms_b = a[1]["atoms"], b[1]["atoms"]
    pairs = {str(i): i for i in range(min(len(atoms_a), len(atoms_b))) if atoms_a[i][0] == atoms_b[i][0]}
    return _entry(
        {
            "componentA": gufe_ref(a[0]),
            "componentB": gufe_ref(b[0]),
            "componentA_to_componentB": pairs,
            "annotations": _MAPPING_NOTE,
            "__qualname__": "LigandAtomMapping",
            "__module__": "gufe.mapping.ligandatommapping",
            ":version:": 1,
        }
    )


@functools.lru_cache(maxsize=1)
def _transformation_has_metadata() -> bool:
    """Whether Transformations carry ``metadata`` (gufe >= 1.12 writes it; gufe 1.10 refuses it).

    Without gufe the current format is written; with gufe, the installed version's, so the
    documents load there and keep the keys that gufe computes.
    """
    if importlib.util.find_spec("gufe") is None:
        return True
    from gufe import Transformation

    return "metadata" in inspect.signature(Transformation.__init__).parameters


def _transformation(a: list, b: list, protocol_key: str, mapping_key: str) -> list:
    d: dict[str, Any] = {
        "stateA": gufe_ref(a[0]),
        "stateB": gufe_ref(b[0]),
        "protocol": gufe_ref(protocol_key),
        "mapping": gufe_ref(mapping_key),
        "name": f"toy_rbfe_{a[1]['name']}_{b[1]['name']}",
        "metadata": {},
        "__qualname__": "Transformation",
        "__module__": "gufe.transformations.transformation",
        ":version:": 1,
    }
    if not _transformation_has_metadata():
        del d["metadata"]
    return _entry(d)


def _ligand_pairs(n_ligands: int, seed: int) -> list[tuple[int, int]]:
    """All pairs, ordered so the first n-1 form a path through every ligand (then cycles)."""
    order = list(range(n_ligands))
    random.Random(seed).shuffle(order)
    return [(order[i], order[i + gap]) for gap in range(1, n_ligands) for i in range(n_ligands - gap)]


def build_toy_network(
    n_transformations: int,
    *,
    name: str = "toy network",
    settings: ToySettings | dict | None = None,
    seed: int = 0,
) -> list:
    """A keyed chain (``[[key, keyed_dict], ...]``, root AlchemicalNetwork last) for the toy protocol.

    Each ligand pair gives a complex leg (ligand + protein + solvent) and a solvent leg (ligand +
    solvent) sharing one LigandAtomMapping; an odd ``n_transformations`` leaves the last pair
    with its complex leg only. ``seed`` picks which pairs (and their direction); ``settings``
    are the ToyProtocol's. Keys follow gufe's algorithm, so gufe would compute the same ones.
    """
    if isinstance(n_transformations, bool) or not isinstance(n_transformations, int):
        raise TypeError("n_transformations must be an int")
    if not 1 <= n_transformations <= MAX_TRANSFORMATIONS:
        raise ValueError(
            f"n_transformations must be between 1 and {MAX_TRANSFORMATIONS} (the toy "
            f"network has {MAX_LIGANDS} ligands: {MAX_TRANSFORMATIONS // 2} pairs, "
            f"two legs each); got {n_transformations}"
        )
    protein, solvent, ligands = load_components()
    protocol = ToyProtocol(settings).to_keyed_dict()
    protocol_entry = _entry(protocol)

    used: dict[int, None] = {}  # ligand indices in first-use order
    systems: dict[tuple[int, str], list] = {}
    mappings: list[list] = []
    transformations: list[list] = []

    def system(lig: int, leg: str) -> list:
        if (lig, leg) not in systems:
            comps = {"ligand": ligands[lig][0], "solvent": solvent[0]}
            if leg == "complex":
                comps["protein"] = protein[0]
            name_ = f"{ligands[lig][1]['molprops']['ofe-name']}_{leg}"
            systems[lig, leg] = _chemical_system(comps, name_)
        return systems[lig, leg]

    for a, b in _ligand_pairs(len(ligands), seed)[: math.ceil(n_transformations / 2)]:
        used.update({a: None, b: None})
        mapping = _mapping(ligands[a], ligands[b])
        mappings.append(mapping)
        for leg in ("complex", "solvent"):
            if len(transformations) < n_transformations:
                transformations.append(
                    _transformation(system(a, leg), system(b, leg), protocol_entry[0], mapping[0])
                )

    node_keys = sorted({t[1][s][":gufe-key:"] for t in transformations for s in ("stateA", "stateB")})
    network = _entry(
        {
            "nodes": [gufe_ref(k) for k in node_keys],
            "edges": [gufe_ref(k) for k in sorted(t[0] for t in transformations)],
            "name": name,
            "__qualname__": "AlchemicalNetwork",
            "__module__": "gufe.network",
            ":version:": 1,
        }
    )
    return [
        protein,
        solvent,
        *(ligands[i] for i in sorted(used)),
        *mappings,
        *systems.values(),
        protocol_entry,
        *transformations,
        network,
    ]
