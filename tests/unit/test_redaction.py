"""redaction: URL credentials, webhook ids and path secrets never survive being shown, whatever spelling of
the path a server would route to the same place (percent-encoding, ``//``, ``/./``, ``..``, case)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.redaction import MASK, mask_path, normalise_path, redact_text, redact_url

SECRET = "Zq3kS7vN1xP0aB9c"


@pytest.mark.parametrize(
    "url",
    [
        f"http://ha:8123/api/webhook/{SECRET}",
        f"http://ha:8123/api/%77ebhook/{SECRET}",
        f"http://ha:8123/api/%2577ebhook/{SECRET}",  # encoded twice
        f"http://ha:8123/api//webhook/{SECRET}",
        f"http://ha:8123//api/webhook/{SECRET}",
        f"http://ha:8123/api/./webhook/{SECRET}",
        f"http://ha:8123/api/x/../webhook/{SECRET}",
        f"http://ha:8123/API/WEBHOOK/{SECRET}",
        f"http://ha:8123/api/webhook/{SECRET}/",
        f"http://ha:8123/api/webhook/%{ord(SECRET[0]):02X}{SECRET[1:]}",
        f"http://ha:8123/api\\webhook\\{SECRET}",
        f"http://ha:8123/api/webhook/{SECRET}?a=1#frag",
        f"https://ha:8123/switchbot/webhook/{SECRET}",
    ],
)
def test_webhook_id_is_masked_after_normalisation(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown
    assert SECRET[1:] not in shown
    assert f"/webhook/{MASK}" in shown.lower().replace(MASK.lower(), MASK)
    assert SECRET not in redact_text(f"POST {url} failed")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pa55@ha.local:8123", "http://**********@ha.local:8123"),
        ("ws://user@ha.local/api/websocket", "ws://**********@ha.local/api/websocket"),
        ("http://u:p%40ss@db:8086/", "http://**********@db:8086/"),
        ("http://a:b@c@db:8086", "http://**********@db:8086"),
        ("http://db:8086/query?u=admin&p=secret", f"http://db:8086/query?u={MASK}&p={MASK}"),
        ("http://db:8086", "http://db:8086"),
        ("http://[::1]:8086/write", "http://[::1]:8086/write"),
    ],
)
def test_url_credentials_and_query_values_are_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_unparseable_url_is_masked_whole() -> None:
    assert redact_url("http://[::1") == MASK


def test_free_text_keeps_everything_but_the_secrets() -> None:
    text = (
        "400, message='Invalid response status', url='ws://admin:hunter2@ha:8123/api/websocket' "
        f"path=/switchbot/webhook/{SECRET} at user:pw@host, plain words / and 3/4"
    )
    assert redact_text(text) == (
        "400, message='Invalid response status', url='ws://**********@ha:8123/api/websocket' "
        f"path=/switchbot/webhook/{MASK} at **********@host, plain words / and 3/4"
    )


def test_paths_without_secrets_are_left_alone() -> None:
    for path in ("/api/v1/entities/sensor.x", "/healthz", "/webhook", "/api/webhook", "/api/webhooks/x"):
        assert mask_path(path) == path
    assert normalise_path("/a//b/./c/../d/") == "/a/b/d"


_separators = st.sampled_from(["/", "//", "/./", "/x/../", "\\", "/%2F"])
_webhook = st.sampled_from(["webhook", "WEBHOOK", "WebHook", "%77ebhook", "%57EBHOOK", "webho%6Fk", "%2577ebhook"])
_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=8, max_size=64)


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from(["/api", "/switchbot", ""]), sep1=_separators, word=_webhook, sep2=_separators,
       webhook_id=_ids, tail=st.sampled_from(["", "/", "?q=1", "/extra"]))  # fmt: skip
def test_no_spelling_of_the_path_shows_the_id(
    prefix: str, sep1: str, word: str, sep2: str, webhook_id: str, tail: str
) -> None:
    url = f"http://ha:8123{prefix}{sep1}{word}{sep2}{webhook_id}{tail}"
    assert webhook_id not in redact_url(url)
    assert webhook_id not in redact_text(f"error for {url}: boom")
