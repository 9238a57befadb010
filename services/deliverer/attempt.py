"""One delivery attempt: a signed POST of the envelope to the webhook's target."""

from __future__ import annotations

import asyncio
import ssl
import time
from datetime import UTC, datetime

import aiohttp

from schemas.deliveries import DeliveryTask
from schemas.webhooks import Webhook
from services.common.secrets import signing_key
from services.common.target_policy import TargetPolicy
from services.deliverer.outcomes import Failed, Outcome, Refused, of_status
from services.deliverer.signing import signature_headers


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system's trust store, plus `ca_bundle` when given."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class Attempter:
    def __init__(
        self, session: aiohttp.ClientSession, policy: TargetPolicy, user_agent: str
    ) -> None:
        self._session = session
        self._policy = policy
        self._user_agent = user_agent

    async def attempt(self, webhook: Webhook, task: DeliveryTask) -> Outcome:
        refusal = self._policy.url_refusal(webhook.target)
        if refusal is not None:
            return Refused(f"target {refusal}")
        body = bytes(task.body)
        headers = {
            **webhook.headers,
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            **signature_headers(
                [signing_key(s) for s in webhook.signing_secrets(datetime.now(UTC))],
                task.event_id, int(time.time()), body,
            ),
        }
        try:
            async with self._session.post(
                webhook.target, data=body, headers=headers, allow_redirects=False
            ) as response:
                return of_status(response.status, response.reason or "")
        except TimeoutError:
            return Failed("timed out")
        except aiohttp.ClientError as exc:
            return Failed(f"{type(exc).__name__}: {exc}")
        except (OSError, asyncio.IncompleteReadError) as exc:
            return Failed(f"{type(exc).__name__}: {exc}")
