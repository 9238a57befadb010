"""Hookbus's producer SDK and operator CLI (issue 14).

- `hookbus.client.Client` / `hookbus.aio.AsyncClient`: the management API,
  sync and async; publishing one event or many (batches chunked to the API's
  limit), `Idempotency-Key`s, retries with backoff on 429/503 that keep the key.
- `hookbus.publisher.KafkaPublisher`: envelopes written straight to the
  `events` topic, exactly as ingest writes them.
- `hookbus.signatures.Verifier` and `hookbus.receivers`: verify a delivery's
  Standard Webhooks signature (`v1` HMAC, `v1a` ed25519) in any framework.
- `hookbus.cli`: the `hookbus` command.

Nothing is imported here eagerly: `hookbus.Client` and the others load their
module (and its HTTP or Kafka library) when first named."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Client": "hookbus.client",
    "AsyncClient": "hookbus.aio",
    "KafkaPublisher": "hookbus.publisher",
    "HookbusError": "hookbus.errors",
    "Verifier": "hookbus.signatures",
    "WebhookVerificationError": "hookbus.signatures",
    "Backoff": "hookbus.retry_policy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hookbus' has no attribute {name!r}")
