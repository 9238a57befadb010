"""Local webhook endpoints for load and fault runs (`make bench`, `make chaos`,
the dashboard rendering): every POST is answered 204 (those to `/hang` only once
`release` is set, those to a path starting `/slow` after `slow_seconds`) and its
arrival recorded by (path, webhook-id)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from aiohttp import web

from devtools.broker import free_port


class Receivers:
    def __init__(self, slow_seconds: float = 1.0) -> None:
        self.slow_seconds = slow_seconds
        self.arrivals: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.release = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def distinct(self, path: str) -> int:
        """How many different webhook-ids reached `path`."""
        return sum(1 for p, _ in self.arrivals if p == path)

    def first(self, path: str, webhook_id: str) -> float:
        return self.arrivals[(path, webhook_id)][0]

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        if request.path == "/hang":
            await self.release.wait()
        elif request.path.startswith("/slow"):
            await asyncio.sleep(self.slow_seconds)
        self.arrivals[(request.path, request.headers.get("webhook-id", ""))].append(
            time.monotonic())
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
