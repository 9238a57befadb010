"""PATCH, secret rotation, test events, batches, idempotency keys and the
event-type table, through the API on a real broker."""

from __future__ import annotations

import msgspec

from schemas.deliveries import DeliveryTask
from schemas.event_types import EVENT_TYPES
from schemas.webhooks import Webhook
from services.common.sealing import open_webhook
from tests.conftest import SECRET_KEYS, auth, records
from tests.integration.conftest import APP, Api, assert_error

HOOKS = f"/v1/apps/{APP}/webhooks"


async def create(api: Api, **body: object) -> dict:
    status, created = await api.call("POST", HOOKS, headers=auth(APP),
                                     json={"target": "https://example.com/h"} | body)
    assert status == 201 and created is not None
    return created


async def test_patch_changes_only_the_given_fields(api: Api) -> None:
    created = await create(api, triggers=["message"], description="before",
                           headers={"X-Team": "a"})
    status, patched = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                     json={"triggers": ["contact.*"], "enabled": False})
    assert status == 200 and patched is not None
    assert patched["triggers"] == ["contact.*"] and patched["enabled"] is False
    assert patched["description"] == "before" and patched["headers"] == {"X-Team": "a"}
    assert patched["secret"] == created["secret"]
    assert patched["updated_at"] >= created["updated_at"]
    status, fetched = await api.call("GET", f"{HOOKS}/{created['id']}", headers=auth(APP))
    assert fetched == patched


async def test_patch_with_credentials_hides_the_client_secret(api: Api) -> None:
    created = await create(api)
    creds = {"client_id": "id", "client_secret": "shh", "endpoint": "https://auth.example.com/t",
             "token_request_type": "FORM"}
    status, patched = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                     json={"client_credentials": creds})
    assert status == 200 and patched is not None
    assert patched["client_credentials"] == {"client_id": "id", "endpoint": creds["endpoint"],
                                             "token_request_type": "FORM"}
    status, cleared = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                     json={"client_credentials": None})
    assert status == 200 and cleared is not None and "client_credentials" not in cleared


async def test_bad_patches_write_nothing(api: Api) -> None:
    created = await create(api)
    before = await api.written()
    for body, field in [({"target": "http://example.com"}, "target"),
                        ({"triggers": ["nope"]}, "triggers"),
                        ({"triggers": []}, "triggers"),
                        ({"secret": "x"}, "secret"),
                        ({"enabled": "yes"}, "enabled")]:
        status, error = await api.call("PATCH", f"{HOOKS}/{created['id']}", headers=auth(APP),
                                       json=body)
        assert_error(status, error, 400, field)
    assert_error(*await api.call("PATCH", f"{HOOKS}/wh_nope", headers=auth(APP), json={}), 404)
    assert await api.written() == before


async def test_rotation_keeps_the_old_secret_signing(api: Api) -> None:
    created = await create(api)
    status, rotated = await api.call("POST", f"{HOOKS}/{created['id']}/secret/rotate",
                                     headers=auth(APP))
    assert status == 200 and rotated is not None
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    key, value = (await records(api.bootstrap, api.topics.webhooks))[-1]
    assert value is not None
    record = open_webhook(SECRET_KEYS, msgspec.json.decode(value, type=Webhook))  # (sealed)
    assert record.secret == rotated["secret"]
    assert [r.secret for r in record.retired_secrets] == [created["secret"]]
    assert record.signing_secrets(record.updated_at) == [rotated["secret"], created["secret"]]
    assert record.signing_secrets(record.retired_secrets[0].expires_at) == [rotated["secret"]]


async def test_test_event_is_a_task_for_that_webhook_only(api: Api) -> None:
    created = await create(api)
    status, body = await api.call("POST", f"{HOOKS}/{created['id']}/test", headers=auth(APP))
    assert status == 202 and body is not None
    written = await records(api.bootstrap, api.topics.deliveries)
    assert len(written) == 1 and written[0][1] is not None
    task = msgspec.json.decode(written[0][1], type=DeliveryTask)
    assert (task.webhook_id, task.event_id, task.event_type) == \
        (created["id"], body["id"], "webhook.test")
    assert await records(api.bootstrap, api.topics.events) == []


async def test_batch_is_all_or_nothing(api: Api) -> None:
    events = [{"type": "message.received", "data": {"n": n}} for n in range(3)]
    status, error = await api.call("POST", f"/v1/apps/{APP}/events/batch", headers=auth(APP),
                                   json={"events": [*events, {"type": "nope"}]})
    assert_error(status, error, 400, "events.3.type")
    status, error = await api.call("POST", f"/v1/apps/{APP}/events/batch", headers=auth(APP),
                                   json={"events": events * 167})
    assert_error(status, error, 400, "events")
    assert await api.written() == 0
    status, accepted = await api.call("POST", f"/v1/apps/{APP}/events/batch", headers=auth(APP),
                                      json={"events": events})
    assert status == 202 and accepted is not None and len(set(accepted["ids"])) == 3
    assert len(await records(api.bootstrap, api.topics.events)) == 3


async def test_idempotency_key_gives_the_same_id_and_one_record(api: Api) -> None:
    headers = auth(APP) | {"Idempotency-Key": "order-42"}
    event = {"type": "payment.succeeded"}
    ids = [(await api.call("POST", f"/v1/apps/{APP}/events", headers=headers, json=event))[1]
           for _ in range(3)]
    assert ids[0] == ids[1] == ids[2]
    other = auth("app_2") | {"Idempotency-Key": "order-42"}
    _, elsewhere = await api.call("POST", "/v1/apps/app_2/events", headers=other, json=event)
    assert elsewhere != ids[0]
    assert len(await records(api.bootstrap, api.topics.events)) == 2


async def test_event_types_serves_the_table(api: Api) -> None:
    status, body = await api.call("GET", "/v1/event-types")
    assert status == 200 and body is not None
    assert [t["type"] for t in body["event_types"]] == [t.type for t in EVENT_TYPES]
    received = next(t for t in body["event_types"] if t["type"] == "message.received")
    assert received["aliases"]["smooch"] == ["message", "message:appUser"]
    assert received["aliases"]["sinch"] == ["MESSAGE_INBOUND"]


