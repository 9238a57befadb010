"""One delivery attempt: a signed POST of the event, in the webhook's payload
format as it is at this attempt (schemas/payload_formats.py), to the webhook's
target, with its OAuth2 token when it has client credentials. The signatures
cover the bytes sent."""

from __future__ import annotations

import asyncio
import ssl
import time
from datetime import UTC, datetime

import aiohttp

from schemas.deliveries import DeliveryTask
from schemas.payload_formats import render
from schemas.webhooks import Webhook
from services.common.secrets import InvalidKey
from services.common.target_policy import TargetPolicy
from services.deliverer.guard import GuardedResolver, TargetRefused
from services.deliverer.oauth import TokenCache, TokenError
from services.deliverer.outcomes import Failed, Outcome, Refused, Report, of_response
from services.deliverer.signing import keys_of, signature_headers

EXCERPT_BYTES = 1024

__all__ = ["Attempter", "Report", "guarded_session", "ssl_context"]


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system's trust store, plus `ca_bundle` when given."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def guarded_session(
    policy: TargetPolicy, ca_bundle: str | None, limit: int,
    resolver: aiohttp.abc.AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """The one client session of a deliverer: names resolved (and checked) at
    every attempt, connections reused, no cookies kept between receivers."""
    connector = aiohttp.TCPConnector(
        limit=limit, ssl=ssl_context(ca_bundle), use_dns_cache=False,
        resolver=GuardedResolver(policy, resolver),
    )
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                 auto_decompress=False)


class Attempter:
    def __init__(self, session: aiohttp.ClientSession, policy: TargetPolicy, user_agent: str,
                 timeout: float) -> None:
        self._session = session
        self._policy = policy
        self._user_agent = user_agent
        self._timeout = timeout
        self.tokens = TokenCache(session)

    async def attempt(self, webhook: Webhook, task: DeliveryTask) -> Report:
        started = time.perf_counter()
        refusal = self._policy.url_refusal(webhook.target)
        if refusal is not None:
            return Report(Refused(f"target {refusal}"), 0.0)
        try:
            async with asyncio.timeout(self._timeout):
                report = await self._post(webhook, task, started)
        except TimeoutError:
            report = Report(Failed(f"timed out after {self._timeout:g}s"),
                            time.perf_counter() - started)
        except TokenError as exc:
            report = Report(Failed(str(exc)), time.perf_counter() - started)
        except InvalidKey as exc:  # never holds key material
            report = Report(Failed(f"signing key: {exc}"), time.perf_counter() - started)
        except TargetRefused as exc:
            report = Report(Refused(str(exc)), time.perf_counter() - started)
        except aiohttp.ClientConnectorError as exc:
            outcome: Outcome = (
                Refused(str(exc.os_error)) if isinstance(exc.os_error, TargetRefused)
                else Failed(f"cannot connect: {exc.os_error}")
            )
            report = Report(outcome, time.perf_counter() - started)
        except (aiohttp.ClientError, OSError) as exc:
            report = Report(Failed(f"{type(exc).__name__}: {exc}"), time.perf_counter() - started)
        except ValueError as exc:  # what a receiver sent could not be used (a header, a token)
            report = Report(Failed(f"{type(exc).__name__}: {exc}"), time.perf_counter() - started)
        return report

    async def _post(self, webhook: Webhook, task: DeliveryTask, started: float) -> Report:
        # A PayloadError (a ValueError) fails the attempt: see `attempt`.
        body = render(webhook.payload_format, bytes(task.body))
        now = datetime.now(UTC)
        headers = {
            **webhook.headers,
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            **signature_headers(keys_of(webhook, now), task.event_id, int(now.timestamp()), body),
        }
        creds = webhook.client_credentials
        token = None
        if creds is not None:
            if (refusal := self._policy.url_refusal(creds.endpoint)) is not None:
                return Report(Refused(f"token endpoint {refusal}"), 0.0)
            token = await self.tokens.token(creds)
            headers["Authorization"] = f"Bearer {token}"
        async with self._session.post(webhook.target, data=body, headers=headers,
                                      allow_redirects=False) as response:
            if response.status == 401 and creds is not None:
                headers["Authorization"] = f"Bearer {await self.tokens.token(creds, stale=token)}"
            else:
                return await _report(response, started)
        async with self._session.post(webhook.target, data=body, headers=headers,
                                      allow_redirects=False) as response:
            return await _report(response, started)


async def _report(response: aiohttp.ClientResponse, started: float) -> Report:
    excerpt = (await response.content.read(EXCERPT_BYTES)).decode("utf-8", "replace")
    outcome = of_response(response.status, response.reason or "",
                          response.headers.get("Retry-After"), datetime.now(UTC))
    return Report(outcome, time.perf_counter() - started, response.status, excerpt or None)
