"""A delivery's signature checked in a web framework's handler, in one call.
Duck-typed: no framework is imported, here or anywhere in `hookbus`.

    verifier = Verifier(os.environ["WEBHOOK_SECRET"])

    # aiohttp               payload = await verify_aiohttp(request, verifier)
    # FastAPI / Starlette   payload = await verify_starlette(request, verifier)
    # Flask                 payload = verify_flask(request, verifier)

Each returns the delivered envelope or raises `WebhookVerificationError`
(whose `status` is 400). For aiohttp, `web.HTTPBadRequest` is raised instead,
so the handler needs no `try`; for Flask and FastAPI register one error handler
(see the README) or catch it."""

from __future__ import annotations

from typing import Any

from hookbus.signatures import Verifier, WebhookVerificationError


async def verify_aiohttp(request: Any, verifier: Verifier) -> dict[str, Any]:
    """An `aiohttp.web.Request`: reads its body; an invalid delivery raises
    `aiohttp.web.HTTPBadRequest` (aiohttp is imported only then)."""
    body = await request.read()
    try:
        return verifier.verify(request.headers, body)
    except WebhookVerificationError as exc:
        from aiohttp import web

        raise web.HTTPBadRequest(text=f"invalid webhook: {exc}") from exc


async def verify_starlette(request: Any, verifier: Verifier) -> dict[str, Any]:
    """A Starlette (FastAPI) `Request`: `await request.body()` and its headers."""
    return verifier.verify(request.headers, await request.body())


def verify_flask(request: Any, verifier: Verifier) -> dict[str, Any]:
    """A Flask (Werkzeug) `request`: `request.get_data()` (the raw bytes, not the
    parsed form) and its headers."""
    return verifier.verify(request.headers, request.get_data(cache=True))
