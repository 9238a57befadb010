"""`/v1/apps/{app_id}/webhooks`: create, list, read, update, delete, rotate the
secret, send a test event.

Signature schemes (contract §6, `signature_scheme`): `v1` (HMAC, default) or
`v1a` (ed25519, services/common/secrets.py). For v1a:
- The `whsk_` private key is never shown: not by reads, nor by the create, PATCH
  or rotation that made it. Receivers verify with the `whpk_` public key, which
  every read shows (`public_key`, and `public_keys` during a rotation's overlap);
  the platform alone signs, which is the point of the scheme (Svix's API, too,
  shows an ed25519 endpoint's `whpk_` only). A client that brings its own
  `whsk_` key already holds it.
- A rotation makes a new key pair (or takes a given `whsk_`) and answers with
  the new public key; the old key keeps signing for
  HOOKBUS_SECRET_ROTATION_OVERLAP, exactly as a v1 secret does.
- A PATCH to another scheme is a rotation into that scheme: a new secret of the
  new kind is generated, and the old one keeps signing beside it (a v1 and a v1a
  signature in one header, as the Standard Webhooks spec allows) for the same
  overlap, so receivers can move to the new key without missing a delivery. A
  scheme change that dropped the old key at once would fail every delivery
  until each receiver had switched; one that was refused would make a customer
  delete and recreate the webhook, losing its id, history and dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

import msgspec
from aiohttp import web
from aiokafka.errors import KafkaError

from schemas.api import (
    ErrorDetail,
    EventAccepted,
    SecretRotated,
    SecretRotation,
    WebhookCreate,
    WebhookList,
    WebhookOut,
    WebhookPatch,
)
from schemas.deliveries import DeliveryTask
from schemas.event_types import DEFAULT_TRIGGERS
from schemas.eventlog import Routed, update_encoder
from schemas.events import Event
from schemas.webhooks import (
    MAX_RETIRED_SIGNING,
    ClientCredentials,
    PayloadFormat,
    RetiredSecret,
    Webhook,
)
from services.common.ids import new_id
from services.common.secrets import generate_for, public_keys_shown
from services.ingest.errors import ApiError
from services.ingest.http import (
    authorized_app,
    decode_body,
    encoder,
    json_response,
    now,
    webhook_of,
)
from services.ingest.state import INGEST, Ingest
from services.ingest.validation import secret_problems, webhook_problems

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3  # tries of a PATCH or rotation without `version` that lose a race


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/apps/{app_id}/webhooks", create_webhook)
    app.router.add_get("/v1/apps/{app_id}/webhooks", list_webhooks)
    app.router.add_get("/v1/apps/{app_id}/webhooks/{webhook_id}", get_webhook)
    app.router.add_patch("/v1/apps/{app_id}/webhooks/{webhook_id}", patch_webhook)
    app.router.add_delete("/v1/apps/{app_id}/webhooks/{webhook_id}", delete_webhook)
    app.router.add_post("/v1/apps/{app_id}/webhooks/{webhook_id}/secret/rotate", rotate_secret)
    app.router.add_post("/v1/apps/{app_id}/webhooks/{webhook_id}/test", test_webhook)


async def create_webhook(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    ingest.check_webhook_writes_open()
    body = await decode_body(request, WebhookCreate)
    _validate_webhook(body, ingest)
    limit = ingest.settings.max_webhooks_per_app
    if len(ingest.view.of_app(app_id)) >= limit:
        raise _over_limit(app_id, limit)
    created = now()
    webhook = Webhook(
        id=await ingest.new_webhook_id(app_id),
        app_id=app_id,
        target=body.target,
        triggers=body.triggers if body.triggers is not None else list(DEFAULT_TRIGGERS),
        secret=body.secret or generate_for(body.signature_scheme),
        created_at=created,
        updated_at=created,
        target_type=body.target_type,
        client_credentials=body.client_credentials,
        headers=body.headers,
        description=body.description,
        enabled=body.enabled,
        version=1,
        app_limit=limit,
        signature_scheme=body.signature_scheme,
        payload_format=cast(PayloadFormat, body.payload_format),  # validated
    )
    if not await ingest.write_webhook(webhook):
        # A new id can only lose to the limit: another replica's create came first.
        raise _over_limit(app_id, limit)
    log.info("webhook created", extra={"webhook_id": webhook.id})
    return json_response(shown(webhook, with_secret=True), status=201)


def shown(webhook: Webhook, *, with_secret: bool, unopened: bool = False) -> WebhookOut:
    """The webhook as the API shows it, with the public keys of its v1a keys.
    `unopened`: its sealed values could not be opened here (their key is not
    configured): no secret, no keys, and its headers' values are not shown."""
    if unopened:
        hidden = {name: "(sealed: cannot be opened)" for name in webhook.headers}
        return WebhookOut.of(msgspec.structs.replace(webhook, headers=hidden),
                             with_secret=False, public_key=None, public_keys=[])
    current = public_keys_shown([(webhook.signature_scheme, webhook.secret)])
    return WebhookOut.of(webhook, with_secret=with_secret,
                         public_key=current[0] if current else None,
                         public_keys=public_keys_shown(webhook.signing_keys(now())))


