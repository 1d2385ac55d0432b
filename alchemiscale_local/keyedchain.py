"""Validate and navigate gufe keyed chains without importing gufe.

A keyed chain (gufe-format.md §1.5) is a JSON array of ``[gufe_key, keyed_dict]`` pairs:
dependencies first, the root object last, children referenced as ``{":gufe-key:": key}``.
It is what gufe's ``to_json()`` / ``to_keyed_chain()`` writes.

:func:`parse_chain` checks the structure and returns a :class:`KeyedChain`, which keeps every
keyed dict exactly as parsed (key order included), so ``to_json()`` gives back gufe's bytes.
:func:`verify_keys` recomputes the stored keys (algorithm in :mod:`.gufekeys`).

Choices:
- The same key twice with *different* content is always an error. An exact duplicate
  (byte-identical JSON) is rejected by default (gufe never writes one); with
  ``duplicates="collapse"`` the later copies are dropped, as gufe's loader does, and
  ``to_json()`` then returns the chain without them.
- Every entry must be reachable from the last one (the root) through references.
- A dict with ``":gufe-key:"`` must be exactly ``{":gufe-key:": "<key>"}``.
- Inside an entry, a dict with both ``__qualname__`` and ``__module__`` (an inline child, i.e. a
  nested ``to_dict`` fragment) is rejected.
- Values must be JSON: dict (str keys), list, str, int, finite float, bool, None. Tuples are only
  accepted as the ``(key, dict)`` pairs themselves.
- A JSON object with a repeated member name is rejected (it would not round-trip).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .gufekeys import check_key, compute_key, gufe_ref, make_key, random_key
from .models import GUFE_KEY_RE

__all__ = [
    "BadReferenceError",
    "ChainLimits",
    "DanglingReferenceError",
    "DuplicateKeyError",
    "ForwardReferenceError",
    "InvalidKeyError",
    "RefPath",
    "InvalidValueError",
    "KeyIssue",
    "KeyMismatchError",
    "KeyedChain",
    "KeyedChainError",
    "LimitExceededError",
    "MalformedEntryError",
    "NestedDocumentError",
    "NonFiniteNumberError",
    "NotAKeyedChainError",
    "RootError",
    "TooDeepError",
    "TooLargeError",
    "TooManyEntriesError",
    "VerifyReport",
    "compute_key",
    "gufe_ref",
    "make_key",
    "parse_chain",
    "random_key",
    "references",
    "verify_keys",
]

RefPath = tuple[str | int, ...]
KEY_RE = GUFE_KEY_RE  # the one gufe-key pattern (models.py); groups: qualname, token
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_REF = ":gufe-key:"
_INF = float("inf")


# ---------------------------------------------------------------------------------------- errors
class KeyedChainError(ValueError):
    """Base of every keyed-chain error; ``index``/``key``/``path`` locate the problem when known."""

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        key: str | None = None,
        path: RefPath | None = None,
    ) -> None:
        super().__init__(message)
        self.index, self.key, self.path = index, key, path


class NotAKeyedChainError(KeyedChainError):
    """The input is not a JSON array of [key, keyed_dict] pairs (or not JSON at all)."""


class NestedDocumentError(NotAKeyedChainError):
    """A nested ``to_dict`` document (children inline) where a keyed chain is required."""


class MalformedEntryError(KeyedChainError):
    """An entry is not a ``[key, dict]`` pair, or its dict lacks the class markers."""


class InvalidKeyError(KeyedChainError):
    """A key is not ``<Qualname>-<token>`` or does not match the entry's ``__qualname__``."""


class InvalidValueError(KeyedChainError):
    """A value that is not plain JSON (or an object with a repeated member name)."""


class NonFiniteNumberError(InvalidValueError):
    """NaN or +/-Infinity."""


class BadReferenceError(KeyedChainError):
    """A malformed ``{":gufe-key:": ...}`` reference."""


class DanglingReferenceError(BadReferenceError):
    """A reference to a key that is not in the chain."""


class ForwardReferenceError(BadReferenceError):
    """A reference to the entry itself or to a later entry."""


class RootError(KeyedChainError):
    """An entry is not a dependency of the last entry (so the root is not last)."""


class DuplicateKeyError(KeyedChainError):
    """The same key twice."""


class LimitExceededError(KeyedChainError):
    """The document is larger than a configured limit."""


class TooLargeError(LimitExceededError):
    pass


class TooDeepError(LimitExceededError):
    pass


class TooManyEntriesError(LimitExceededError):
    pass


