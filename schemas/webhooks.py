"""Records of the compacted `webhooks` topic: the only store of subscriptions.

Evolution rules: new fields get defaults; a field's type never changes; unknown
fields are skipped when decoding, so older services read newer records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

TargetType = Literal["HTTP", "DISMISS"]
TokenRequestType = Literal["BASIC", "FORM"]


class ClientCredentials(msgspec.Struct, kw_only=True, omit_defaults=True):
    client_id: str
    client_secret: str
    endpoint: str
    scope: str | None = None
    response_type: str | None = None
    token_request_type: TokenRequestType = "BASIC"


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


webhook_decoder = msgspec.json.Decoder(Webhook)
