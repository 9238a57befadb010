"""Fixtures of the integration tests that run ingest in the test's own process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import msgspec
import pytest
from aiohttp import web

from devtools.broker import Broker, free_port
from services.common.config import KafkaSettings
from services.common.target_policy import TargetPolicy
from services.common.topics import Topics
from services.ingest.app import create_app
from services.ingest.settings import Settings
from tests.conftest import JWT_SECRET, SECRET_KEYS, consumer_records, records

APP = "app_1"


@dataclass
class Api:
    base: str
    http: aiohttp.ClientSession
    topics: Topics
    bootstrap: str

    async def call(self, method: str, path: str, **kwargs: object) -> tuple[int, dict | None]:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body

    async def written(self) -> int:
        """How many records the events and webhooks topics hold."""
        return sum([len(await records(self.bootstrap, t))
                    for t in (self.topics.events, self.topics.webhooks)])


@pytest.fixture
async def api(kafka: Broker, topics: Topics) -> AsyncIterator[Api]:
    settings = Settings(
        kafka=KafkaSettings(kafka.bootstrap, topics.prefix),
        jwt_secret=JWT_SECRET,
        secret_keys=SECRET_KEYS,
        http_port=free_port(),
        target_policy=TargetPolicy(allow_http=False, forbidden_domains=("forbidden.example",)),
        max_webhooks_per_app=2,
    )
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    async with aiohttp.ClientSession() as http:
        yield Api(f"http://127.0.0.1:{settings.http_port}", http, topics, kafka.bootstrap)
    await runner.cleanup()


def assert_error(status: int, body: dict | None, code: int, field: str | None = None) -> None:
    assert status == code
    assert body is not None
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["status"], str) and error["status"]
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if field is not None:
        assert field in [d["field"] for d in error["details"]], error


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def current_record(bootstrap: str, topic: str, webhook_id: str) -> tuple[dict, int]:
    """The last record of `webhook_id` as JSON, and its partition."""
    found = [r for r in await consumer_records(bootstrap, topic)
             if r.key == webhook_id.encode() and r.value is not None]
    assert found, f"no record of {webhook_id}"
    return msgspec.json.decode(found[-1].value), found[-1].partition


@asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[None]:
    """A real aiohttp server of `app` on 127.0.0.1:`port` for the block."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()
