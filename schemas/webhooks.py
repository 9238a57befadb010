"""Records of the compacted `webhooks` topic: the only store of subscriptions.

Evolution rules: new fields get defaults; a field's type never changes; unknown
fields are skipped when decoding, so older services read newer records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

TargetType = Literal["HTTP", "DISMISS"]
TokenRequestType = Literal["BASIC", "FORM"]
# At most 2**53, so that JSON clients read it exactly: a record claiming more (a
# hostile producer's way to block every later write) is unreadable, and repaired.
Version = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class ClientCredentials(msgspec.Struct, kw_only=True, omit_defaults=True):
    client_id: str
    client_secret: str
    endpoint: str
    scope: str | None = None
    response_type: str | None = None
    token_request_type: TokenRequestType = "BASIC"


class RetiredSecret(msgspec.Struct, kw_only=True):
    """A rotated-out secret that keeps signing beside the new one until `expires_at`."""

    secret: str
    expires_at: datetime


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

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery at `now`, newest first."""
        return [self.secret] + [r.secret for r in self.retired_secrets if r.expires_at > now]


webhook_decoder = msgspec.json.Decoder(Webhook)
