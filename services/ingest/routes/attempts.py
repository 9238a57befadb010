"""`/v1/apps/{app_id}/webhooks/{id}/attempts`: a webhook's delivery attempts,
newest first, a page at a time."""

from __future__ import annotations

from aiohttp import web

from schemas.api import AttemptsPage, ErrorDetail
from services.ingest.errors import ApiError
from services.ingest.http import authorized_app, json_response, webhook_of
from services.ingest.state import INGEST

MAX_ATTEMPTS_PAGE = 100


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/apps/{app_id}/webhooks/{webhook_id}/attempts", list_attempts)


async def list_attempts(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    webhook = webhook_of(request, app_id)
    problems = []
    try:
        limit = int(request.query.get("limit", "20"))
        if not 1 <= limit <= MAX_ATTEMPTS_PAGE:
            raise ValueError
    except ValueError:
        problems.append(ErrorDetail("limit", f"must be an integer from 1 to {MAX_ATTEMPTS_PAGE}"))
    cursor = request.query.get("cursor")
    # ASCII digits only ("²".isdigit() is true, and int() refuses it), an offset's size.
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
        problems.append(ErrorDetail("cursor", "not a cursor this API gave"))
    if problems:
        raise ApiError.invalid(problems)
    attempts, next_cursor = request.app[INGEST].attempts.page(
        webhook.id, limit, None if cursor is None else int(cursor))
    return json_response(AttemptsPage(
        attempts=attempts, next_cursor=None if next_cursor is None else str(next_cursor)))
