"""The API's OpenAPI 3.1 document: schemas generated from the msgspec wire types
(`schemas/api.py`), operations declared here beside them. Pure."""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from schemas.api import (
    MAX_BATCH,
    AttemptsPage,
    ReplayRequest,
    ErrorBody,
    EventAccepted,
    EventBatch,
    EventIn,
    EventsAccepted,
    EventTypes,
    SecretRotated,
    SecretRotation,
    WebhookCreate,
    WebhookList,
    WebhookOut,
    WebhookPatch,
)
from schemas.event_types import WILDCARD
from schemas.eventlog_api import (
    EventDetail,
    EventPage,
    ReplayJob,
    Resent,
    ResendRequest,
    StatusFilter,
    WebhookStats,
)
from schemas.events import MAX_EVENT_ID, Event
from schemas.payload_formats import PAYLOAD_FORMATS
from schemas.portal_links import AppList, PortalLink, PortalLinkRequest
from services.common.target_policy import MAX_TARGET_LENGTH
from services.common.triggers import (
    CANONICAL_TYPES,
    RESERVED_TYPES,
    SUBSCRIBABLE_TYPES,
    alias_names,
)

_TYPES: list[type] = [
    AttemptsPage, ReplayRequest, ErrorBody, EventAccepted, EventBatch, EventIn, EventsAccepted,
    EventTypes, SecretRotated, SecretRotation, WebhookCreate, WebhookList, WebhookOut,
    WebhookPatch,
    # Answered by the event log service (issue 11), relayed by ingest.
    Event, EventDetail, EventPage, ReplayJob, Resent, ResendRequest, WebhookStats,
    # The console's (issue 12).
    AppList, PortalLink, PortalLinkRequest,
]
_ERRORS = {
    400: "Invalid input (JSON nested deeper than 64 levels included); `details` names "
         "each field at fault.",
    401: "No token, or not a valid one.",
    403: "The token is valid for another app, or is read-only (a portal link's) and the "
         "request writes, or the route needs an admin token.",
    404: "No such webhook in this app.",
    409: "A precondition failed: the per-app webhook limit, a stale `version`, or a "
         "signature scheme changed under a rotation.",
    413: "The body is over 256 KiB, or an event is larger than the events topic accepts.",
    500: "Internal error, logged with the request id.",
    503: "Kafka is unavailable, or webhooks are still loading; retry later.",
}
# The routes that the event log service answers (ingest authorizes and relays).
_EVENT_LOG_ERRORS = {
    400: "Invalid query, body or cursor; `details` names each field at fault.",
    404: "No such webhook in this app, or nothing by that id in the event log (it keeps "
         "HOOKBUS_EVENT_LOG_RETENTION, 7 days by default).",
    409: "A precondition failed; the message says which.",
    500: "Internal error, logged with the request id (the event log's answer could not "
         "be relayed included).",
    503: "The event log is unavailable, or moving between instances (rebalancing or "
         "recovering): nothing was done; retry in a few seconds. After a timeout or a "
         "broken connection a resend or replay may have been carried out: the message "
         "says so.",
}
_SCHEME = ("How deliveries are signed (Standard Webhooks): `v1` HMAC-SHA256 with a `whsec_` "
           "secret, or `v1a` ed25519 with a `whsk_` private key, which is never shown; "
           "receivers verify with its `whpk_` public key.")
_FORMAT = ("The shape of the delivered body: `standard` (the default) is the event envelope; "
           "`chatwoot`, `nativemsg`, `smooch` and `sinch` render the event in that platform's "
           "documented webhook shape (its event or trigger name, timestamp, app id, and "
           "`data` where it puts the event's attributes). Signed the same way, over the body "
           "as sent; a change applies to every later attempt, retries included.")
# Bounded, so that no valid request's line exceeds what aiohttp parses (8,190
# bytes; beyond it, its own text/plain 400 answers before any route).
_APP_ID = {"name": "app_id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
_WEBHOOK_ID = {"name": "webhook_id", "in": "path", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
_EVENT_ID = {"name": "event_id", "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID}}
# Job ids are the event log's own, short.
_JOB_ID = {"name": "job_id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "maxLength": 64}}

def _limit(default: int, most: int) -> dict[str, Any]:
    return {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": most, "default": default}}


def _cursor(field: str) -> dict[str, Any]:
    """Opaque (base64url), as the previous page gave it. At most 1,024
    characters: with the longest ids, the request line still fits."""
    return {"name": "cursor", "in": "query", "required": False,
            "description": f"`{field}` of the previous page, as given (opaque).",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1,
                       "maxLength": 1024}}


_ATTEMPTS_PAGE = (_limit(20, 100), _cursor("next_cursor"))
_EVENTS_PAGE = (_limit(50, 250), _cursor("next"))
_EVENT_FILTERS = (
    {"name": "type", "in": "query", "required": False,
     "description": "Only events of this canonical type.",
     "schema": {"type": "string", "enum": sorted(CANONICAL_TYPES)}},
    {"name": "status", "in": "query", "required": False,
     "description": "Only events with a delivery in this status (`failed`: retrying or dead).",
     "schema": {"type": "string", "enum": list(get_args(StatusFilter))}},
    {"name": "since", "in": "query", "required": False,
     "description": "Only events created at or after this time.",
     "schema": {"type": "string", "format": "date-time"}},
    {"name": "until", "in": "query", "required": False,
     "description": "Only events created before this time.",
     "schema": {"type": "string", "format": "date-time"}},
)
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "The same key from the same app within HOOKBUS_IDEMPOTENCY_TTL (24 h "
                   "by default) answers the same event id(s), on any ingest replica, and "
                   "publishes nothing more; after it, the key makes new ids.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _ref(type_: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{type_.__name__}"}


def _json(type_: type) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(type_)}}}


