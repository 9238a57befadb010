"""Bodies of the management API (contract §6). Request bodies forbid unknown
fields, so a typo is a 400 rather than a silently ignored setting."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from schemas.attempts import Attempt
from schemas.webhooks import (
    ClientCredentials,
    SignatureScheme,
    TargetType,
    TokenRequestType,
    Version,
    Webhook,
)


class ErrorDetail(msgspec.Struct):
    field: str
    reason: str


class Error(msgspec.Struct, kw_only=True):
    code: int
    status: str
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(msgspec.Struct):
    error: Error


class ClientCredentialsIn(ClientCredentials, forbid_unknown_fields=True):
    """Client credentials as a request gives them: as stored, but strict."""


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    target: str
    triggers: list[str] | None = None
    # v1: a `whsec_` secret (or any string, used as its UTF-8 bytes); v1a: a `whsk_`
    # ed25519 key. Generated when absent.
    secret: str | None = None
    target_type: TargetType = "HTTP"
    client_credentials: ClientCredentialsIn | None = None
    headers: dict[str, str] = {}
    description: str = ""
    enabled: bool = True
    signature_scheme: SignatureScheme = "v1"
    # A string checked by validation (`must be one of …`), not a Literal: the
    # 400 names the formats, as a decode error would not.
    payload_format: str = "standard"


class WebhookPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partial update: absent fields keep their value; `client_credentials: null`
    removes them."""

    target: str | UnsetType = UNSET
    triggers: list[str] | UnsetType = UNSET
    target_type: TargetType | UnsetType = UNSET
    client_credentials: ClientCredentialsIn | None | UnsetType = UNSET
    headers: dict[str, str] | UnsetType = UNSET
    description: str | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET
    # Another scheme than the current one retires the secret as a rotation does
    # (it keeps signing for HOOKBUS_SECRET_ROTATION_OVERLAP) and generates a new
    # one of the new kind.
    signature_scheme: SignatureScheme | UnsetType = UNSET
    payload_format: str | UnsetType = UNSET
    # The version this change is based on: another current version is a 409.
    # Absent: the change applies to whatever version is current.
    version: Version | UnsetType = UNSET


class SecretRotation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Optional body of a rotation: the new secret, generated when absent (of the
    webhook's scheme: a `whsk_` key for v1a); the version it is based on, as in a
    PATCH."""

    secret: str | None = None
    version: Version | None = None


class SecretRotated(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The new secret of a v1 webhook; the new public key of a v1a webhook (its
    `whsk_` private key is never shown)."""

    secret: str | None = None
    public_key: str | None = None


class ClientCredentialsOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the API shows of client credentials: `client_secret` is write-only."""

    client_id: str
    endpoint: str
    scope: str | None = None
    response_type: str | None = None
    token_request_type: TokenRequestType = "BASIC"


class WebhookOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    app_id: str
    target: str
    triggers: list[str]
    target_type: TargetType
    headers: dict[str, str]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    # Each change adds one; a PATCH or rotation naming another version is a 409.
    # 0: last written before versions existed.
    version: int
    signature_scheme: SignatureScheme
    # One of PayloadFormat (the OpenAPI document's enum), or a newer service's.
    payload_format: str
    # v1 only: a v1a webhook's `whsk_` private key is never shown.
    secret: str | None = None
    # v1a: the `whpk_` public key that verifies its `v1a` signatures.
    public_key: str | None = None
    # Every `whpk_` key whose signatures deliveries carry now, newest first: the
    # current one, then those of rotated-out keys until their overlap ends.
    public_keys: list[str] = []
    client_credentials: ClientCredentialsOut | None = None
    disabled_reason: str | None = None

    @classmethod
    def of(cls, webhook: Webhook, *, with_secret: bool, public_key: str | None = None,
           public_keys: list[str] | None = None) -> WebhookOut:
        """`public_key` and `public_keys` are derived by the caller (services.common.secrets)."""
        creds = webhook.client_credentials
        v1a = webhook.signature_scheme == "v1a"
        return cls(
            id=webhook.id,
            app_id=webhook.app_id,
            target=webhook.target,
            triggers=webhook.triggers,
            target_type=webhook.target_type,
            headers=webhook.headers,
            description=webhook.description,
            enabled=webhook.enabled,
            created_at=webhook.created_at,
            updated_at=webhook.updated_at,
            version=webhook.version,
            signature_scheme=webhook.signature_scheme,
            payload_format=webhook.payload_format,
            secret=webhook.secret if with_secret and not v1a else None,
            public_key=public_key if v1a else None,
            public_keys=public_keys or [],
            client_credentials=None if creds is None else _credentials_out(creds),
            disabled_reason=webhook.disabled_reason,
        )


def _credentials_out(creds: ClientCredentials) -> ClientCredentialsOut:
    return ClientCredentialsOut(
        client_id=creds.client_id,
        endpoint=creds.endpoint,
        scope=creds.scope,
        response_type=creds.response_type,
        token_request_type=creds.token_request_type,
    )


class WebhookList(msgspec.Struct):
    webhooks: list[WebhookOut]


class EventIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: str
    data: dict[str, Any] = {}
    id: str | None = None
    app_id: str | None = None
    created_at: datetime | None = None


class EventAccepted(msgspec.Struct):
    id: str


MAX_BATCH = 500


class EventBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    events: list[EventIn]


class EventsAccepted(msgspec.Struct):
    ids: list[str]


class EventTypeOut(msgspec.Struct, kw_only=True):
    type: str
    description: str
    aliases: dict[str, list[str]]


class EventTypes(msgspec.Struct, kw_only=True):
    event_types: list[EventTypeOut]
    wildcards: list[str]


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which dead letters to re-enqueue, by when they died (default: all)."""

    since: datetime | None = None
    until: datetime | None = None


class AttemptsPage(msgspec.Struct, kw_only=True, omit_defaults=True):
    attempts: list[Attempt]
    # Pass as `cursor` for the next (older) page; absent at the end.
    next_cursor: str | None = None
