"""The homeiq_webhook integration as HACS installs it, set up through its config flow in the real HA 2024.3.3.

The folder is copied to ``<config>/custom_components/`` (as HACS does), HA is started, and the flow is driven
through HA's REST config_entries flow API, as the frontend's "Add integration" dialog drives it: a bad secret
and a short id are shown as form errors, a good answer creates an entry whose webhook verifies signatures
(401 for a forged delivery, 200 for a signed one), the same id again aborts, and removing the entry removes
the webhook. Also checks what HACS reads: hacs.json, the manifest's keys, strings.json = translations/en.json.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homeiq_daemon.webhooks.signing import encode_secret, sign_headers
from tests.support.ha_webhooks import INTEGRATION_DIR, HomeAssistantWithWebhooks
from tests.support.real_ha import REPO_ROOT

pytestmark = pytest.mark.ha

KEY = os.urandom(32)
SECRET = encode_secret(KEY)


def test_what_hacs_and_home_assistant_read_is_complete() -> None:
    hacs = json.loads((REPO_ROOT / "hacs.json").read_text())
    assert hacs["name"]
    assert hacs["content_in_root"] is False  # the integration lives in custom_components/<domain>/
    manifest = json.loads((INTEGRATION_DIR / "manifest.json").read_text())
    for key in ("domain", "name", "documentation", "issue_tracker", "codeowners", "version", "iot_class"):
        assert manifest[key], key
    assert manifest["config_flow"] is True
    assert manifest["codeowners"][0].startswith("@")
    strings = json.loads((INTEGRATION_DIR / "strings.json").read_text())
    assert json.loads((INTEGRATION_DIR / "translations" / "en.json").read_text()) == strings
    assert set(strings["config"]["step"]["user"]["data"]) == {
        "webhook_id", "secret", "event_type", "local_only", "tolerance_s"
    }  # fmt: skip


@pytest.fixture(scope="module")
def ha(ha_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistantWithWebhooks]:
    # No YAML webhooks: everything below comes from config entries. `config:` serves the flow API.
    instance = HomeAssistantWithWebhooks(tmp_path_factory.mktemp("ha-flow"), ha_venv, verified_hooks=[],
                                         extra_yaml="config:\n")  # fmt: skip
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _post_delivery(ha: HomeAssistantWithWebhooks, webhook_id: str, *, key: bytes) -> tuple[int, str]:
    body = json.dumps({"rule": "flow", "entity_id": "sensor.x", "new_state": {"state": "1"}}).encode()
    headers = sign_headers([key], "msg_" + secrets.token_hex(8), int(time.time()), body)
    request = urllib.request.Request(f"{ha.base_url}/api/webhook/{webhook_id}", data=body, method="POST",
                                     headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _flow(ha: HomeAssistantWithWebhooks, answer: dict[str, Any]) -> dict[str, Any]:
    status, form = ha._request("POST", "/api/config/config_entries/flow", {"handler": "homeiq_webhook"})
    assert status == 200, form
    assert form["type"] == "form"
    assert form["step_id"] == "user"
    offered = {field["name"]: field for field in form["data_schema"]}
    assert set(offered) == {"webhook_id", "secret", "event_type", "local_only", "tolerance_s"}
    assert len(offered["webhook_id"]["default"]) >= 16  # a fresh random id is offered
    status, result = ha._request("POST", f"/api/config/config_entries/flow/{form['flow_id']}", answer)
    assert status == 200, result
    return dict(result)


def test_the_config_flow_creates_a_working_webhook_and_removing_it_removes_the_webhook(
    ha: HomeAssistantWithWebhooks,
) -> None:
    webhook_id = "homeiq-flow-" + secrets.token_hex(16)
    bad = _flow(ha, {"webhook_id": "short", "secret": "not-a-secret"})
    assert bad["type"] == "form"
    assert bad["errors"] == {"secret": "invalid_secret", "webhook_id": "short_webhook_id"}

    created = _flow(ha, {"webhook_id": webhook_id, "secret": SECRET, "event_type": "homeiq_webhook",
                         "local_only": True, "tolerance_s": 300})  # fmt: skip
    assert created["type"] == "create_entry", created
    entry_id = created["result"]["entry_id"]
    status, entries = ha._request("GET", "/api/config/config_entries/entry?domain=homeiq_webhook")
    assert status == 200
    assert [(e["entry_id"], e["state"]) for e in entries] == [(entry_id, "loaded")]

    assert _post_delivery(ha, webhook_id, key=os.urandom(32))[0] == 401  # forged: our handler answered
    assert _post_delivery(ha, webhook_id, key=KEY) == (200, "ok")

    again = _flow(ha, {"webhook_id": webhook_id, "secret": SECRET})
    assert (again["type"], again["reason"]) == ("abort", "already_configured")

    status, _ = ha._request("DELETE", f"/api/config/config_entries/entry/{entry_id}")
    assert status == 200
    # Gone: HA answers an unknown webhook id with 200 and no handler runs, so a forged one is not refused.
    assert _post_delivery(ha, webhook_id, key=os.urandom(32))[0] == 200
