"""gufe's key algorithm, reproduced from the JSON alone (no gufe import).

A gufe key is ``f"{qualname}-{md5(json.dumps(hash_input, sort_keys=True))}"``
where ``hash_input`` is the keyed dict with ``:version:`` and every top-level
field equal to its class default removed (gufe-format.md §1.3 and §1.7).
ProtocolUnit-like classes instead carry a random key, stored as ``"_key"``.

The defaults table below is gufe's (checked against gufe 1.12); the comparison
is Python ``==`` on the stored value, exactly as gufe compares the *Python*
value before JSON encoding. Classes outside gufe may override ``_defaults()``,
so for them a mismatch means "cannot check", never "wrong".
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GUFE_DEFAULTS",
    "KeyCheck",
    "REASON_INT_KEYS",
    "REASON_RANDOM_KEY",
    "REASON_RANDOM_NO_KEY",
    "REASON_UNKNOWN_DEFAULTS",
    "check_key",
    "compute_key",
    "gufe_ref",
    "is_known_gufe_class",
    "make_key",
    "random_key",
]


class _NeverEqual:
    """A default that no stored JSON value equals (gufe's default is a live Quantity)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "<never equal>"


NEVER_EQUAL = _NeverEqual()

# cls.defaults() at gufe HEAD, minus ":version:" (always stripped). Keyed by __qualname__,
# applied only when __module__ is gufe's (see is_known_gufe_class).
GUFE_DEFAULTS: dict[str, dict[str, Any]] = {
    # ion_concentration's default is the Quantity 0.15 molar; the stored field is the string
    # "0.15 molar", which is never == a Quantity, so it is never stripped.
    "SolventComponent": {
        "smiles": "O",
        "positive_ion": "Na+",
        "negative_ion": "Cl-",
        "neutralize": True,
        "ion_concentration": NEVER_EQUAL,
    },
    "ChemicalSystem": {"name": ""},
    "SmallMoleculeComponent": {"name": ""},  # no top-level name field: nothing stripped
    "ProteinComponent": {"name": ""},
    "SolvatedPDBComponent": {"name": ""},
    "ProteinMembraneComponent": {"name": ""},
    "AlchemicalNetwork": {"edges": None, "nodes": None, "name": None},
    # metadata is stored as {} (gufe >= 1.12), which != None: it stays in the hash.
    "Transformation": {"mapping": None, "name": None, "metadata": None, "validate": False},
    "NonTransformation": {"name": None, "metadata": None, "validate": False},
    "LigandAtomMapping": {},
    "LigandNetwork": {},
    "Protocol": {},
    "ProtocolResult": {},
    "ProtocolDAG": {},
    "ProtocolDAGResult": {},
    "AlchemicalArchive": {},
    # gufe's own test protocols (gufe.tests.*): Protocol / ProtocolResult subclasses, inherit {}.
    "DummyProtocol": {},
    "BrokenProtocol": {},
    "DummyProtocolResult": {},
    "NoDepsProtocol": {},
    "NoDepResults": {},
    "WriterProtocol": {},
}

# gufe classes keyed by uuid4 (their subclasses are too; they all carry "_key").
RANDOM_KEY_CLASSES = frozenset({"ProtocolUnit", "ProtocolUnitResult", "ProtocolUnitFailure"})

REASON_RANDOM_KEY = "random-key"
REASON_RANDOM_NO_KEY = "random-key-class-without-_key"
REASON_UNKNOWN_DEFAULTS = "unknown-class-defaults"
REASON_INT_KEYS = "int-like-dict-keys"

_INT_LIKE = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_LAM_FIELD = "componentA_to_componentB"


def _is_gufe_module(module: str) -> bool:
    return module == "gufe" or module.startswith("gufe.")


def is_known_gufe_class(qualname: str, module: str) -> bool:
    """True for a class of gufe itself whose defaults are in GUFE_DEFAULTS."""
    return qualname in GUFE_DEFAULTS and _is_gufe_module(module)


def gufe_ref(key: str) -> dict[str, str]:
    """The reference form of a child object inside a keyed dict."""
    return {":gufe-key:": key}


def random_key(qualname: str) -> str:
    """A new random key, as gufe gives ProtocolUnit / ProtocolUnitResult objects."""
    return f"{qualname}-{uuid.uuid4().hex}"


def _int_keyed(d: dict) -> bool:
    return bool(d) and all(type(k) is str and _INT_LIKE.match(k) for k in d)


def _intify(d: dict) -> dict:
    return {int(k): v for k, v in d.items()}


def _hash_input(keyed_dict: dict, defaults: dict[str, Any], lam: bool) -> dict:
    out = {}
    for k, v in keyed_dict.items():
        if k == ":version:":  # defaults() always holds the class's own schema version
            continue
        if k in defaults and v == defaults[k]:
            continue
        out[k] = v
    if lam and isinstance(out.get(_LAM_FIELD), dict) and _int_keyed(out[_LAM_FIELD]):
        # dict[int, int] in Python: json.dumps(sort_keys=True) sorts the ints numerically
        out[_LAM_FIELD] = _intify(out[_LAM_FIELD])
    return out


def _digest(obj: Any) -> str:
    dumped = json.dumps(obj, sort_keys=True, allow_nan=False)
    return hashlib.md5(dumped.encode(), usedforsecurity=False).hexdigest()


def _has_int_keyed_dicts(obj: Any, skip_top: str | None) -> bool:
    stack = [v for k, v in obj.items() if k != skip_top]
    while stack:
        o = stack.pop()
        if type(o) is dict:
            if _int_keyed(o):
                return True
            stack.extend(o.values())
        elif type(o) is list:
            stack.extend(o)
    return False


def _intify_all(obj: Any) -> Any:
    """Copy with every dict whose keys are all int-like turned into an int-keyed dict."""
    if type(obj) is dict:
        conv = {k: _intify_all(v) for k, v in obj.items()}
        return _intify(conv) if _int_keyed(conv) else conv
    if type(obj) is list:
        return [_intify_all(v) for v in obj]
    return obj


def _content_key(keyed_dict: dict, qualname: str, module: str) -> str:
    known = is_known_gufe_class(qualname, module)
    defaults = GUFE_DEFAULTS[qualname] if known else {}
    lam = known and qualname == "LigandAtomMapping"
    return f"{qualname}-{_digest(_hash_input(keyed_dict, defaults, lam))}"


def _uses_random_key(keyed_dict: dict, qualname: str, module: str) -> bool:
    # a known content-hashed gufe class never takes its key from a "_key" field
    if is_known_gufe_class(qualname, module):
        return False
    return "_key" in keyed_dict


def compute_key(keyed_dict: dict) -> str | None:
    """The key gufe gives this keyed dict (it must carry ``__qualname__``/``__module__``).

    For ProtocolUnit-like dicts (a ``"_key"`` field) this is the stored ``_key``, or None when
    that is not a string. Otherwise it is the content hash with the defaults table applied
    (``{}`` defaults for classes outside gufe). Whether a stored key that differs from this is
    *wrong* is decided by :func:`check_key`.
    """
    qualname = keyed_dict["__qualname__"]
    module = keyed_dict["__module__"]
    if _uses_random_key(keyed_dict, qualname, module):
        stored = keyed_dict["_key"]
        return stored if isinstance(stored, str) else None
    return _content_key(keyed_dict, qualname, module)


def make_key(keyed_dict: dict, qualname: str | None = None) -> str:
    """Key for a NEW keyed dict built without gufe (same algorithm as gufe's ``tokenize``).

    ``keyed_dict`` must hold the class fields (children as ``{":gufe-key:": key}``) plus
    ``__qualname__`` and ``__module__`` (both are part of the hash); ``:version:`` is optional
    and never hashed. A dict with ``"_key"`` (a ProtocolUnit-like object, see
    :func:`random_key`) gets that key.
    """
    if not isinstance(keyed_dict, dict):
        raise TypeError("make_key needs a keyed dict")
    own = keyed_dict.get("__qualname__")
    module = keyed_dict.get("__module__")
    if not isinstance(own, str) or not isinstance(module, str):
        raise ValueError("the keyed dict must carry '__qualname__' and '__module__' (they are hashed)")
    if qualname is not None and qualname != own:
        raise ValueError(f"qualname {qualname!r} differs from the dict's __qualname__ {own!r}")
    if _uses_random_key(keyed_dict, own, module):
        stored = keyed_dict["_key"]
        if not isinstance(stored, str) or stored.split("-", 1)[0] != own:
            raise ValueError(f"'_key' must be a string '{own}-<token>', got {stored!r}")
        return stored
    return _content_key(keyed_dict, own, module)


@dataclass(frozen=True)
class KeyCheck:
    """Outcome of checking one stored key against its keyed dict.

    ``status`` is ``"verified"`` (content hash reproduced), ``"unverifiable"`` (taken as given;
    ``reason`` says why) or ``"mismatch"`` (a checkable key that is wrong).
    """

    status: str
    computed: str | None
    reason: str | None = None
    detail: str = ""


def check_key(key: str, keyed_dict: dict) -> KeyCheck:
    """Check a stored key against its (already structurally validated) keyed dict."""
    qualname = keyed_dict["__qualname__"]
    module = keyed_dict["__module__"]
    if _uses_random_key(keyed_dict, qualname, module):
        stored = keyed_dict["_key"]
        if stored == key:
            return KeyCheck(
                "unverifiable",
                stored,
                REASON_RANDOM_KEY,
                "a uuid4 key (ProtocolUnit-like class); it equals the entry's '_key'",
            )
        return KeyCheck(
            "mismatch", stored if isinstance(stored, str) else None, None, f"the entry's '_key' is {stored!r}"
        )
    if qualname in RANDOM_KEY_CLASSES and _is_gufe_module(module):
        return KeyCheck("unverifiable", None, REASON_RANDOM_NO_KEY, "random-key class without '_key'")
    known = is_known_gufe_class(qualname, module)
    computed = _content_key(keyed_dict, qualname, module)
    if computed == key:
        return KeyCheck("verified", computed)
    skip = _LAM_FIELD if known and qualname == "LigandAtomMapping" else None
    if _has_int_keyed_dicts(keyed_dict, skip):
        # Python may have held int keys there (sorted numerically, lost in JSON); try that reading.
        defaults = GUFE_DEFAULTS[qualname] if known else {}
        alt = _intify_all(_hash_input(keyed_dict, defaults, skip is not None))
        alt_key = f"{qualname}-{_digest(alt)}"
        if alt_key == key:
            return KeyCheck("verified", alt_key, None, "hashed with int dict keys")
        return KeyCheck(
            "unverifiable",
            computed,
            REASON_INT_KEYS,
            "holds dicts with int-like keys whose Python key type (int or str) is unknown",
        )
    if not known:
        return KeyCheck(
            "unverifiable",
            computed,
            REASON_UNKNOWN_DEFAULTS,
            f"{module}.{qualname} is not a gufe class in the defaults table; hashed with {{}} "
            "defaults it does not match (the class may override _defaults())",
        )
    return KeyCheck("mismatch", computed, None, f"recomputed {computed}")
