"""`AsyncClient`: the management API on asyncio (aiohttp); the same methods as
`Client`, awaited.

    async with AsyncClient(app="app_1") as hb:
        event_id = await hb.publish("message.received", {"text": "hi"})"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import aiohttp

from hookbus import api, batching
from hookbus.config import resolve
from hookbus.errors import transport_error
from hookbus.methods import ApiMethods, named
from hookbus.retry_policy import Backoff
from hookbus.version import USER_AGENT


class AsyncClient(ApiMethods[Awaitable[Any]]):
    def __init__(self, url: str | None = None, token: str | None = None, app: str | None = None,
                 *, backoff: Backoff = Backoff(), timeout: float = 30.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.config = resolve(os.environ if env is None else env, url=url, token=token, app=app)
        self.backoff = backoff
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None  # made in the running loop

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def publish_many(self, events: Sequence[Mapping[str, Any]], *, app: str | None = None,
                           idempotency_key: str | None = None,
                           batch_size: int = batching.MAX_BATCH) -> list[str]:
        """As `Client.publish_many`."""
        app_id = self._app(app)
        batches = batching.chunks(named(events, idempotency_key), batch_size)
        ids: list[str] = []
        for batch, key in zip(batches, batching.batch_keys(idempotency_key, len(batches))):
            ids += await self._run(api.publish_batch(app_id, batch, key), pick="ids")
        return ids

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"User-Agent": USER_AGENT}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(headers=headers, timeout=self.timeout)
        return self._session

    async def _run(self, call: api.Call, pick: str | None = None) -> Any:
        url = self.config.url + call.path
        headers = dict(call.headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._http().request(call.method, url, data=call.body,
                                                params=dict(call.params),
                                                headers=headers) as response:
                    status, body = response.status, await response.read()
                    retry_after = response.headers.get("Retry-After")
                    request_id = response.headers.get("X-Request-Id")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise transport_error(self.config.url, exc) from exc
            if call.retryable and self.backoff.should_retry(status, attempt):
                await asyncio.sleep(self.backoff.delay(attempt, retry_after,
                                                       jitter=random.random()))
                continue
            if api.gone_after_retry(call, status, attempt):
                return None
            return api.answer(status, body, request_id, pick=pick)