def _operation(
    summary: str, success: int, response: type | None, *, body: type | None = None,
    body_required: bool = True, params: tuple[dict, ...] = (), errors: tuple[int, ...] = (),
    event_log: bool = False,
) -> dict[str, Any]:
    """`event_log`: answered by the event log service, relayed by ingest."""
    responses: dict[str, Any] = {
        str(success): {"description": summary} | (_json(response) if response else {})
    }
    described = _ERRORS | (_EVENT_LOG_ERRORS if event_log else {})
    for code in (400, 401, 403, 413, 500, 503, *errors):
        responses[str(code)] = {"description": described[code]} | _json(ErrorBody)
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": summary.lower().replace(" ", "_").replace("'", ""),
        "parameters": list(params),
        "responses": responses,
        "security": [{"bearer": []}],
    }
    if body is not None:
        operation["requestBody"] = {"required": body_required} | _json(body)
    return operation


def _plain(summary: str, media_type: str, schema: dict, *, codes: tuple[int, ...] = (200,)) -> dict:
    return {
        "get": {
            "summary": summary,
            "operationId": summary.lower().replace(" ", "_"),
            "responses": {
                str(code): {"description": summary, "content": {media_type: {"schema": schema}}}
                for code in codes
            },
        }
    }


def _constrain(components: dict[str, Any]) -> None:
    """Add to the generated schemas the closed sets and limits that validation
    enforces, so that the document says all the API accepts, and no more."""
    publishable = sorted(CANONICAL_TYPES - RESERVED_TYPES)
    triggers = sorted(
        SUBSCRIBABLE_TYPES | alias_names() | {t.split(".")[0] + ".*" for t in SUBSCRIBABLE_TYPES}
        | {WILDCARD}
    )
    components["EventIn"]["properties"]["type"]["enum"] = publishable
    components["EventBatch"]["properties"]["events"] |= {"minItems": 1, "maxItems": MAX_BATCH}
    for name in ("WebhookCreate", "WebhookPatch"):
        properties = components[name]["properties"]
        properties["target"] |= {"maxLength": MAX_TARGET_LENGTH, "pattern": "^https?://"}
        properties["triggers"] = {"type": "array", "minItems": 1,
                                  "items": {"type": "string", "enum": triggers}}
    for name in ("WebhookCreate", "WebhookPatch", "WebhookOut"):
        components[name]["properties"]["signature_scheme"]["description"] = _SCHEME
        components[name]["properties"]["payload_format"] |= {
            "type": "string", "enum": list(PAYLOAD_FORMATS), "description": _FORMAT}
    components["WebhookPatch"]["properties"]["signature_scheme"]["description"] += (
        " Another scheme than the current one generates a secret of the new kind; the "
        "old one keeps signing beside it for HOOKBUS_SECRET_ROTATION_OVERLAP.")
    components["WebhookOut"]["properties"]["public_key"]["description"] = (
        "v1a: the `whpk_` public key that verifies the `v1a` signatures.")
    components["WebhookOut"]["properties"]["public_keys"]["description"] = (
        "Every `whpk_` key whose `v1a` signatures deliveries carry now, newest first: the "
        "current one, then rotated-out ones until their overlap ends.")
    components["EventDetail"]["properties"]["event"] = _ref(Event) | {
        "description": "The envelope as delivered (contract §4)."}
    components["EventPage"]["properties"]["next"]["description"] = (
        "Pass as `cursor` for the next (older) page; null at the end. A page may hold "
        "fewer than `limit` events and still have a next one.")


def _webhook_links() -> dict[str, Any]:
    """How a created webhook's id feeds the operations on it."""
    parameters = {"app_id": "$request.path.app_id", "webhook_id": "$response.body#/id"}
    return {
        name: {"operationId": operation, "parameters": parameters}
        for name, operation in [
            ("GetWebhook", "get_a_webhook"), ("UpdateWebhook", "update_a_webhook"),
            ("DeleteWebhook", "delete_a_webhook"), ("RotateSecret", "rotate_a_webhooks_secret"),
            ("SendTestEvent", "send_a_test_event"),
            ("ListAttempts", "list_a_webhooks_attempts"),
            ("GetStats", "get_a_webhooks_stats"),
            ("ReplayDeadLetters", "replay_a_webhooks_dead_letters"),
        ]
    }


