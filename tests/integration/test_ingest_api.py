"""The management API on a real broker: the webhook round trip, and bad requests
answered in the contract's error shape with nothing written to Kafka."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.conftest import JWT_SECRET, auth, records, token
from tests.integration.conftest import APP, Api, assert_error

async def test_webhook_round_trip(api: Api) -> None:
    status, created = await api.call(
        "POST", f"/v1/apps/{APP}/webhooks", headers=auth(APP),
        json={"target": "https://example.com/hook", "description": "crm"},
    )
    assert status == 201
    assert created is not None
    assert created["id"].startswith("wh_")
    assert created["triggers"] == ["message"]
    assert created["secret"].startswith("whsec_")
    assert created["target_type"] == "HTTP" and created["enabled"] is True

    status, listed = await api.call("GET", f"/v1/apps/{APP}/webhooks", headers=auth(APP))
    assert status == 200 and listed is not None
    assert [w["id"] for w in listed["webhooks"]] == [created["id"]]
    assert "secret" not in listed["webhooks"][0]

    status, fetched = await api.call(
        "GET", f"/v1/apps/{APP}/webhooks/{created['id']}", headers=auth(APP))
    assert status == 200 and fetched == created

    status, _ = await api.call(
        "DELETE", f"/v1/apps/{APP}/webhooks/{created['id']}", headers=auth(APP))
    assert status == 204
    status, body = await api.call(
        "GET", f"/v1/apps/{APP}/webhooks/{created['id']}", headers=auth(APP))
    assert_error(status, body, 404)
    assert [value is None for _, value in await records(api.bootstrap, api.topics.webhooks)] \
        == [False, True]


async def test_a_given_secret_is_kept(api: Api) -> None:
    status, created = await api.call(
        "POST", f"/v1/apps/{APP}/webhooks", headers=auth(APP),
        json={"target": "https://example.com/h", "secret": "my-own-secret"},
    )
    assert status == 201 and created is not None
    assert created["secret"] == "my-own-secret"


async def test_published_event_is_written_with_id_and_time(api: Api) -> None:
    status, body = await api.call(
        "POST", f"/v1/apps/{APP}/events", headers=auth(APP),
        json={"type": "message.received", "data": {"text": "hi"}},
    )
    assert status == 202 and body is not None
    written = await records(api.bootstrap, api.topics.events)
    assert len(written) == 1
    key, value = written[0]
    assert key == APP.encode()
    assert value is not None and body["id"].encode() in value and b'"created_at"' in value


BAD_REQUESTS = [
    pytest.param("POST", "/events", auth(APP), b'{"type": "message.rec', 400, "", id="malformed"),
    pytest.param("POST", "/events", auth(APP), b'{"data": {}}', 400, "type", id="missing type"),
    pytest.param("POST", "/events", auth(APP), b'{"type": "nope"}', 400, "type", id="unknown type"),
    pytest.param("POST", "/events", auth(APP), b'{"type": "webhook.test"}', 400, "type",
                 id="reserved type"),
    pytest.param("POST", "/events", auth(APP), b'{"type": "message.sent", "data": []}', 400,
                 "data", id="data not an object"),
    pytest.param("POST", "/events", {}, b'{"type": "message.sent"}', 401, None, id="no token"),
    pytest.param("POST", "/events", {"Authorization": "Bearer x.y.z"}, b'{"type": "message.sent"}',
                 401, None, id="bad token"),
    pytest.param("POST", "/events", {"Authorization": f"Bearer {token(APP)}x"},
                 b'{"type": "message.sent"}', 401, None, id="bad signature"),
    pytest.param("POST", "/events", auth("app_2"), b'{"type": "message.sent"}', 403, None,
                 id="another app's token"),
    pytest.param("POST", "/events", auth(APP), b'{"type": "message.sent", "x": "' + b"a" * 300_000
                 + b'"}', 413, None, id="too large"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "http://example.com"}', 400,
                 "target", id="http target"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://a.forbidden.example/"}',
                 400, "target", id="forbidden domain"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://10.0.0.1/"}', 400,
                 "target", id="private address"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://169.254.169.254/"}', 400,
                 "target", id="metadata address"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://127.1/"}', 400,
                 "target", id="shortened loopback"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://2130706433/"}', 400,
                 "target", id="decimal loopback"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://[2002:a00:1::1]/"}', 400,
                 "target", id="6to4 carrying a private address"),
    pytest.param("POST", "/webhooks", auth(APP),
                 '{"target": "https://169.254.169.\uff12\uff15\uff14/"}'.encode(), 400, "target",
                 id="metadata address in fullwidth digits"),
    pytest.param("POST", "/events", {"Authorization": "Bearer " + jwt.encode(
        {"scope": "admin", "exp": str(int(time.time()) + 60)}, JWT_SECRET)},
        b'{"type": "message.sent"}', 401, None, id="exp as a string"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://e.com", "triggers": []}',
                 400, "triggers", id="no triggers"),
    pytest.param("POST", "/webhooks", auth(APP),
                 b'{"target": "https://e.com", "triggers": ["UNSPECIFIED_TRIGGER"]}', 400,
                 "triggers", id="sinch unspecified"),
    pytest.param("POST", "/webhooks", auth(APP), b'{"target": "https://e.com", "colour": 1}', 400,
                 "colour", id="unknown field"),
    pytest.param("POST", "/webhooks", auth(APP),
                 b'{"target": "https://e.com", "headers": {"webhook-signature": "x"}}', 400,
                 "headers.webhook-signature", id="reserved header"),
    pytest.param("GET", "/webhooks/wh_missing", auth(APP), None, 404, None, id="no such webhook"),
    pytest.param("DELETE", "/webhooks/wh_missing", auth(APP), None, 404, None,
                 id="delete missing"),
]


@pytest.mark.parametrize(("method", "path", "headers", "data", "code", "field"), BAD_REQUESTS)
async def test_bad_request_gets_error_shape_and_writes_nothing(
    api: Api, method: str, path: str, headers: dict, data: bytes | None, code: int,
    field: str | None,
) -> None:
    status, body = await api.call(method, f"/v1/apps/{APP}{path}", headers=headers, data=data)
    assert_error(status, body, code, field)
    assert await api.written() == 0


async def test_unknown_route_and_method_get_error_shape(api: Api) -> None:
    assert_error(*await api.call("GET", "/v2/nothing"), 404)
    assert_error(*await api.call("PUT", f"/v1/apps/{APP}/events", headers=auth(APP)), 405)


async def test_per_app_limit_is_a_409(api: Api) -> None:
    for n in range(2):
        status, _ = await api.call("POST", f"/v1/apps/{APP}/webhooks", headers=auth(APP),
                                   json={"target": f"https://example.com/{n}"})
        assert status == 201
    before = await api.written()
    status, body = await api.call("POST", f"/v1/apps/{APP}/webhooks", headers=auth(APP),
                                  json={"target": "https://example.com/3"})
    assert_error(status, body, 409)
    assert body is not None and body["error"]["status"] == "FAILED_PRECONDITION"
    assert await api.written() == before


async def test_admin_token_acts_on_any_app(api: Api) -> None:
    admin = {"Authorization": f"Bearer {token(scope='admin')}"}
    status, _ = await api.call("POST", "/v1/apps/any_app/events", headers=admin,
                               json={"type": "contact.created"})
    assert status == 202


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.call("GET", "/healthz"))[0] == 200
    assert (await api.call("GET", "/readyz")) == (200, {"status": "ready"})


async def test_a_token_without_expiry_or_living_too_long_is_refused(api: Api) -> None:
    """Contract §9: `exp` is required, within HOOKBUS_JWT_MAX_LIFETIME (24 h)."""
    import time

    import jwt

    from tests.conftest import JWT_SECRET

    now = int(time.time())
    for claims in ({"scope": "admin"}, {"scope": "admin", "iat": now, "exp": now + 2 * 86400}):
        bearer = {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}
        status, body = await api.call("POST", f"/v1/apps/{APP}/events", headers=bearer,
                                      json={"type": "message.received"})
        assert_error(status, body, 401)
    assert await api.written() == 0
