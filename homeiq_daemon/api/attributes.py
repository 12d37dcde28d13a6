"""What the read API shows of entity attributes (and of history fields, which carry them): no credentials.

Home Assistant states carry credentials in plain sight: a camera's ``access_token``, an ``entity_picture``
of ``/api/camera_proxy/camera.x?token=…``, integrations' ``api_key`` or ``password`` attributes. The API
applies one policy to ``GET /api/v1/entities/{id}`` (``attributes``) and to history points (``fields``,
where an attribute may be stored as ``<name>_str``), whichever backend answered:

* a text value whose name (case-insensitive, without a ``_str`` suffix) contains one of
  ``SECRET_NAME_PARTS`` is replaced by ``**********``, at any depth of nested objects (numbers and
  booleans are not credentials: ``token_count = 3`` stays);
* inside text, a quoted secret-named key with a quoted value (``'client_secret': '…'``, how a nested
  object looks once stored as a ``<name>_str`` history field) has that value masked;
* any other string value that is a URL (``scheme://…``) or a path with a query (``/…?…``) is shown through
  ``redaction.redact_url``: no ``user:password@``, query values masked (``?token=**********``); URLs
  inside longer text the same way;
* names listed in ``http.unredacted_attributes`` are shown as they are (an attribute that only looks like
  a secret, e.g. ``token_count``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from homeiq_daemon.redaction import MASK, redact_text, redact_url

SECRET_NAME_PARTS = (
    "token", "password", "passwd", "passphrase", "secret", "api_key", "apikey", "access_key", "private_key",
    "credential", "authorization", "cookie", "session_id", "signature",
)  # fmt: skip
MAX_DEPTH = 8
# 'key': 'value' / "key": "value" / key=value pairs inside stored text; bounded runs, so linear.
_WHOLE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,15}://\S*$")
_QUOTED_PAIR = re.compile(r"""(['"])([^'"]{1,64})\1(\s*[:=]\s*)(['"])[^'"]{0,4096}\4""")


def secret_name(name: str) -> bool:
    lowered = name.lower().removesuffix("_str")
    return any(part in lowered for part in SECRET_NAME_PARTS)


def _mask_pair(match: re.Match[str]) -> str:
    if not secret_name(match.group(2)):
        return match.group(0)
    quote = match.group(4)
    return f"{match.group(1)}{match.group(2)}{match.group(1)}{match.group(3)}{quote}{MASK}{quote}"


class AttributeRedactor:
    def __init__(self, unredacted: Iterable[str] = ()) -> None:
        self._allowed = frozenset(name.lower() for name in unredacted)

    def __call__(self, values: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if values is None:
            return None
        return {key: self._value(key, value, 0) for key, value in values.items()}

    def _value(self, name: str, value: Any, depth: int) -> Any:
        if name.lower() in self._allowed or name.lower().removesuffix("_str") in self._allowed:
            return value
        if secret_name(name) and isinstance(value, str | Mapping | list | tuple) and value:
            return MASK
        return self._plain(value, depth)

    def _plain(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            if _WHOLE_URL.match(value) or (value.startswith("/") and "?" in value and " " not in value):
                return redact_url(value)
            if ":" in value or "=" in value:
                value = _QUOTED_PAIR.sub(_mask_pair, value)
            return redact_text(value)  # URLs inside longer text
        if depth >= MAX_DEPTH:
            return value if isinstance(value, int | float | bool) or value is None else MASK
        if isinstance(value, Mapping):
            return {str(k): self._value(str(k), v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._plain(item, depth + 1) for item in value]
        return value
