"""Request bodies built from the wire contract (:mod:`alchemiscale_local.wire`), the same models
the server's routes declare, so a body the client sends is one the route accepts."""

from __future__ import annotations

from typing import Any

import pydantic

from .errors import ValidationError


def wire_body(model: type[pydantic.BaseModel], **fields: Any) -> dict[str, Any]:
    """``model(**fields)`` as JSON-ready data (keys as their strings; fields not given are left out).

    What the server would refuse with a 422 is refused here the same way (ValidationError, the
    same messages), before anything is sent.
    """
    try:
        return model(**fields).model_dump(mode="json", exclude_unset=True)
    except pydantic.ValidationError as exc:
        detail = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ValidationError(422, detail, method="(not sent)", url=model.__name__) from None