class KeyMismatchError(KeyedChainError):
    """A stored key that can be checked and does not match the entry's content."""

    def __init__(self, message: str, *, index: int, key: str, computed: str | None) -> None:
        super().__init__(message, index=index, key=key)
        self.computed = computed


def _fmt_path(path: RefPath) -> str:
    if not path:
        return ""
    out = str(path[0])
    for p in path[1:]:
        out += f"[{p}]" if isinstance(p, int) else f"[{json.dumps(p)}]"
    return out


def _at(index: int, key: Any, path: RefPath = ()) -> str:
    where = f"entry {index} ({key!r})" if key is not None else f"entry {index}"
    return f"{where} at {_fmt_path(path)}" if path else where


# ---------------------------------------------------------------------------------------- limits
@dataclass(frozen=True)
class ChainLimits:
    """Size limits enforced by :func:`parse_chain`.

    ``max_bytes`` applies to text/bytes input (UTF-8 size); ``max_depth`` counts container
    nesting inside a keyed dict (the keyed dict itself is depth 1).
    """

    max_bytes: int = 128 * 1024 * 1024
    max_entries: int = 200_000
    max_depth: int = 64
    max_key_length: int = 256

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_entries", "max_depth", "max_key_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.max_depth > 500:
            raise ValueError("max_depth must be at most 500")


DEFAULT_LIMITS = ChainLimits()


