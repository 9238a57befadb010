"""A small API client for the end-to-end tests."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import auth


class Client:
    def __init__(self, http: aiohttp.ClientSession, base: str, app_id: str) -> None:
        self.http = http
        self.base = base
        self.app_id = app_id

    async def call(self, method: str, path: str, expect: int, **kwargs: object) -> dict:
        url = f"{self.base}/v1/apps/{self.app_id}{path}"
        async with self.http.request(method, url, headers=auth(self.app_id), **kwargs) as response:
            assert response.status == expect, await response.text()
            return await response.json() if response.content_length else {}

    async def read(self, path: str) -> dict:
        """A GET of the event log's, answered once its partitions have settled
        (a 503 while an instance takes them over is retried)."""
        url = f"{self.base}/v1/apps/{self.app_id}{path}"
        async with asyncio.timeout(30):
            while True:
                async with self.http.get(url, headers=auth(self.app_id)) as response:
                    if response.status != 503:
                        assert response.status == 200, await response.text()
                        return await response.json()
                await asyncio.sleep(0.3)

    async def replay(self, webhook_id: str, **body: object) -> dict:
        """Start a replay job and wait for its end; the job as it ended."""
        job = await self.call("POST", f"/webhooks/{webhook_id}/replay", 202, json=body)
        async with asyncio.timeout(60):
            while job["state"] == "running":
                await asyncio.sleep(0.3)
                job = await self.read(f"/webhooks/{webhook_id}/replay/{job['id']}")
        assert job["state"] == "done", job
        return job

    async def create_webhook(self, **body: object) -> dict:
        return await self.call("POST", "/webhooks", 201, json=body)

    async def patch_webhook(self, webhook_id: str, **body: object) -> dict:
        return await self.call("PATCH", f"/webhooks/{webhook_id}", 200, json=body)

    async def publish(self, type_: str, **data: object) -> str:
        return (await self.call("POST", "/events", 202, json={"type": type_, "data": data}))["id"]