def openapi_document(version: str) -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    _constrain(components)
    create = _operation("Create a webhook", 201, WebhookOut, body=WebhookCreate,
                        params=(_APP_ID,), errors=(409,))
    create["responses"]["201"]["links"] = _webhook_links()
    app, hook = (_APP_ID,), (_APP_ID, _WEBHOOK_ID)
    publish = _operation("Publish an event", 202, EventAccepted, body=EventIn,
                         params=(_APP_ID, _IDEMPOTENCY_KEY))
    publish["responses"]["202"]["links"] = {
        name: {"operationId": operation, "parameters": {
            "app_id": "$request.path.app_id", "event_id": "$response.body#/id"}}
        for name, operation in [("GetEvent", "get_an_event"), ("ResendEvent", "resend_an_event")]
    }
    replay = _operation("Replay a webhook's dead letters", 202, ReplayJob, body=ReplayRequest,
                        body_required=False, params=hook, errors=(404, 409), event_log=True)
    replay["responses"]["202"]["links"] = {"GetReplayJob": {
        "operationId": "get_a_replay_job",
        "parameters": {"app_id": "$request.path.app_id",
                       "webhook_id": "$request.path.webhook_id", "job_id": "$response.body#/id"},
    }}
    status_object = {"type": "object", "properties": {"status": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hookbus",
            "version": version,
            "description": "Webhook subscriptions and event ingestion. Tokens are HS256 JWTs "
                           "with `scope` `app` (and its `app_id`) or `admin`.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
        "paths": {
            "/v1/apps/{app_id}/webhooks": {
                "post": create,
                "get": _operation("List webhooks", 200, WebhookList, params=app),
            },
            "/v1/apps/{app_id}/webhooks/{webhook_id}": {
                "get": _operation("Get a webhook", 200, WebhookOut, params=hook, errors=(404,)),
                "patch": _operation("Update a webhook", 200, WebhookOut, body=WebhookPatch,
                                    params=hook, errors=(404, 409)),
                "delete": _operation("Delete a webhook", 204, None, params=hook, errors=(404,)),
            },
            "/v1/apps/{app_id}/webhooks/{webhook_id}/secret/rotate": {
                "post": _operation("Rotate a webhook's secret", 200, SecretRotated,
                                   body=SecretRotation, body_required=False, params=hook,
                                   errors=(404, 409)),
            },
            "/v1/apps/{app_id}/webhooks/{webhook_id}/test": {
                "post": _operation("Send a test event", 202, EventAccepted, params=hook,
                                   errors=(404, 409)),
            },
            "/v1/apps/{app_id}/webhooks/{webhook_id}/attempts": {
                "get": _operation("List a webhook's attempts", 200, AttemptsPage,
                                  params=(*hook, *_ATTEMPTS_PAGE), errors=(404,),
                                  event_log=True),
            },
            "/v1/apps/{app_id}/webhooks/{webhook_id}/stats": {
                "get": _operation("Get a webhook's stats", 200, WebhookStats, params=hook,
                                  errors=(404,), event_log=True),
            },
            "/v1/apps/{app_id}/webhooks/{webhook_id}/replay": {"post": replay},
            "/v1/apps/{app_id}/webhooks/{webhook_id}/replay/{job_id}": {
                "get": _operation("Get a replay job", 200, ReplayJob, params=(*hook, _JOB_ID),
                                  errors=(404,), event_log=True),
            },
            "/v1/apps/{app_id}/events": {
                "post": publish,
                "get": _operation("List events", 200, EventPage,
                                  params=(_APP_ID, *_EVENT_FILTERS, *_EVENTS_PAGE),
                                  errors=(404,), event_log=True),
            },
            "/v1/apps/{app_id}/events/{event_id}": {
                "get": _operation("Get an event", 200, EventDetail, params=(_APP_ID, _EVENT_ID),
                                  errors=(404,), event_log=True),
            },
            "/v1/apps/{app_id}/events/{event_id}/resend": {
                "post": _operation("Resend an event", 202, Resent, body=ResendRequest,
                                   body_required=False, params=(_APP_ID, _EVENT_ID),
                                   errors=(404, 409), event_log=True),
            },
            "/v1/apps/{app_id}/events/batch": {
                "post": _operation("Publish events (one Kafka transaction)", 202,
                                   EventsAccepted, body=EventBatch,
                                   params=(_APP_ID, _IDEMPOTENCY_KEY)),
            },
            "/v1/apps": {
                "get": _operation("List apps", 200, AppList),
            },
            "/v1/apps/{app_id}/portal-links": {
                "post": _operation("Create a portal link", 201, PortalLink,
                                   body=PortalLinkRequest, body_required=False, params=app),
            },
            "/v1/event-types": {
                "get": {
                    "summary": "The event types and their aliases",
                    "operationId": "event_types",
                    "responses": {"200": {"description": "The table"} | _json(EventTypes)},
                },
            },
            "/healthz": _plain("Liveness", "application/json", status_object),
            "/readyz": _plain("Readiness", "application/json", status_object, codes=(200, 503)),
            "/metrics": _plain("Prometheus metrics", "text/plain", {"type": "string"}),
        },
    }