# ------------------------------------------------------------------------------ JSON text parsing
class _NonFinite:
    """Placeholder json.loads puts where the text says NaN / Infinity / -Infinity."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _DupDict(dict):
    """A JSON object with a repeated member name (reported with its location by the scan)."""

    duplicate = ""


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        d = _DupDict(d)
        seen: set[str] = set()
        d.duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return d


def _load_text(data: str | bytes | bytearray | memoryview, limits: ChainLimits) -> Any:
    if not isinstance(data, str):
        if len(data) > limits.max_bytes:
            raise TooLargeError(f"document is {len(data)} bytes; the limit is {limits.max_bytes}")
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotAKeyedChainError(f"document is not UTF-8: {exc}") from None
    elif len(data) > limits.max_bytes // 4:  # only then can the UTF-8 size exceed the limit
        size = len(data.encode("utf-8", "surrogatepass"))
        if size > limits.max_bytes:
            raise TooLargeError(f"document is {size} bytes; the limit is {limits.max_bytes}")
    try:
        return json.loads(data, parse_constant=_NonFinite, object_pairs_hook=_pairs_hook)
    except RecursionError:
        raise TooDeepError("document nests deeper than the JSON parser allows") from None
    except json.JSONDecodeError as exc:
        raise NotAKeyedChainError(f"document is not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer beyond Python's int digit limit
        raise InvalidValueError(f"document holds an unparseable value: {exc}") from None


# ------------------------------------------------------------------------------------- scanning
def _scan(d: dict, index: int, key: str, max_depth: int) -> list[tuple[RefPath, str]]:
    """Check every value of a keyed dict; return its references as (path, key)."""
    refs: list[tuple[RefPath, str]] = []
    stack: list[str | int] = []

    def fail(cls: type[KeyedChainError], why: str) -> None:
        path = tuple(stack)
        raise cls(f"{_at(index, key, path)}: {why}", index=index, key=key, path=path)

    def walk(obj: Any, depth: int) -> None:
        t = type(obj)
        if t is float:
            if obj != obj or obj == _INF or obj == -_INF:
                fail(NonFiniteNumberError, f"non-finite number {obj!r} (JSON has no NaN/Infinity)")
            return
        if t is dict:
            if depth > max_depth:
                fail(TooDeepError, f"nesting deeper than {max_depth}")
            if _REF in obj:
                ref = obj[_REF]
                if len(obj) != 1 or type(ref) is not str or not KEY_RE.match(ref):
                    fail(
                        BadReferenceError,
                        f"malformed reference {obj!r}: "
                        'expected exactly {":gufe-key:": "<Qualname>-<token>"}',
                    )
                refs.append((tuple(stack), ref))
                return
            if "__qualname__" in obj and "__module__" in obj:
                fail(
                    NestedDocumentError,
                    f"inline gufe object {obj['__qualname__']!r}: a keyed chain "
                    'references children as {":gufe-key:": key} (nested to_dict content is not allowed)',
                )
            items = obj.items()
        elif t is list:
            if depth > max_depth:
                fail(TooDeepError, f"nesting deeper than {max_depth}")
            items = enumerate(obj)
        elif t is str or t is int or t is bool or obj is None:
            return
        else:
            if isinstance(obj, _NonFinite):
                fail(NonFiniteNumberError, f"{obj.text} is not allowed (JSON has no NaN/Infinity)")
            if isinstance(obj, _DupDict):
                fail(InvalidValueError, f"JSON object repeats the member name {obj.duplicate!r}")
            if isinstance(obj, (str, int)):  # str/int/bool subclasses serialize as such
                return
            if isinstance(obj, float):
                return walk(float(obj), depth)
            if isinstance(obj, tuple):
                fail(InvalidValueError, "tuple value: use a list (JSON array)")
            fail(InvalidValueError, f"value of type {t.__name__} is not JSON")
            return
        for k, v in items:
            tv = type(v)
            if tv is str or tv is int or tv is bool or v is None:
                if t is dict and type(k) is not str:
                    stack.append(k)
                    fail(InvalidValueError, f"dict key {k!r} is not a string")
                continue
            if t is dict and type(k) is not str:
                stack.append(k)
                fail(InvalidValueError, f"dict key {k!r} is not a string")
            stack.append(k)
            walk(v, depth + 1)
            stack.pop()

    for name, value in d.items():
        stack.append(name)
        if type(name) is not str:
            fail(InvalidValueError, f"field name {name!r} is not a string")
        walk(value, 2)
        stack.pop()
    return refs


def references(keyed_dict: dict) -> list[tuple[RefPath, str]]:
    """The ``{":gufe-key:": K}`` references in a keyed dict, as ``(path, K)`` in document order.

    ``path`` is the attribute name, then dict keys / list indices down to the reference, e.g.
    ``("components", "solvent")`` or ``("edges", 3)``. No validation is done here.
    """
    out: list[tuple[RefPath, str]] = []

    def walk(obj: Any, path: RefPath) -> None:
        if isinstance(obj, dict):
            if _REF in obj and isinstance(obj[_REF], str):
                out.append((path, obj[_REF]))
                return
            for k, v in obj.items():
                if isinstance(v, (dict, list)):
                    walk(v, path + (k,))
        elif isinstance(obj, list):
            for n, v in enumerate(obj):
                if isinstance(v, (dict, list)):
                    walk(v, path + (n,))

    for name, value in keyed_dict.items():
        walk(value, (name,))
    return out


# ----------------------------------------------------------------------------------- the chain
class KeyedChain:
    """A validated keyed chain. Build it with :func:`parse_chain`; treat it as read-only.

    ``entries`` is the list of ``(key, keyed_dict)`` in chain order; the dicts are the parsed
    JSON objects themselves (no copy, key order preserved).
    """

    __slots__ = ("entries", "_pos", "_refs", "_deps")

    def __init__(
        self, entries: list[tuple[str, dict]], refs: list[list[tuple[RefPath, str]]], pos: dict[str, int]
    ) -> None:
        self.entries = entries
        self._refs = refs
        self._pos = pos
        self._deps = [list(dict.fromkeys(pos[k] for _, k in r)) for r in refs]

    @property
    def root_key(self) -> str:
        return self.entries[-1][0]

    @property
    def root(self) -> dict:
        return self.entries[-1][1]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        return iter(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self._pos

    def __getitem__(self, key: str) -> dict:
        return self.entries[self._pos[key]][1]

    def __repr__(self) -> str:
        return f"<KeyedChain {len(self.entries)} entries, root {self.root_key}>"

    def index(self, key: str) -> int:
        """Position of ``key`` in ``entries`` (KeyError if absent)."""
        return self._pos[key]

    def keys(self) -> list[str]:
        return [k for k, _ in self.entries]

    def keys_of(self, qualname: str) -> list[str]:
        """Keys of the entries of one class, in chain order."""
        return [k for k, d in self.entries if d["__qualname__"] == qualname]

    def references(self, key: str) -> list[tuple[RefPath, str]]:
        """``(path, referenced key)`` for every reference in the entry, in document order."""
        return list(self._refs[self._pos[key]])

    def dependencies(self, key: str) -> list[str]:
        """Keys the entry references directly (each once, in order of first reference)."""
        return [self.entries[j][0] for j in self._deps[self._pos[key]]]

    def subchain(self, key: str) -> list[tuple[str, dict]]:
        """The entries ``key`` depends on transitively, in chain order, ending with ``key`` itself.

        The result is itself a valid keyed chain rooted at ``key``.
        """
        start = self._pos[key]
        seen = {start}
        todo = [start]
        while todo:
            for j in self._deps[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return [self.entries[j] for j in sorted(seen)]

    def to_list(self) -> list[list]:
        """``[[key, keyed_dict], ...]``: the JSON value (shares the stored dicts)."""
        return [[k, d] for k, d in self.entries]

    def to_json(self) -> str:
        """The chain as gufe writes it (``json.dumps`` defaults: byte-identical to ``to_json()``)."""
        return json.dumps(self.to_list())


def _not_a_chain(data: Any) -> NotAKeyedChainError:
    if isinstance(data, dict):
        if "__qualname__" in data:
            return NestedDocumentError(
                f"got a nested to_dict document ({data.get('__module__')}.{data['__qualname__']}, "
                "children inline); the document must be a keyed chain: the output of gufe's "
                "to_json() / to_keyed_chain(), a JSON array of [gufe_key, keyed_dict] pairs"
            )
        if "protocol_result" in data and "unit_results" in data:
            return NotAKeyedChainError(
                "got an openfe quickrun result file ({estimate, uncertainty, protocol_result, "
                "unit_results}); the document must be a keyed chain (gufe's to_json() output)"
            )
        return NotAKeyedChainError(
            "got a JSON object; the document must be a keyed chain: a JSON array of "
            "[gufe_key, keyed_dict] pairs (gufe's to_json() / to_keyed_chain() output)"
        )
    return NotAKeyedChainError(
        f"got {type(data).__name__}; the document must be a keyed chain: a JSON array of "
        "[gufe_key, keyed_dict] pairs (gufe's to_json() / to_keyed_chain() output)"
    )


def parse_chain(
    data: Any, *, limits: ChainLimits | None = None, duplicates: Literal["reject", "collapse"] = "reject"
) -> KeyedChain:
    """Validate a keyed chain given as parsed JSON (list of pairs) or JSON text (str/bytes).

    Raises a :class:`KeyedChainError` subclass naming the entry index and key at fault.
    Keys are not recomputed here; see :func:`verify_keys`.
    """
    if isinstance(data, KeyedChain):
        return data
    limits = limits or DEFAULT_LIMITS
    if duplicates not in ("reject", "collapse"):
        raise ValueError("duplicates must be 'reject' or 'collapse'")
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        data = _load_text(data, limits)
    if not isinstance(data, (list, tuple)):
        raise _not_a_chain(data)
    if not data:
        raise NotAKeyedChainError("empty keyed chain: it needs at least the root entry")
    if len(data) > limits.max_entries:
        raise TooManyEntriesError(f"{len(data)} entries; the limit is {limits.max_entries}")

    entries: list[tuple[str, dict]] = []
    pos: dict[str, int] = {}
    kept: list[int] = []  # input index of each kept entry
    for i, pair in enumerate(data):
        if type(pair) not in (list, tuple) or len(pair) != 2:
            if i == 0 and isinstance(pair, dict) and "__qualname__" in pair:
                raise NestedDocumentError(
                    "entry 0 is a gufe dict, not a [key, dict] pair: the document must be a keyed "
                    "chain (gufe's to_json() / to_keyed_chain() output)",
                    index=0,
                )
            raise MalformedEntryError(
                f"entry {i}: expected a [key, keyed_dict] pair, got "
                f"{type(pair).__name__}"
                + (f" of length {len(pair)}" if isinstance(pair, (list, tuple)) else ""),
                index=i,
            )
        key, d = pair
        if not isinstance(key, str):
            raise InvalidKeyError(f"entry {i}: the key must be a string, got {type(key).__name__}", index=i)
        key = str(key)
        if len(key) > limits.max_key_length:
            raise LimitExceededError(
                f"{_at(i, key[:64] + '...')}: key longer than {limits.max_key_length} characters",
                index=i,
                key=key,
            )
        m = KEY_RE.match(key)
        if not m:
            raise InvalidKeyError(
                f"{_at(i, key)}: a key must be '<Qualname>-<token>' (a qualname "
                "without '-', an alphanumeric token)",
                index=i,
                key=key,
            )
        if type(d) is not dict:
            if isinstance(d, _DupDict):
                raise InvalidValueError(
                    f"{_at(i, key)}: JSON object repeats the member name {d.duplicate!r}", index=i, key=key
                )
            raise MalformedEntryError(
                f"{_at(i, key)}: expected a keyed dict, got {type(d).__name__}", index=i, key=key
            )
        qualname, module = d.get("__qualname__"), d.get("__module__")
        if qualname != m.group(1):
            raise InvalidKeyError(
                f"{_at(i, key)}: __qualname__ {qualname!r} does not match the key prefix {m.group(1)!r}",
                index=i,
                key=key,
            )
        if not isinstance(module, str) or not _MODULE_RE.match(module):
            raise MalformedEntryError(
                f"{_at(i, key)}: __module__ must be a dotted module name, got {module!r}", index=i, key=key
            )
        version = d.get(":version:", 1)
        if type(version) is not int:
            raise MalformedEntryError(
                f"{_at(i, key)}: ':version:' must be an integer, got {version!r}", index=i, key=key
            )
        if _REF in d:
            raise MalformedEntryError(
                f"{_at(i, key)}: a keyed dict cannot itself be a reference", index=i, key=key
            )
        if key in pos:
            first = entries[pos[key]][1]
            try:
                same = first is d or json.dumps(first) == json.dumps(d)
            except (TypeError, ValueError):  # non-JSON content: certainly not a clean duplicate
                same = False
            if not same or duplicates == "reject":
                what = "with different content" if not same else "(an exact duplicate)"
                raise DuplicateKeyError(
                    f"{_at(i, key)}: the key already appears at entry {kept[pos[key]]} {what}",
                    index=i,
                    key=key,
                )
            continue
        pos[key] = len(entries)
        entries.append((key, d))
        kept.append(i)

    refs: list[list[tuple[RefPath, str]]] = []
    for n, (key, d) in enumerate(entries):
        i = kept[n]
        r = _scan(d, i, key, limits.max_depth)
        for path, ref in r:
            j = pos.get(ref)
            if j is None:
                raise DanglingReferenceError(
                    f"{_at(i, key, path)}: references {ref!r}, which is not in the chain",
                    index=i,
                    key=key,
                    path=path,
                )
            if j >= n:
                what = "itself" if j == n else f"{ref!r}, a later entry ({kept[j]})"
                raise ForwardReferenceError(
                    f"{_at(i, key, path)}: references {what}; dependencies "
                    "must come before the entries that use them",
                    index=i,
                    key=key,
                    path=path,
                )
        refs.append(r)

    chain = KeyedChain(entries, refs, pos)
    reached = [False] * len(entries)
    reached[-1] = True
    for n in range(len(entries) - 1, -1, -1):
        if reached[n]:
            for j in chain._deps[n]:
                reached[j] = True
    if not all(reached):
        n = reached.index(False)
        raise RootError(
            f"{_at(kept[n], entries[n][0])}: not a dependency of the last entry "
            f"({entries[-1][0]!r}); a keyed chain holds one object, last, and the "
            "objects it depends on, before it",
            index=kept[n],
            key=entries[n][0],
        )
    return chain


# ---------------------------------------------------------------------------------- key checks
@dataclass(frozen=True)
class KeyIssue:
    """A stored key that was not verified: taken as given (``reason``) or a mismatch."""

    index: int
    key: str
    status: str
    reason: str | None
    computed: str | None
    detail: str


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_keys`. ``reasons`` counts the unverifiable entries per reason."""

    total: int = 0
    verified: int = 0
    unverifiable: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    issues: list[KeyIssue] = field(default_factory=list)
    mismatches: list[KeyIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        why = ", ".join(f"{r}: {c}" for r, c in sorted(self.reasons.items()))
        text = f"{self.verified}/{self.total} keys verified, {self.unverifiable} taken as given"
        text += f" ({why})" if why else ""
        return text + (f", {len(self.mismatches)} MISMATCHED" if self.mismatches else "")


def verify_keys(chain: KeyedChain | Any, *, strict: bool = True) -> VerifyReport:
    """Recompute every stored key (gufe-format.md §1.7).

    A checkable key that does not match raises :class:`KeyMismatchError` (``strict``) or is
    listed in ``report.mismatches``. Keys that cannot be checked (random ``_key`` classes,
    classes outside gufe's defaults table, int-like dict keys) are counted as unverifiable.
    """
    if not isinstance(chain, KeyedChain):
        chain = parse_chain(chain)
    report = VerifyReport(total=len(chain.entries))
    for n, (key, d) in enumerate(chain.entries):
        res = check_key(key, d)
        if res.status == "verified":
            report.verified += 1
            continue
        issue = KeyIssue(n, key, res.status, res.reason, res.computed, res.detail)
        if res.status == "mismatch":
            if strict:
                raise KeyMismatchError(
                    f"{_at(n, key)}: the stored key does not match the entry's content "
                    f"({d['__module__']}.{d['__qualname__']}): {res.detail}",
                    index=n,
                    key=key,
                    computed=res.computed,
                )
            report.mismatches.append(issue)
            continue
        report.unverifiable += 1
        report.reasons[res.reason or "?"] = report.reasons.get(res.reason or "?", 0) + 1
        report.issues.append(issue)
    return report
