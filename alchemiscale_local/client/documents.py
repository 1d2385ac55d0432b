"""gufe documents in and out: gufe objects when gufe is importable, keyed chains otherwise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# One implementation each, shared with the compute side; re-exported for the client modules.
from alchemiscale_local.runtimes.base import protocol_of  # noqa: F401
from alchemiscale_local.runtimes.pdr import decode_result as _decode_result

from .errors import CorruptResult, ResultIntegrityError, ValidationError


def decode_result(data: bytes) -> list:
    """A stored result's keyed chain; CorruptResult when the bytes do not decode."""
    try:
        return _decode_result(data)
    except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise CorruptResult(None, f"a stored result does not decode as keyed-chain JSON: {exc}") from None


def gufe_available() -> bool:
    try:
        import gufe  # noqa: F401
    except ImportError:
        return False
    return True


def to_keyed_chain(document: Any) -> list:
    """A keyed chain (list of ``[key, keyed dict]``) from a gufe object, a list, JSON text or a path."""
    if hasattr(document, "to_keyed_chain"):
        return json.loads(_gufe_json(document.to_keyed_chain()))
    if isinstance(document, Path) or (isinstance(document, str) and not document.lstrip().startswith("[")):
        path = Path(document)
        if not path.is_file():
            raise ValidationError(None, f"{str(document)[:200]!r} is neither keyed-chain JSON nor a file")
        raw = path.read_bytes()
        if path.suffix == ".gz":
            import gzip

            raw = gzip.decompress(raw)
        document = raw.decode("utf-8")
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise ValidationError(None, f"document is not valid JSON: {exc}") from None
    if isinstance(document, tuple):
        document = list(document)
    if not isinstance(document, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 for e in document
    ):
        raise ValidationError(
            None, "a document must be a gufe object or a keyed chain: a list of [key, dict]"
        )
    return [list(e) for e in document]


def _gufe_json(chain: Any) -> str:
    """gufe's own JSON encoding of a keyed chain (numpy arrays, units, datetimes ...)."""
    try:
        from gufe.tokenization import JSON_HANDLER
    except ImportError:  # a gufe-like object without gufe: plain JSON must do
        return json.dumps(chain)
    return json.dumps(chain, cls=JSON_HANDLER.encoder)


def from_keyed_chain(chain: list, as_gufe: bool) -> Any:
    """A gufe object rebuilt from ``chain`` when ``as_gufe``, else the chain as it is."""
    if not as_gufe:
        return chain
    from gufe.tokenization import JSON_HANDLER, GufeTokenizable

    # Decode gufe's custom encodings (units, arrays, datetimes) as gufe's own loaders do.
    decoded = json.loads(json.dumps(chain), cls=JSON_HANDLER.decoder)
    return GufeTokenizable.from_keyed_chain(decoded)


def verify_sha256(data: bytes, sha256: str | None, *, what: str = "result") -> None:
    """Raise :class:`ResultIntegrityError` unless ``data`` hashes to ``sha256`` (when given)."""
    if sha256 is None:
        return
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256.lower():
        raise ResultIntegrityError(None, f"{what}: sha256 {digest} does not match the recorded {sha256}")
