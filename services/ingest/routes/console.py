"""`/console`: the web console (contract §10, issue 12), static files that
ingest serves from services/ingest/console/ — an HTML page and hand-written ES
modules, no build step, nothing loaded from elsewhere. The page reads and
writes only through the public API, with the token the user pastes or a portal
link brings in its fragment (kept in sessionStorage).

Every answer carries the console's security headers (services/ingest/portal.py):
a Content-Security-Policy with no inline script, no Referer, and framing only
by HOOKBUS_CONSOLE_FRAME_ANCESTORS. The theme's logo origin, checked again
here, is the only other place an image may load from."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from services.ingest.errors import ApiError
from services.ingest.portal import logo_origin, security_headers
from services.ingest.state import INGEST

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml"}
CONSOLE_FILES = web.AppKey("console_files", dict)


def add_routes(app: web.Application) -> None:
    app[CONSOLE_FILES] = {
        path.name: (path.read_bytes(), _TYPES[path.suffix])
        for path in sorted(CONSOLE_DIR.iterdir()) if path.suffix in _TYPES
    }
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/static/{name}", console_file)


def _served(request: web.Request, name: str) -> web.Response:
    files = request.app[CONSOLE_FILES]
    if name not in files:
        raise ApiError(404, "no such console file")
    body, content_type = files[name]
    settings = request.app[INGEST].settings
    logo = logo_origin(request.query.get("logo"), allow_http=settings.target_policy.allow_http)
    response = web.Response(body=body, content_type=content_type,
                            headers=security_headers(settings.console_frame_ancestors, logo))
    if content_type.startswith("text/"):
        response.charset = "utf-8"
    return response


async def console_page(request: web.Request) -> web.Response:
    return _served(request, "index.html")


async def console_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == "index.html":
        raise ApiError(404, "no such console file")
    return _served(request, name)
