"""A real Home Assistant with this repo's ``homeiq_webhook`` custom integration installed and configured,
as a user would: the folder copied to ``<config>/custom_components/`` and a YAML entry per webhook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.support.real_ha import REPO_ROOT, RealHomeAssistant

INTEGRATION_DIR = REPO_ROOT / "custom_components" / "homeiq_webhook"


class HomeAssistantWithWebhooks(RealHomeAssistant):
    def __init__(self, root: Path, venv: Path, *, verified_hooks: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(root, venv, **kwargs)
        self.verified_hooks = verified_hooks

    def _write_config(self) -> None:
        super()._write_config()
        target = self.config_dir / "custom_components" / "homeiq_webhook"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(INTEGRATION_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
        if not self.verified_hooks:  # set up through config entries only
            return
        with (self.config_dir / "configuration.yaml").open("a") as fh:
            fh.write("homeiq_webhook:\n")
            for hook in self.verified_hooks:
                fh.write(f"  - {json.dumps(hook)}\n")  # JSON is YAML

    def events_fired(self, event_type: str) -> int:
        """How many listeners HA has for an event type (``GET /api/events``): proves the trigger is armed."""
        status, body = self._request("GET", "/api/events")
        if status != 200:
            raise RuntimeError(f"GET /api/events -> HTTP {status}")
        return next((int(e["listener_count"]) for e in body if e["event"] == event_type), 0)
