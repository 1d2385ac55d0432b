"""The key checks against documents real gufe makes at test time (science env; skipped without gufe).

The fixture files hold gufe's keys from one run; here gufe makes fresh objects (other
names, settings, ions, repeats, a failed result) and the project's verifier must agree
with every key gufe gave them, and must catch an entry whose content was changed.
"""

from __future__ import annotations

import copy
import json

import pytest

from alchemiscale_local.gufekeys import compute_key
from alchemiscale_local.keyedchain import KeyMismatchError, parse_chain, verify_keys
from tests.pdr_pool import make_with_gufe

gufe = pytest.importorskip("gufe")


def _keyed_chain(obj) -> list[list]:
    from gufe.tokenization import JSON_HANDLER, KeyedChain

    return json.loads(json.dumps(KeyedChain.gufe_to_keyed_chain_rep(obj), cls=JSON_HANDLER.encoder))


def _ligand(smiles: str):
    """A SmallMoleculeComponent with gufe's default (empty) name, from RDKit with one conformer."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=7)
    return gufe.SmallMoleculeComponent.from_rdkit(mol)


def _network(n: int, salt: str):
    from gufe.tests.test_protocol import DummyProtocol

    settings = DummyProtocol.default_settings()
    settings.n_repeats = n + 1
    protocol = DummyProtocol(settings)
    from openff.units import unit

    systems = [
        gufe.ChemicalSystem(
            {
                "solvent": gufe.SolventComponent(
                    positive_ion="K+" if i % 2 else "Na+", ion_concentration=(0.1 + i / 100) * unit.molar
                ),
                "ligand": _ligand(["CCO", "CCCO", "c1ccccc1O"][i % 3]),
            },
            name=f"{salt}-{i}",
        )
        for i in range(n + 1)
    ]
    edges = [
        gufe.Transformation(systems[i], systems[i + 1], protocol=protocol, name=f"{salt}-tf{i}")
        for i in range(n)
    ]
    edges.append(gufe.NonTransformation(systems[0], protocol=protocol, name=f"{salt}-nt"))
    # an unnamed network too: gufe leaves its default name (None) out of the hash
    return gufe.AlchemicalNetwork(edges=edges, nodes=systems, name=f"fresh {salt}" if salt != "c" else None)


@pytest.mark.parametrize(("n", "salt"), [(1, "a"), (4, "b"), (9, "c")])
def test_fresh_gufe_networks_verify_with_gufes_keys(n: int, salt: str) -> None:
    network = _network(n, salt)
    chain = _keyed_chain(network)
    assert chain[-1][0] == str(network.key)
    report = verify_keys(parse_chain(chain))
    assert report.mismatches == [] and report.verified == len(chain)
    for key, entry in chain:
        assert compute_key(entry) == key  # the project's key of each entry is gufe's


@pytest.mark.parametrize("ok", [True, False])
def test_fresh_gufe_results_verify_and_a_changed_entry_is_caught(ok: bool) -> None:
    chain = make_with_gufe(ok)
    report = verify_keys(parse_chain(chain))
    assert report.mismatches == [] and report.verified >= 5
    assert chain[-1][1]["__qualname__"] == "ProtocolDAGResult"
    assert compute_key(chain[-1][1]) == chain[-1][0]
    changed = copy.deepcopy(chain)
    changed[-1][1]["name"] = "not what gufe hashed"
    with pytest.raises(KeyMismatchError):
        verify_keys(parse_chain(changed))
