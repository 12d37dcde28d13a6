"""``homeiq webhooks test RULE`` and ``homeiq webhooks log [--failed]``.

``test`` sends one signed delivery straight to the rule's target (not through the outbox, so it works
whether or not the daemon runs) and prints the receiver's answer. ``log`` reads the outbox read-only.
Importing this module is cheap: aiohttp is imported only when a test delivery is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from homeiq_daemon.cli.common import Loader, add_command
from homeiq_daemon.config import WebhookSettings
from homeiq_daemon.config.webhooks import OUTBOX_FILE
from homeiq_daemon.errors import EXIT_FAILURE, EXIT_OK, HomeIQError
from homeiq_daemon.redaction import redact_url


def register(sub: Any) -> None:
    help_text = "send a test delivery for a rule; show recent deliveries"
    webhooks = add_command(sub, "webhooks", cmd_webhooks, help=help_text)
    actions = webhooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    test_help = "send a signed test delivery for RULE and print the receiver's answer"
    test = add_command(actions, "test", None, help=test_help)
    test.add_argument("rule")
    test.add_argument("--entity", help="entity_id to put in the test payload (default: the rule's first entity)")
    log = add_command(actions, "log", None, help="recent deliveries from the outbox, newest first (read-only)")
    log.add_argument("--failed", action="store_true", help="only rejected, dead-lettered or still retrying")
    log.add_argument("--limit", type=int, default=50)
    log.add_argument("--json", action="store_true", help="one JSON object per line")


def cmd_webhooks(args: argparse.Namespace, load: Loader) -> int:
    settings = load(read_only=True)
    if args.webhooks_command == "test":
        return asyncio.run(_test(settings.webhooks, args.rule, args.entity))
    return _log(settings.state_dir / OUTBOX_FILE, failed=args.failed, limit=args.limit, as_json=args.json)


def _test_entity(webhooks: WebhookSettings, rule_name: str) -> str:
    rule = webhooks.rule(rule_name)
    assert rule is not None
    plain = [e for e in rule.entities if not any(ch in e for ch in "*?[")]
    if plain:
        return plain[0]
    return f"{rule.domains[0]}.homeiq_test" if rule.domains else "homeiq.test"


async def _test(webhooks: WebhookSettings, rule_name: str, entity_id: str | None) -> int:
    from homeiq_daemon.webhooks.client import WebhookClient  # noqa: PLC0415 - aiohttp only when sending
    from homeiq_daemon.webhooks.payload import build_test_body, new_delivery_id  # noqa: PLC0415
    from homeiq_daemon.webhooks.signing import sign_headers  # noqa: PLC0415

    rule = webhooks.rule(rule_name)
    if rule is None:
        known = ", ".join(r.name for r in webhooks.rules) or "none configured"
        raise HomeIQError(f"no webhook rule named {rule_name!r} (rules: {known})")
    target = webhooks.all_targets[rule.target_name]
    now_ns = time.time_ns()
    delivery_id = new_delivery_id(now_ns)
    body = build_test_body(rule.name, entity_id or _test_entity(webhooks, rule.name), delivery_id, now_ns)
    headers = sign_headers(target.keys, delivery_id, now_ns // 1_000_000_000, body)
    out = sys.stdout
    out.write(f"POST {redact_url(target.url)}  (rule {rule.name}, target {rule.target_name})\n")
    out.write(f"webhook-id: {delivery_id}  signed: {'yes' if target.keys else 'no (target has no secret)'}\n")
    client = WebhookClient()
    started = time.perf_counter()
    try:
        result = await client.post(target.url, body, headers, timeout_s=target.timeout_s, verify_ssl=target.verify_ssl)
    finally:
        await client.close()
    elapsed_ms = (time.perf_counter() - started) * 1000
    if result.status is None:
        out.write(f"-> no answer after {elapsed_ms:.0f} ms: {result.error}\n")
        return EXIT_FAILURE
    out.write(f"-> HTTP {result.status} in {elapsed_ms:.0f} ms ({result.outcome})\n")
    if result.body:
        out.write(result.body.rstrip("\n") + "\n")
    if "/api/webhook/" in target.url and result.outcome == "delivered":
        sys.stderr.write(
            "note: Home Assistant answers 200 even for an unknown webhook id; check that the automation ran\n"
        )
    return EXIT_OK if result.outcome == "delivered" else EXIT_FAILURE


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def _log(path: Path, *, failed: bool, limit: int, as_json: bool) -> int:
    from homeiq_daemon.webhooks.outbox import read_log  # noqa: PLC0415

    try:
        rows = read_log(path, limit=limit, failed_only=failed)
    except FileNotFoundError:
        sys.stderr.write(f"no deliveries yet: no webhook outbox at {path} (the daemon creates it when it runs "
                         "with webhook rules)\n")
        return EXIT_OK
    out = sys.stdout
    for row in rows:
        if as_json:
            record = {
                "id": row.id,
                "rule": row.rule,
                "target": row.target,
                "entity_id": row.entity_id,
                "status": row.status,
                "attempts": row.attempts,
                "last_status": row.last_status,
                "last_error": row.last_error,
                "created": _when(row.created_ns),
                "finished": _when(row.finished_ns),
                "next_attempt": _when(row.next_attempt_ns) if row.status == "pending" else None,
            }
            out.write(orjson.dumps(record).decode() + "\n")
            continue
        http = str(row.last_status) if row.last_status is not None else "-"
        line = f"{_when(row.created_ns)}  {row.status:<9} {row.attempts:>3}x {http:>3}  {row.rule} -> {row.target}"
        line += f"  {row.entity_id}  {row.id}"
        if row.status == "pending" and row.attempts:
            line += f"  next {_when(row.next_attempt_ns)}"
        if row.last_error and row.status != "delivered":
            line += f"  ({row.last_error})"
        out.write(line + "\n")
    if not rows:
        sys.stderr.write("no failed deliveries\n" if failed else "no deliveries yet\n")
    return EXIT_OK
