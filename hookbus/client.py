"""`Client`: the management API, synchronously (requests).

    from hookbus import Client
    hb = Client(app="app_1")              # HOOKBUS_URL, HOOKBUS_TOKEN, or url=, token=
    event_id = hb.publish("message.received", {"text": "hi"}, idempotency_key="order-42")
    ids = hb.publish_many([{"type": "message.received", "data": {"n": n}} for n in range(1200)])

Every method raises `HookbusError` with the API's status and message. Calls
that may be repeated are retried on 429/503 as `backoff` says (hookbus.retry_policy),
with the same `Idempotency-Key`."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from hookbus import api, batching
from hookbus.config import resolve
from hookbus.errors import HookbusError, transport_error
from hookbus.methods import ApiMethods, named
from hookbus.retry_policy import Backoff
from hookbus.version import USER_AGENT


class Client(ApiMethods[Any]):
    def __init__(self, url: str | None = None, token: str | None = None, app: str | None = None,
                 *, backoff: Backoff = Backoff(), timeout: float = 30.0,
                 env: Mapping[str, str] | None = None,
                 session: requests.Session | None = None) -> None:
        self.config = resolve(os.environ if env is None else env, url=url, token=token, app=app)
        self.backoff = backoff
        self.timeout = timeout
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        if self.config.token:
            self._session.headers["Authorization"] = f"Bearer {self.config.token}"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def publish_many(self, events: Sequence[Mapping[str, Any]], *, app: str | None = None,
                     idempotency_key: str | None = None,
                     batch_size: int = batching.MAX_BATCH) -> list[str]:
        """Publish events (each `{"type", "data"?, "id"?, "created_at"?}`) in
        batches of at most 500, one after the other; their ids, in order. A
        failed batch raises: the batches before it are published (with a key,
        repeat the whole call: they are not published twice)."""
        app_id = self._app(app)
        batches = batching.chunks(named(events, idempotency_key), batch_size)
        ids: list[str] = []
        for batch, key in zip(batches, batching.batch_keys(idempotency_key, len(batches))):
            ids += self._run(api.publish_batch(app_id, batch, key), pick="ids")
        return ids

    def _run(self, call: api.Call, pick: str | None = None) -> Any:
        url = self.config.url + call.path
        headers = dict(call.headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._session.request(call.method, url, data=call.body,
                                                 params=dict(call.params), headers=headers,
                                                 timeout=self.timeout)
            except requests.RequestException as exc:
                raise transport_error(self.config.url, exc) from exc
            if call.retryable and self.backoff.should_retry(response.status_code, attempt):
                time.sleep(self.backoff.delay(attempt, response.headers.get("Retry-After"),
                                              jitter=random.random()))
                continue
            if api.gone_after_retry(call, response.status_code, attempt):
                return None
            return api.answer(response.status_code, response.content,
                              response.headers.get("X-Request-Id"), pick=pick)


__all__ = ["Client", "HookbusError", "Backoff"]
