"""Who may call, and how decode errors name the field at fault."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import jwt
import msgspec
import pytest

from schemas.api import WebhookCreate
from services.ingest import auth
from services.ingest.auth import authorize, issue_token
from services.ingest.errors import ApiError, decode_error

SECRET = "unit-test-secret-of-32-bytes-long!"


def bearer(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    """A token of `claims`, expiring in a minute unless they say otherwise."""
    claims = {"exp": int(time.time()) + 60} | claims
    return "Bearer " + jwt.encode({k: v for k, v in claims.items() if v is not None}, secret,
                                  algorithm=algorithm)


def now() -> int:
    return int(time.time())


# Each header is made when its test runs (not when the module is collected), so
# that no token expires between the two in a long suite.
@pytest.mark.parametrize(("header", "app_id", "code"), [
    (lambda: None, "app_1", 401),
    (lambda: "Basic abc", "app_1", 401),
    (lambda: bearer({"scope": "app", "app_id": "app_1"},
                    secret="another-secret-of-32-bytes-long!!"), "app_1", 401),
    (lambda: bearer({"scope": "app", "app_id": "app_1", "exp": now() - 10}), "app_1", 401),
    (lambda: bearer({"scope": "user", "app_id": "app_1"}), "app_1", 401),
    (lambda: bearer({"scope": "app"}), "app_1", 401),
    (lambda: bearer({"scope": "app", "app_id": "app_2"}), "app_1", 403),
    # Every token expires, and lives at most HOOKBUS_JWT_MAX_LIFETIME (24 h here).
    (lambda: bearer({"scope": "admin", "exp": None}), "app_1", 401),
    (lambda: bearer({"scope": "admin", "exp": now() + 25 * 3600}), "app_1", 401),
    (lambda: bearer({"scope": "admin", "iat": now() - 3600, "exp": now() + 23.5 * 3600}),
     "app_1", 401),
    # A validly signed token with an odd exp/iat is a 401, never a crash (500).
    (lambda: bearer({"scope": "admin", "exp": str(now() + 60)}), "app_1", 401),
    (lambda: bearer({"scope": "admin", "exp": 10 ** 400}), "app_1", 401),
    (lambda: bearer({"scope": "admin", "exp": time.time() + 60, "iat": -10 ** 400}),
     "app_1", 401),
])
def test_refused(header: Callable[[], str | None], app_id: str, code: int) -> None:
    with pytest.raises(ApiError) as caught:
        authorize(header(), SECRET, app_id)
    assert caught.value.code == code


def test_accepted() -> None:
    assert authorize("Bearer " + issue_token(SECRET, scope="app", app_id="app_1"), SECRET,
                     "app_1")["app_id"] == "app_1"
    assert authorize("Bearer " + issue_token(SECRET, scope="admin"), SECRET, "app_9")


def test_the_refusals_say_why() -> None:
    with pytest.raises(ApiError, match="must carry an expiry"):
        authorize(bearer({"scope": "admin", "exp": None}), SECRET, None)
    with pytest.raises(ApiError, match="HOOKBUS_JWT_MAX_LIFETIME"):
        authorize(bearer({"scope": "admin", "exp": int(time.time()) + 7200}), SECRET, None,
                  max_lifetime=3600)
    assert authorize(bearer({"scope": "admin", "exp": int(time.time()) + 3000}), SECRET, None,
                     max_lifetime=3600)


def test_issued_tokens_expire_within_the_lifetime_asked() -> None:
    claims = jwt.decode(issue_token(SECRET, scope="admin", lifetime=120), SECRET,
                        algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120 and abs(claims["iat"] - time.time()) < 5


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


ISSUER, AUDIENCE = "https://auth.platform.example", "hookbus"


@pytest.mark.parametrize(("claims", "message"), [
    ({}, "it must carry the issuer (iss) 'https://auth.platform.example'"),
    ({"iss": ISSUER}, "it must carry the audience (aud) 'hookbus'"),
    ({"iss": "https://evil.example", "aud": AUDIENCE}, "its issuer (iss) is not"),
    ({"iss": ISSUER, "aud": "billing"}, "its audience (aud) does not include 'hookbus'"),
    ({"iss": ISSUER, "aud": ["billing", "search"]}, "does not include 'hookbus'"),
])
def test_with_an_issuer_and_audience_set_tokens_must_name_them(claims: dict,
                                                               message: str) -> None:
    with pytest.raises(ApiError, match=re.escape(message)) as raised:
        authorize(bearer({"scope": "admin"} | claims), SECRET, None, issuer=ISSUER,
                  audience=AUDIENCE)
    assert raised.value.code == 401


def test_tokens_naming_the_issuer_and_audience_pass_and_issue_token_names_them() -> None:
    for aud in (AUDIENCE, ["billing", AUDIENCE]):
        assert authorize(bearer({"scope": "admin", "iss": ISSUER, "aud": aud}), SECRET, None,
                         issuer=ISSUER, audience=AUDIENCE)
    token = issue_token(SECRET, scope="app", app_id="app_1", issuer=ISSUER, audience=AUDIENCE)
    assert authorize("Bearer " + token, SECRET, "app_1", issuer=ISSUER, audience=AUDIENCE)


def test_without_an_audience_set_a_token_meant_for_another_audience_is_refused() -> None:
    with pytest.raises(ApiError, match="HOOKBUS_JWT_AUDIENCE is not set"):
        authorize(bearer({"scope": "admin", "aud": "billing"}), SECRET, None)
    assert authorize(bearer({"scope": "admin", "iss": "anyone"}), SECRET, None)  # iss not checked


# -- verified tokens are kept (issue 13: the HMAC once per token, not per request) --
def test_a_kept_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    header = bearer({"scope": "app", "app_id": "app_1", "exp": now() + 30})
    assert authorize(header, SECRET, "app_1")["app_id"] == "app_1"  # verified and kept

    class Later:
        @staticmethod
        def time() -> float:
            return now() + 31.0

    monkeypatch.setattr(auth, "time", Later)
    with pytest.raises(ApiError) as caught:
        authorize(header, SECRET, "app_1")
    assert (caught.value.code, caught.value.message) == (401, "token expired")


def test_a_kept_token_passes_no_other_secret_issuer_or_audience() -> None:
    header = bearer({"scope": "app", "app_id": "app_1"})
    assert authorize(header, SECRET, "app_1")["app_id"] == "app_1"
    for kwargs in ({"secret": "another-secret-of-32-bytes-long!!"}, {"issuer": "hookbus"},
                   {"audience": "hookbus"}):
        secret = kwargs.pop("secret", SECRET)
        with pytest.raises(ApiError) as caught:
            authorize(header, secret, "app_1", **kwargs)
        assert caught.value.code == 401


def test_a_kept_tokens_claims_are_checked_at_every_request() -> None:
    header = bearer({"scope": "app", "app_id": "app_1"})
    authorize(header, SECRET, "app_1")
    with pytest.raises(ApiError) as caught:  # another app's route
        authorize(header, SECRET, "app_2")
    assert caught.value.code == 403
    with pytest.raises(ApiError) as caught:  # the lifetime allowed shrank
        authorize(header, SECRET, "app_1", max_lifetime=10)
    assert caught.value.code == 401
    claims = authorize(header, SECRET, "app_1")
    claims["scope"] = "admin"  # a caller's change to its copy is not kept
    assert authorize(header, SECRET, "app_1")["scope"] == "app"


def test_refused_tokens_are_not_kept_and_the_kept_ones_are_bounded() -> None:
    kept = auth._Verified(3)
    for n in range(5):
        kept.put((f"token{n}", SECRET, None, None), {"exp": now() + 60, "n": n})
    assert len(kept) == 3
    assert kept.get(("token0", SECRET, None, None)) is None  # the least recently used went
    assert kept.get(("token4", SECRET, None, None)) == {"exp": now() + 60, "n": 4}
    kept.put(("x" * (auth.VERIFIED_TOKEN_MAX_CHARS + 1), SECRET, None, None), {"exp": now() + 60})
    assert len(kept) == 3
    before = len(auth._verified)
    for _ in range(3):
        with pytest.raises(ApiError):
            authorize(bearer({"scope": "app", "app_id": "app_1"},
                             secret="another-secret-of-32-bytes-long!!"), SECRET, "app_1")
    assert len(auth._verified) == before
