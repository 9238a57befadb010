"""Validation of webhook and event bodies beyond their types: each rule yields an
`ErrorDetail` naming the field, so a client learns every mistake at once. Pure."""

from __future__ import annotations

import re

from schemas.api import ErrorDetail, EventIn, WebhookCreate
from schemas.events import MAX_EVENT_ID
from schemas.payload_formats import PAYLOAD_FORMATS
from schemas.webhooks import ClientCredentials, SignatureScheme
from services.common.secrets import secret_problem
from services.common.target_policy import TargetPolicy
from services.common.triggers import CANONICAL_TYPES, RESERVED_TYPES, unknown_triggers

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,4096}")
# Headers Hookbus sets itself; a webhook may not override them.
RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "content-encoding", "transfer-encoding", "host",
    "user-agent", "connection", "webhook-id", "webhook-timestamp", "webhook-signature",
    "x-hub-signature-256",
})
MAX_DESCRIPTION = 1024
MAX_HEADERS = 32
MAX_SECRET = 256


def webhook_problems(body: WebhookCreate, policy: TargetPolicy) -> list[ErrorDetail]:
    problems: list[ErrorDetail] = []
    if (reason := policy.url_refusal(body.target)) is not None:
        problems.append(ErrorDetail("target", reason))
    if body.triggers is not None:
        problems += trigger_problems(body.triggers)
    if body.secret is not None:
        problems += secret_problems(body.secret, body.signature_scheme)
    if len(body.description) > MAX_DESCRIPTION:
        problems.append(ErrorDetail("description", f"must be at most {MAX_DESCRIPTION} characters"))
    problems += header_problems(body.headers)
    if body.client_credentials is not None:
        problems += credentials_problems(body.client_credentials, policy)
    problems += payload_format_problems(body.payload_format)
    return problems


def payload_format_problems(payload_format: str) -> list[ErrorDetail]:
    if payload_format not in PAYLOAD_FORMATS:
        return [ErrorDetail("payload_format", f"must be one of {', '.join(PAYLOAD_FORMATS)}")]
    return []


def secret_problems(secret: str, scheme: SignatureScheme) -> list[ErrorDetail]:
    """A given secret must fit its webhook's signature scheme: v1 any string but a
    `whsk_`/`whpk_` key, v1a a valid `whsk_` ed25519 key (services/common/secrets.py)."""
    if not 0 < len(secret) <= MAX_SECRET:
        return [ErrorDetail("secret", f"must be 1 to {MAX_SECRET} characters")]
    if (reason := secret_problem(secret, scheme)) is not None:
        return [ErrorDetail("secret", reason)]
    return []


def trigger_problems(triggers: list[str]) -> list[ErrorDetail]:
    if not triggers:
        return [ErrorDetail("triggers", "must name at least one trigger")]
    return [
        ErrorDetail("triggers", f"unknown trigger {name!r}")
        for name in unknown_triggers(triggers)
    ]


def header_problems(headers: dict[str, str]) -> list[ErrorDetail]:
    problems = []
    if len(headers) > MAX_HEADERS:
        problems.append(ErrorDetail("headers", f"at most {MAX_HEADERS} headers"))
    for name, value in headers.items():
        field = f"headers.{name}"
        if not _TOKEN.fullmatch(name):
            problems.append(ErrorDetail(field, "not a valid header name"))
        elif name.lower() in RESERVED_HEADERS:
            problems.append(ErrorDetail(field, "is set by Hookbus and cannot be overridden"))
        if not _HEADER_VALUE.fullmatch(value):
            problems.append(ErrorDetail(field, "value must be at most 4096 printable ASCII characters"))
    return problems


def credentials_problems(creds: ClientCredentials, policy: TargetPolicy) -> list[ErrorDetail]:
    problems = []
    for name in ("client_id", "client_secret"):
        if not getattr(creds, name):
            problems.append(ErrorDetail(f"client_credentials.{name}", "must not be empty"))
    if (reason := policy.url_refusal(creds.endpoint)) is not None:
        problems.append(ErrorDetail("client_credentials.endpoint", reason))
    if creds.scope is not None and len(creds.scope) > 1024:
        problems.append(ErrorDetail("client_credentials.scope", "must be at most 1024 characters"))
    if creds.response_type is not None and len(creds.response_type) > 64:
        problems.append(
            ErrorDetail("client_credentials.response_type", "must be at most 64 characters")
        )
    return problems


def event_problems(body: EventIn, app_id: str) -> list[ErrorDetail]:
    problems = []
    if body.type not in CANONICAL_TYPES:
        problems.append(ErrorDetail("type", f"unknown event type {body.type!r}"))
    elif body.type in RESERVED_TYPES:
        problems.append(ErrorDetail("type", f"{body.type} is sent only by Hookbus"))
    if body.app_id is not None and body.app_id != app_id:
        problems.append(ErrorDetail("app_id", "must match the app in the path"))
    if body.id is not None and not 0 < len(body.id) <= MAX_EVENT_ID:
        problems.append(ErrorDetail("id", f"must be 1 to {MAX_EVENT_ID} characters"))
    elif body.id is not None and "." in body.id:
        # Signed as "{id}.{timestamp}.{body}" (Standard Webhooks): a "." splits two ways.
        problems.append(ErrorDetail("id", "must not hold '.' (it is signed as "
                                          "'{id}.{timestamp}.{body}')"))
    return problems