def _retired(current: Webhook, at: datetime, overlap: timedelta) -> list[RetiredSecret]:
    """`current`'s secrets still signing once its secret is replaced at `at`; a
    409 when that would be more than MAX_RETIRED_SIGNING."""
    still = [r for r in current.retired_secrets if r.expires_at > at]
    if len(still) >= MAX_RETIRED_SIGNING:
        soonest = min(r.expires_at for r in still)
        raise ApiError(409, f"webhook {current.id} already has {len(still)} old secrets "
                            f"signing beside its current one (at most {MAX_RETIRED_SIGNING}); "
                            f"the next one stops at {soonest.isoformat()}: rotate after that")
    retired = [RetiredSecret(secret=current.secret, expires_at=at + overlap,
                             signature_scheme=current.signature_scheme)]
    return retired + [r for r in current.retired_secrets if r.expires_at > at]


def _over_limit(app_id: str, limit: int) -> ApiError:
    return ApiError(409, f"app {app_id} already has {limit} webhooks, the most allowed")


def _validate_webhook(body: WebhookCreate, ingest: Ingest) -> None:
    problems = webhook_problems(body, ingest.settings.target_policy)
    if problems:
        raise ApiError.invalid(problems)


async def _update(request: web.Request, app_id: str, version: int | None,
                  change: Callable[[Webhook], Webhook]) -> Webhook:
    """Write `change(current)` as the next version of the path's webhook. With an
    explicit `version`, a current version other than it, or a lost race, is a
    409; without, a lost race is retried on the new current record a few times."""
    ingest = request.app[INGEST]
    for attempt in range(WRITE_ATTEMPTS):
        current = webhook_of(request, app_id)  # a 404 once deleted
        if version is not None and (attempt or version != current.version):
            raise _stale(current, version)
        webhook = msgspec.structs.replace(change(current), version=current.version + 1)
        if await ingest.write_webhook(webhook):
            return webhook
        # Lost: this view has now read the record that won; try again on it.
    raise ApiError(409, f"webhook {current.id} kept changing under this write "
                        f"({WRITE_ATTEMPTS} attempts); read it and retry")


def _stale(current: Webhook, version: int) -> ApiError:
    return ApiError(409, f"webhook {current.id} is at version {current.version}, "
                         f"not {version}; read it and retry",
                    [ErrorDetail("version", f"stale: the current version is {current.version}")])


