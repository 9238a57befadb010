"""What every route shares: the error and metrics middleware, JSON in and out
(bounded: at most MAX_BODY bytes, MAX_DEPTH levels of nesting), authorization,
the lookup of the webhook a path names, and the relay of a request to the event
log instance that owns its app."""

from __future__ import annotations

import logging
import re
import time
from array import array
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import accumulate
from typing import TypeVar

import msgspec
from aiohttp import web

from schemas.webhooks import Webhook
from services.common.ids import new_id
from services.ingest.auth import authorize, refuse_read_only_write
from schemas.api import ErrorDetail
from services.ingest.errors import ApiError, decode_error
from services.ingest.eventlog_client import RELAY_HEADER
from services.ingest.state import INGEST

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
# Levels of objects and arrays in a request body. Real payloads nest a few
# levels; thousands would exhaust the recursion of every later decoder.
MAX_DEPTH = 64
T = TypeVar("T")
# A client's X-Request-Id is echoed and logged only when it looks like an id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
encoder = msgspec.json.Encoder()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("request_id", str)
# What a forwarded request carries of the client's request (besides its method,
# path, query and body).
_FORWARDED_HEADERS = ("Authorization", "Content-Type")


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else new_id("req")
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        response = error_response(ApiError(413, f"the body is over {MAX_BODY // 1024} KiB"))
    except web.HTTPException as exc:  # routing: 404, 405
        if exc.status < 400:
            raise
        response = error_response(ApiError(exc.status, exc.reason or "error"))
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        response = error_response(ApiError(500, f"internal error (request id {request_id})"))
    response.headers["X-Request-Id"] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[INGEST].metrics.request_duration.labels(
        route, request.method, str(response.status)
    ).observe(time.perf_counter() - started)
    return response


def error_response(exc: ApiError) -> web.Response:
    return web.Response(status=exc.code, body=exc.body(), content_type="application/json")


def json_response(struct: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encoder.encode(struct),
                        content_type="application/json")


async def decode_body(request: web.Request, type_: type[T]) -> T:
    """The body as `type_`, or a 400 (a 413 when over MAX_BODY)."""
    body = await request.read()
    if json_depth(body) > MAX_DEPTH:
        raise ApiError.invalid([ErrorDetail("", f"JSON nests deeper than {MAX_DEPTH} levels")])
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    except UnicodeDecodeError as exc:  # msgspec's, for a string that is not UTF-8
        raise ApiError.invalid([ErrorDetail("", f"malformed JSON: not UTF-8 at byte "
                                                f"{exc.start}")]) from None
    except RecursionError:  # only if MAX_DEPTH were near the interpreter's limit
        raise ApiError.invalid([ErrorDetail("", "JSON nests too deeply")]) from None


# Brackets as depth steps (+1, -1 as signed bytes); every other byte deleted.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


def json_depth(body: bytes) -> int:
    """How deeply the objects and arrays of JSON `body` nest (brackets inside
    strings do not count), at C speed. Malformed JSON gets some number: its
    decoding fails anyway."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be too deep
    # Drop escaped backslashes, then escaped quotes: each `"` left opens or
    # closes a string, so every other piece between quotes is outside strings.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    steps = array("b", outside.translate(_STEPS, _NOT_BRACKETS))
    return max(accumulate(steps), default=0)


def authorized_app(request: web.Request) -> str:
    """The path's app id, once the bearer token is checked to grant it."""
    app_id = request.match_info["app_id"]
    authorized_claims(request, app_id)
    return app_id


def authorized_claims(request: web.Request, app_id: str | None) -> dict:
    """The bearer token's claims once checked to grant `app_id` (None: a route
    of no app). A read-only token (a portal link's) may only read: 403 else."""
    settings = request.app[INGEST].settings
    claims = authorize(request.headers.get("Authorization"), settings.jwt_secret, app_id,
                       max_lifetime=settings.jwt_max_lifetime, issuer=settings.jwt_issuer,
                       audience=settings.jwt_audience)
    refuse_read_only_write(claims, request.method)
    return claims


def webhook_of(request: web.Request, app_id: str) -> Webhook:
    webhook_id = request.match_info["webhook_id"]
    webhook = request.app[INGEST].view.get(webhook_id)
    if webhook is None or webhook.app_id != app_id:
        raise ApiError(404, f"no webhook {webhook_id} in app {app_id}")
    return webhook


async def relay_to_event_log(request: web.Request, app_id: str) -> web.Response:
    """The answer of the event log instance that owns `app_id` to this request
    (its status, body and content type), or the error to answer instead.
    Authorize (and look the webhook up) first: nothing unauthorized is sent."""
    if request.headers.get(RELAY_HEADER) == request.app[INGEST].eventlog.mark:
        log.error("a request forwarded by ingest came back to ingest: the event log's "
                  "owner map names an ingest URL", extra={"request_id": request[REQUEST_ID]})
        raise ApiError(500, "the event log's owner map names ingest itself; "
                            f"request id {request[REQUEST_ID]}")
    headers = {name: request.headers[name] for name in _FORWARDED_HEADERS
               if name in request.headers}
    headers["X-Request-Id"] = request[REQUEST_ID]
    body = await request.read() if request.can_read_body else b""
    answer = await request.app[INGEST].eventlog.forward(
        app_id, request.method, request.rel_url.raw_path_qs, body, headers)
    return web.Response(status=answer.status, body=answer.body,
                        headers={"Content-Type": answer.content_type})


def now() -> datetime:
    """The current time at millisecond precision (as records carry it)."""
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)
