"""Signing secrets and their schemes (services/common/secrets.py): the `whsk_`/
`whpk_` formats of Standard Webhooks' `v1a` as Svix serializes them, checked with
PyNaCl; which secret each scheme takes (the API's 400s); what the API shows of a
`v1a` webhook; and records written before `signature_scheme` existed."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import msgspec
import pytest
from nacl.signing import SigningKey

from schemas.api import WebhookCreate, WebhookOut
from schemas.webhooks import RetiredSecret, Webhook, webhook_decoder
from services.common.secrets import (
    InvalidKey,
    generate_for,
    generate_private_key,
    generate_secret,
    private_key,
    public_key,
    public_keys_shown,
    secret_problem,
)
from services.common.target_policy import TargetPolicy
from services.ingest.validation import webhook_problems

# Svix's test key (svix-server e2e_endpoint.rs), and the same key with its public
# half altered, which Svix refuses ("Bad SK") and so do we.
SVIX_KEY = ("whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9l"
            "MicMFs6Kvg==")
SVIX_PUBLIC_KEY = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="
ALTERED_KEY = ("whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlaaaaaaaaaaAJ6p9l"
               "MicMFs6Kvg==")
SEED_ONLY = "whsk_" + base64.b64encode(bytes(range(32))).decode()


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_a_generated_whsk_is_seed_then_public_key_as_pynacl_derives_it() -> None:
    secret = generate_private_key()
    raw = b64(secret.removeprefix("whsk_"))
    assert secret.startswith("whsk_") and len(raw) == 64
    nacl_key = SigningKey(raw[:32])
    assert bytes(nacl_key.verify_key) == raw[32:]
    assert public_key(secret) == "whpk_" + base64.b64encode(raw[32:]).decode()
    assert len(b64(public_key(secret).removeprefix("whpk_"))) == 32
    assert generate_private_key() != secret
    assert generate_for("v1a").startswith("whsk_") and generate_for("v1").startswith("whsec_")


def test_svix_keys_read_the_same() -> None:
    assert public_key(SVIX_KEY) == SVIX_PUBLIC_KEY
    assert private_key(SVIX_KEY).private_bytes_raw() == b64(SVIX_KEY[5:])[:32]


B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.mark.parametrize(("secret", "reason"), [
    (ALTERED_KEY, "not the public key of its first 32"),
    (SEED_ONLY, "must hold 64 bytes"),
    ("whsk_", "must hold 64 bytes"),
    ("whsk_not base64!", "must be base64"),
    ("whsk_ü" + "A" * 86, "must be base64"),  # not ASCII: b64decode's ValueError
    ("whsk_" + base64.b64encode(bytes(65)).decode(), "not 65"),
    ("whsec_" + base64.b64encode(bytes(64)).decode(), "must start with whsk_"),
    (SVIX_KEY[:-3] + B64_ALPHABET[B64_ALPHABET.index(SVIX_KEY[-3]) ^ 1] + "==",
     "must be canonical base64"),  # the same bytes, a padding bit set
])
def test_what_is_no_ed25519_key(secret: str, reason: str) -> None:
    with pytest.raises(InvalidKey, match=reason):
        private_key(secret)


# Which given secret each scheme takes; None: accepted.
@pytest.mark.parametrize(("secret", "scheme", "problem"), [
    (generate_secret(), "v1", None),
    ("any passphrase", "v1", None),  # contract §6: used as its UTF-8 bytes
    ("whsec_not*base64", "v1", None),
    (SVIX_KEY, "v1", "signs only with signature_scheme v1a"),
    (SVIX_PUBLIC_KEY, "v1", "public key cannot sign"),
    (SVIX_KEY, "v1a", None),
    (generate_private_key(), "v1a", None),
    (generate_secret(), "v1a", "give a whsk_ key"),
    ("any passphrase", "v1a", "give a whsk_ key"),
    (SVIX_PUBLIC_KEY, "v1a", "public key cannot sign"),
    (ALTERED_KEY, "v1a", "not a valid whsk_ ed25519 key"),
    (SEED_ONLY, "v1a", "must hold 64 bytes"),
])
def test_secret_fits_scheme(secret: str, scheme: str, problem: str | None) -> None:
    found = secret_problem(secret, scheme)  # type: ignore[arg-type]
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
        assert secret.removeprefix("whsk_")[:20] not in found  # no key material in errors


def test_the_api_names_the_secret_field() -> None:
    policy = TargetPolicy(allow_http=False)
    body = WebhookCreate(target="https://example.com/h", secret=generate_secret(),
                         signature_scheme="v1a")
    assert [d.field for d in webhook_problems(body, policy)] == ["secret"]
    assert webhook_problems(msgspec.structs.replace(body, secret=SVIX_KEY), policy) == []
    assert webhook_problems(msgspec.structs.replace(body, secret=None), policy) == []
    v1 = msgspec.structs.replace(body, secret=SVIX_KEY, signature_scheme="v1")
    assert [d.field for d in webhook_problems(v1, policy)] == ["secret"]


AT = datetime(2026, 11, 22, tzinfo=UTC)


def stored(**fields: object) -> Webhook:
    return Webhook(**({"id": "wh_1", "app_id": "app_1", "target": "https://e.com",
                       "triggers": ["*"], "secret": SVIX_KEY, "created_at": AT,
                       "updated_at": AT, "signature_scheme": "v1a"} | fields))


def test_a_v1a_private_key_is_never_shown() -> None:
    old = generate_private_key()
    webhook = stored(retired_secrets=[RetiredSecret(secret=old, expires_at=AT.replace(year=2027),
                                                    signature_scheme="v1a")])
    keys = public_keys_shown(webhook.signing_keys(AT))
    assert keys == [SVIX_PUBLIC_KEY, public_key(old)]
    out = WebhookOut.of(webhook, with_secret=True, public_key=keys[0], public_keys=keys)
    encoded = msgspec.json.encode(out)
    assert b"whsk_" not in encoded and SVIX_KEY[5:25].encode() not in encoded
    assert (out.signature_scheme, out.secret, out.public_key) == ("v1a", None, SVIX_PUBLIC_KEY)
    v1 = WebhookOut.of(stored(secret="whsec_abc", signature_scheme="v1"), with_secret=True,
                       public_key=SVIX_PUBLIC_KEY)
    assert (v1.secret, v1.public_key, v1.public_keys) == ("whsec_abc", None, [])


def test_a_key_that_does_not_parse_is_left_out_of_a_read() -> None:
    assert public_keys_shown([("v1a", ALTERED_KEY), ("v1", "whsec_x"), ("v1a", SVIX_KEY)]) \
        == [SVIX_PUBLIC_KEY]


# A record with a retired secret as ingest wrote it before signature schemes (golden:
# never edit).
RECORD_BEFORE_SCHEMES = (
    b'{"id":"wh_01HZX3","app_id":"app_1","target":"https://example.com/hook",'
    b'"triggers":["message"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",'
    b'"created_at":"2026-11-22T18:15:00.123Z","updated_at":"2026-11-22T18:15:00.123Z",'
    b'"retired_secrets":[{"secret":"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",'
    b'"expires_at":"2026-11-23T18:15:00.123Z"}],"version":2,"app_limit":10}'
)


def test_a_record_written_before_schemes_signs_v1() -> None:
    webhook = webhook_decoder.decode(RECORD_BEFORE_SCHEMES)
    assert webhook.signing_keys(AT) == [
        ("v1", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("v1", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
    ]
    assert b"signature_scheme" not in msgspec.json.encode(webhook)  # v1 writes nothing new


class OldRetired(msgspec.Struct, kw_only=True):  # the fields before schemes
    secret: str
    expires_at: datetime


class OldWebhook(msgspec.Struct, kw_only=True):
    secret: str
    retired_secrets: list[OldRetired] = []


def test_a_v1a_record_round_trips_and_older_readers_skip_the_scheme() -> None:
    webhook = stored(retired_secrets=[RetiredSecret(secret="whsec_x", expires_at=AT)])
    encoded = msgspec.json.encode(webhook)
    assert webhook_decoder.decode(encoded) == webhook
    assert b'"signature_scheme":"v1a"' in encoded
    old = msgspec.json.decode(encoded, type=OldWebhook)
    assert (old.secret, old.retired_secrets[0].secret) == (SVIX_KEY, "whsec_x")
