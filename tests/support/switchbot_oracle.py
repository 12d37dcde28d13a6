"""An independent check of SwitchBot request signatures: the signing code of the ``switchbot-api`` PyPI package
(the client Home Assistant's ``switchbot_cloud`` integration uses), not ours.

Its ``SwitchBotAPI.make_headers`` draws ``t`` from ``time.time()`` and the nonce from ``uuid.uuid4()``; to
recompute the signature a request should carry, we run it with those two answering the request's own ``t`` and
``nonce``. ``make_headers`` is synchronous, so swapping the module's references is safe inside one event loop.
"""

from __future__ import annotations

import hmac
import threading
from types import SimpleNamespace

import switchbot_api

_lock = threading.Lock()


def package_headers(token: str, secret: str, t: str, nonce: str) -> dict[str, str]:
    """The headers the package would send for this token, secret, timestamp and nonce."""
    api = switchbot_api.SwitchBotAPI(token, secret)
    t_s = int(t) / 1000
    with _lock:
        saved_time, saved_uuid = switchbot_api.time, switchbot_api.uuid
        switchbot_api.time = SimpleNamespace(time=lambda: t_s)  # type: ignore[assignment]  # test seam
        switchbot_api.uuid = SimpleNamespace(uuid4=lambda: nonce)  # type: ignore[assignment]  # test seam
        try:
            headers = api.make_headers(token, secret)
        finally:
            switchbot_api.time, switchbot_api.uuid = saved_time, saved_uuid
    if headers["t"] != t or headers["nonce"] != nonce:
        raise AssertionError(f"oracle did not reproduce t/nonce: {headers['t']!r} {headers['nonce']!r}")
    return {key: str(value) for key, value in headers.items()}


def verify(headers: dict[str, str], token: str, secret: str) -> str | None:
    """None when the request's headers are signed right for ``token``/``secret``; else what is wrong."""
    for name in ("Authorization", "t", "nonce", "sign"):
        if not headers.get(name):
            return f"missing header {name}"
    if headers["Authorization"] != token:
        return "Authorization is not the token"
    t = headers["t"]
    if not (t.isdigit() and len(t) == 13):
        return f"t is not a 13-digit millisecond timestamp: {t!r}"
    expected = package_headers(token, secret, t, headers["nonce"])["sign"]
    if not hmac.compare_digest(expected, headers["sign"]):
        return "sign does not match"
    return None
