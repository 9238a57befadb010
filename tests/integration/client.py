"""A small API client for the end-to-end tests."""

from __future__ import annotations

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

    async def create_webhook(self, **body: object) -> dict:
        return await self.call("POST", "/webhooks", 201, json=body)

    async def patch_webhook(self, webhook_id: str, **body: object) -> dict:
        return await self.call("PATCH", f"/webhooks/{webhook_id}", 200, json=body)

    async def publish(self, type_: str, **data: object) -> str:
        return (await self.call("POST", "/events", 202, json={"type": type_, "data": data}))["id"]
