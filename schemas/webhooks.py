"""Records of the compacted `webhooks` topic: the only store of subscriptions.

Evolution rules: new fields get defaults; a field's type never changes; unknown
fields are skipped when decoding, so older services read newer records.
- `signature_scheme` (on `Webhook` and `RetiredSecret`) came after the first
  records: absent, it is `v1`, which is what every earlier secret signed with.
  An older deliverer skips it and would sign a `v1a` webhook's `whsk_` key as an
  HMAC secret: upgrade the deliverers before creating `v1a` webhooks.
- `payload_format` came later still: absent, it is `standard`, the envelope
  every earlier record was delivered as. An older deliverer skips it and sends
  the envelope: upgrade the deliverers before choosing another format. It is a
  string on the wire, not a closed set: a format added later decodes in older
  readers (which fail each attempt with "unknown payload format", retried
  until they are upgraded) instead of making the record unreadable, which
  every reader would ignore and ingest would "repair" with the older record
  or, for a new webhook, a tombstone."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

TargetType = Literal["HTTP", "DISMISS"]
TokenRequestType = Literal["BASIC", "FORM"]
# `v1`: HMAC-SHA256 with a `whsec_` secret; `v1a`: ed25519 with a `whsk_` key
# (services/common/secrets.py says exactly what each holds).
SignatureScheme = Literal["v1", "v1a"]
# The shape of the delivered body (schemas/payload_formats.py says each).
PayloadFormat = Literal["standard", "chatwoot", "nativemsg", "smooch", "sinch"]
# At most 2**53, so that JSON clients read it exactly: a record claiming more (a
# hostile producer's way to block every later write) is unreadable, and repaired.
Version = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
# Old secrets still signing at once, at most (as Svix): every one signs every
# attempt, so more would cost every tenant's deliveries (and a header per key).
MAX_RETIRED_SIGNING = 10


class ClientCredentials(msgspec.Struct, kw_only=True, omit_defaults=True):
    client_id: str
    client_secret: str
    endpoint: str
    scope: str | None = None
    response_type: str | None = None
    token_request_type: TokenRequestType = "BASIC"


class RetiredSecret(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A rotated-out secret that keeps signing beside the new one until `expires_at`,
    with the scheme it signed with (a change of the webhook's scheme retires the
    old secret like a rotation)."""

    secret: str
    # With its offset: a naive time (a hostile or broken writer's) makes the record
    # unreadable, rather than a TypeError wherever it is compared with now.
    expires_at: Annotated[datetime, msgspec.Meta(tz=True)]
    signature_scheme: SignatureScheme = "v1"


class Webhook(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    app_id: str
    target: str
    triggers: list[str]
    secret: str
    created_at: datetime
    updated_at: datetime
    target_type: TargetType = "HTTP"
    client_credentials: ClientCredentials | None = None
    headers: dict[str, str] = {}
    description: str = ""
    enabled: bool = True
    disabled_reason: str | None = None
    retired_secrets: list[RetiredSecret] = []
    # Each write carries the version it replaces plus one (a create is 1); 0 marks
    # a record written before versions existed. Which record wins is decided by
    # every reader alike: services/common/webhook_log.py.
    version: Version = 0
    # Stored only: HOOKBUS_MAX_WEBHOOKS_PER_APP in force at creation, which readers
    # check the create against (0: written before the limit was checked in the log).
    app_limit: int = 0
    # How `secret` signs: `v1` HMAC, or `v1a` ed25519 (then `secret` is a `whsk_` key).
    signature_scheme: SignatureScheme = "v1"
    # The body's shape: the envelope (`standard`) or a seed platform's
    # (PayloadFormat, which the API accepts); any string decodes (see above).
    payload_format: str = "standard"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery at `now`, newest first."""
        return [s for _, s in self.signing_keys(now)]

    def signing_keys(self, now: datetime) -> list[tuple[SignatureScheme, str]]:
        """The secrets that sign a delivery at `now`, each with its scheme, newest
        first: the current one and at most MAX_RETIRED_SIGNING unexpired ones (the
        API refuses more; a record holding more was not written by it)."""
        return [(self.signature_scheme, self.secret)] + [
            (r.signature_scheme, r.secret) for r in self.retired_secrets if r.expires_at > now
        ][:MAX_RETIRED_SIGNING]


webhook_decoder = msgspec.json.Decoder(Webhook)