async def patch_webhook(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    ingest.check_webhook_writes_open()
    webhook_of(request, app_id)
    patch = await decode_body(request, WebhookPatch)
    overlap = timedelta(seconds=ingest.settings.secret_rotation_overlap)
    # The secret a scheme change brings: the same one if the write is retried.
    fresh = (None if patch.signature_scheme is msgspec.UNSET
             else generate_for(patch.signature_scheme))

    def patched(current: Webhook) -> Webhook:
        merged = WebhookCreate(**{
            name: getattr(patch, name) if getattr(patch, name) is not msgspec.UNSET
            else getattr(current, name)
            for name in WebhookPatch.__struct_fields__ if name != "version"
        } | {"client_credentials": _credentials_in(patch, current)})
        _validate_webhook(merged, ingest)
        reenabled = merged.enabled and not current.enabled
        at = now()
        if fresh is not None and merged.signature_scheme != current.signature_scheme:
            current = msgspec.structs.replace(
                current, secret=fresh, signature_scheme=merged.signature_scheme,
                retired_secrets=_retired(current, at, overlap))
        return msgspec.structs.replace(
            current,
            target=merged.target,
            triggers=merged.triggers or [],
            target_type=merged.target_type,
            client_credentials=merged.client_credentials,
            headers=merged.headers,
            description=merged.description,
            enabled=merged.enabled,
            payload_format=cast(PayloadFormat, merged.payload_format),  # validated
            disabled_reason=None if reenabled else current.disabled_reason,
            updated_at=at,
        )

    version = None if patch.version is msgspec.UNSET else patch.version
    webhook = await _update(request, app_id, version, patched)
    log.info("webhook updated", extra={"webhook_id": webhook.id})
    return json_response(shown(webhook, with_secret=True))


def _credentials_in(patch: WebhookPatch, current: Webhook) -> ClientCredentials | None:
    if patch.client_credentials is not msgspec.UNSET:
        return patch.client_credentials
    return current.client_credentials


async def rotate_secret(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    ingest.check_webhook_writes_open()
    scheme = webhook_of(request, app_id).signature_scheme
    body = await decode_body(request, SecretRotation) if await request.read() else SecretRotation()
    if body.secret is not None and (problems := secret_problems(body.secret, scheme)):
        raise ApiError.invalid(problems)
    secret = body.secret or generate_for(scheme)  # the same one if the write is retried
    overlap = timedelta(seconds=ingest.settings.secret_rotation_overlap)

    def rotated(current: Webhook) -> Webhook:
        if current.signature_scheme != scheme:  # a PATCH changed it meanwhile
            raise ApiError(409, f"webhook {current.id} changed its signature scheme to "
                                f"{current.signature_scheme} under this rotation; retry")
        at = now()
        return msgspec.structs.replace(current, secret=secret,
                                       retired_secrets=_retired(current, at, overlap),
                                       updated_at=at)

    webhook = await _update(request, app_id, body.version, rotated)
    log.info("webhook secret rotated", extra={"webhook_id": webhook.id})
    if scheme == "v1a":
        return json_response(SecretRotated(public_key=shown(webhook, with_secret=False).public_key))
    return json_response(SecretRotated(secret=webhook.secret))


async def test_webhook(request: web.Request) -> web.Response:
    """A `webhook.test` event, written straight to `deliveries` for this webhook
    only (no trigger can match it; its series' origin is `test`), then told to
    the event log as routed from where the task is in `deliveries` (its body is
    the envelope). Both acknowledged before the 202."""
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    webhook = webhook_of(request, app_id)
    if not webhook.enabled:
        raise ApiError(409, f"webhook {webhook.id} is disabled; enable it to test it")
    event = Event(id=new_id("evt"), type="webhook.test", app_id=app_id, created_at=now(),
                  data={"webhook_id": webhook.id})
    task = DeliveryTask(
        webhook_id=webhook.id, app_id=app_id, event_id=event.id, event_type=event.type,
        event_created_at=event.created_at, body=msgspec.Raw(encoder.encode(event)),
        origin="test",
    )
    # As Ingest.produce, but the record's partition and offset are needed.
    assert ingest.producer is not None
    try:
        written = await ingest.producer.send_and_wait(
            ingest.topics.deliveries, encoder.encode(task), key=webhook.id.encode())
    except KafkaError as exc:
        log.error("kafka write to %s failed: %r", ingest.topics.deliveries, exc)
        raise ApiError(503, "the event store is unavailable; retry later") from exc
    routed = Routed(
        app_id=app_id, event_id=event.id, event_type=event.type, created_at=event.created_at,
        source="deliveries", partition=written.partition, offset=written.offset,
        webhook_ids=[webhook.id],
    )
    await ingest.produce(ingest.topics.eventlog_updates, app_id, update_encoder.encode(routed))
    return json_response(EventAccepted(event.id), status=202)


async def list_webhooks(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    view = request.app[INGEST].view
    return json_response(WebhookList([
        shown(w, with_secret=False, unopened=view.secret_problem(w.id) is not None)
        for w in view.of_app(app_id)]))


async def get_webhook(request: web.Request) -> web.Response:
    app_id = authorized_app(request)
    webhook = webhook_of(request, app_id)
    unopened = request.app[INGEST].view.secret_problem(webhook.id) is not None
    return json_response(shown(webhook, with_secret=not unopened, unopened=unopened))


async def delete_webhook(request: web.Request) -> web.Response:
    """A delete is final: every later write for this id loses, in every reader."""
    app_id = authorized_app(request)
    ingest = request.app[INGEST]
    ingest.check_webhook_writes_open()
    webhook = webhook_of(request, app_id)
    if not await ingest.delete_webhook(webhook.id):
        raise ApiError(404, f"no webhook {webhook.id} in app {app_id}")
    log.info("webhook deleted", extra={"webhook_id": webhook.id})
    return web.Response(status=204)
