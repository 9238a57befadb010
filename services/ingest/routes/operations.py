"""What operators and tools read: health, readiness, metrics, the OpenAPI
document and its offline `/docs` page."""

from __future__ import annotations

from importlib.metadata import version

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from swagger_ui_bundle import swagger_ui_path

from services.ingest.http import encoder
from services.ingest.openapi import openapi_document
from services.ingest.state import INGEST

OPENAPI_BODY = web.AppKey("openapi_body", bytes)
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hookbus API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


def add_routes(app: web.Application) -> None:
    app[OPENAPI_BODY] = encoder.encode(openapi_document(version("hookbus")))
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs)
    app.router.add_static("/docs/static", swagger_ui_path)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_BODY], content_type="application/json")


async def docs(_: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    reason = await request.app[INGEST].readiness()
    if reason is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": reason}, status=503)


async def metrics(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    ingest.metrics.webhooks.set(len(ingest.view))
    return web.Response(
        body=generate_latest(ingest.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
