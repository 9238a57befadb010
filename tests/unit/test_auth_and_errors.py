"""Who may call, and how decode errors name the field at fault."""

from __future__ import annotations

import time

import jwt
import msgspec
import pytest

from schemas.api import WebhookCreate
from services.ingest.auth import authorize, issue_token
from services.ingest.errors import ApiError, decode_error

SECRET = "unit-test-secret-of-32-bytes-long!"


def bearer(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return "Bearer " + jwt.encode(claims, secret, algorithm=algorithm)


@pytest.mark.parametrize(("header", "app_id", "code"), [
    (None, "app_1", 401),
    ("Basic abc", "app_1", 401),
    (bearer({"scope": "app", "app_id": "app_1"}, secret="another-secret-of-32-bytes-long!!"),
     "app_1", 401),
    (bearer({"scope": "app", "app_id": "app_1", "exp": int(time.time()) - 10}), "app_1", 401),
    (bearer({"scope": "user", "app_id": "app_1"}), "app_1", 401),
    (bearer({"scope": "app"}), "app_1", 401),
    (bearer({"scope": "app", "app_id": "app_2"}), "app_1", 403),
])
def test_refused(header: str | None, app_id: str, code: int) -> None:
    with pytest.raises(ApiError) as caught:
        authorize(header, SECRET, app_id)
    assert caught.value.code == code


def test_accepted() -> None:
    assert authorize("Bearer " + issue_token(SECRET, scope="app", app_id="app_1"), SECRET,
                     "app_1")["app_id"] == "app_1"
    assert authorize("Bearer " + issue_token(SECRET, scope="admin"), SECRET, "app_9")


def test_none_algorithm_is_refused() -> None:
    unsigned = jwt.encode({"scope": "admin"}, None, algorithm="none")
    with pytest.raises(ApiError):
        authorize("Bearer " + unsigned, SECRET, "app_1")


@pytest.mark.parametrize(("body", "field"), [
    (b'{"triggers": ["message"]}', "target"),
    (b'{"target": 3}', "target"),
    (b'{"target": "https://x", "bogus": 1}', "bogus"),
    (b'{"target": "https://x", "headers": {"a": 1}}', "headers"),
    (b'{"target": "https://x", "client_credentials": {"client_id": "a"}}',
     "client_credentials.client_secret"),
    (b'{"target": "https://x", "triggers": ["a", 2]}', "triggers.1"),
    (b'{"target": "https://x", "target_type": "EMAIL"}', "target_type"),
    (b'{"target": ', ""),
])
def test_decode_errors_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(msgspec.DecodeError) as caught:
        msgspec.json.decode(body, type=WebhookCreate)
    error = decode_error(caught.value)
    assert error.code == 400
    assert [d.field for d in error.details] == [field], error.details
