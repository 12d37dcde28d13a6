"""How a URL, a request path or a piece of text is shown to people: with its secrets masked. Pure code.

Secrets that travel inside URLs:

* ``user:password@`` in any URL (``home_assistant.url``, ``influxdb.url``, a webhook target);
* a path segment after ``webhook`` (Home Assistant's ``/api/webhook/<id>``, where the id is the only
  credential, and the daemon's own ``/switchbot/webhook/<path secret>``);
* query values (``?token=…``, ``?p=…``).

``redact_url`` is the one function every display of a URL goes through (check-config, log fields, error
messages, the systemd ``STATUS=`` line); ``redact_text`` finds URLs and paths inside free text (exception
messages, tracebacks) and is the logging chain's safety net. Paths are normalised before they are matched
(percent-decoding, ``//``, ``/./``, ``..``, case, a trailing slash), because a server normalises them too:
``/api/%77ebhook/<id>`` reaches the same webhook as ``/api/webhook/<id>`` and must be masked the same way.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

MASK = "**********"

# A run of characters that can belong to a URL or a path; free text is split on everything else. Linear:
# one character class, no nesting.
_TOKEN = re.compile(r"[^\s\"'<>`]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,15}://")
_SECRET_SEGMENT = "webhook"  # noqa: S105 - a path segment; the one after it is a credential
_MAX_DECODE_ROUNDS = 4


def normalise_path(path: str) -> str:
    """The path a server would route: percent-decoded (repeatedly, for ``%2577``), backslashes as slashes,
    empty and ``.`` segments dropped, ``..`` applied. Leading slash kept; case kept (matching casefolds)."""
    decoded = path
    for _ in range(_MAX_DECODE_ROUNDS):
        again = unquote(decoded)
        if again == decoded:
            break
        decoded = again
    segments: list[str] = []
    for segment in decoded.replace("\\", "/").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def path_has_secret(path: str) -> bool:
    segments = normalise_path(path).split("/")
    return any(segment.casefold() == _SECRET_SEGMENT for segment in segments[:-1])


def mask_path(path: str) -> str:
    """``path`` unchanged when it carries no secret; else its normalised form with everything after the
    ``webhook`` segment replaced by one mask (``/api/webhook/**********``)."""
    if not path_has_secret(path):
        return path
    shown: list[str] = []
    for segment in normalise_path(path).split("/")[1:]:
        shown.append(segment)
        if segment.casefold() == _SECRET_SEGMENT:
            shown.append(MASK)
            break
    return "/" + "/".join(shown)


def _netloc(parts: SplitResult) -> str:
    netloc = parts.netloc
    if "@" not in netloc:
        return netloc
    return f"{MASK}@{netloc.rpartition('@')[2]}"


def redact_url(url: str) -> str:
    """``url`` as it may be shown: no ``user:password@``, no webhook id or path secret, no query values,
    no fragment. Anything that does not parse as a URL is masked whole."""
    try:
        parts = urlsplit(url.replace("\\", "/"))  # as browsers and many servers read a backslash
        netloc = _netloc(parts)
    except ValueError:
        return MASK
    query = ""
    if parts.query:
        keys = [key for key, _ in parse_qsl(parts.query, keep_blank_values=True)] or [""]
        query = "&".join(f"{key}={MASK}" if key else MASK for key in keys)
    return urlunsplit((parts.scheme, netloc, mask_path(parts.path), query, ""))


def _redact_token(match: re.Match[str]) -> str:
    token = match.group(0)
    scheme = _SCHEME.search(token)
    if scheme is not None:  # a URL, possibly behind a field name (url=http://…)
        start = scheme.start()
        return token[:start] + redact_url(token[start:])
    slash = min((i for i in (token.find("/"), token.find("\\"), token.find("%")) if i >= 0), default=-1)
    if slash >= 0 and path_has_secret(token[slash:]):  # a path, possibly behind a field name (path=/…)
        return token[:slash] + mask_path(token[slash:])
    user, at, host = token.rpartition("@")
    if at and ":" in user:  # user:password@host without a scheme
        return f"{MASK}@{host}"
    return token


def redact_text(text: str) -> str:
    """Free text with every URL passed through ``redact_url`` and every secret-carrying path masked."""
    if "/" not in text and "%" not in text and "@" not in text and "\\" not in text:
        return text  # the common case: nothing that could hold a URL secret
    return _TOKEN.sub(_redact_token, text)
