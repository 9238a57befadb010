"""Ingest's client of the event log service (issue 11): it keeps the owner map
(which instance owns which partition of the log, services.ingest.eventlog_routing)
and forwards an API request to the instance that owns the request's app.

The map is asked of the configured instances (HOOKBUS_EVENTLOG_URLS), one after
the other until one answers a map that holds up, every REFRESH_EVERY seconds
and at once after an instance answers 421 (not its partition) or 503
(rebalancing, restoring) or cannot be reached. A request goes to the owner with
a FORWARD_TIMEOUT; after a 421 or a connection that never opened it is asked
once more of the owner the refreshed map names. What cannot be answered is a
503 in the contract's shape (ApiError), never an exception of aiohttp's.
Ingest itself never depends on the event log: not for readiness, not to accept
events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import contextlib
import logging
from dataclasses import dataclass

import aiohttp
from prometheus_client import Counter
from yarl import URL

from services.ingest.errors import ApiError
from services.ingest.eventlog_routing import (
    MAX_ANSWER_BODY,
    MAX_OWNERS_BODY,
    MOVING,
    UNREACHABLE,
    BadOwners,
    Decision,
    Failure,
    OwnerMap,
    Refuse,
    Relay,
    after_answer,
    after_failure,
    forward_url,
    parse_owners,
    too_large,
)

log = logging.getLogger(__name__)

REFRESH_EVERY = 3.0      # seconds between two lookups of the owner map
OWNERS_TIMEOUT = 2.0     # for one instance's /internal/owners
FORWARD_TIMEOUT = 10.0   # for one forwarded request, its answer read whole
# How long a request waits for a fresh map before it is a 503.
REFRESH_WAIT = 5.0
VIA = "1.1 hookbus-ingest"
# Sent with every forwarded request: a request that arrives with it was sent
# by ingest to ingest (a map naming an ingest URL) and is answered, never sent
# on. Its value is a MAC under the JWT secret, which every ingest replica has and
# no client does: a client cannot make ingest take its request for a loop.
RELAY_HEADER = "X-Hookbus-Relay"


def relay_mark(secret: str) -> str:
    return hmac.new(secret.encode(), b"hookbus ingest relay", hashlib.sha256).hexdigest()[:32]


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str  # as the instance's Content-Type header gave it


class EventLogClient:
    def __init__(self, urls: tuple[str, ...], outcomes: Counter, *,
                 forward_timeout: float = FORWARD_TIMEOUT,
                 refresh_every: float = REFRESH_EVERY, mark: str = "") -> None:
        """`outcomes`: a counter of requests with one label, `outcome`; `mark`:
        the RELAY_HEADER value (relay_mark of the JWT secret)."""
        if not urls:
            raise ValueError("at least one event log URL is needed")
        self.urls = urls
        self.mark = mark
        self._outcomes = outcomes
        self.owners: OwnerMap | None = None
        self._forward_timeout = forward_timeout
        self._refresh_every = refresh_every
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._preferred = 0      # the index of the URL that answered last
        self._problem: str | None = ""  # the last refresh's problem, logged when it changes

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            # One session for every tenant's request: it keeps no cookies.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self._forward_timeout),
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=0),
        )
        self._task = asyncio.create_task(self._keep_refreshing(), name="event log owners")

    async def stop(self) -> None:
        for task in (self._task, self._refreshing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._refreshing = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- forwarding -------------------------------------------------------------

    async def forward(self, app_id: str, method: str, path_qs: str, body: bytes,
                      headers: dict[str, str]) -> Answer:
        """The owner's answer to this request, or an ApiError to answer instead."""
        retried = False
        while True:
            try:
                owner = await self._owner_of(app_id)
            except ApiError:
                self._outcomes.labels("unavailable").inc()
                raise
            decision, answer = await self._ask(owner, method, path_qs, body, headers, retried)
            if decision.refresh:
                self.refresh_soon()
            step = decision.step
            if isinstance(step, Relay):
                assert answer is not None
                self._outcomes.labels("relayed").inc()
                return answer
            if isinstance(step, Refuse):
                self._outcomes.labels("unavailable" if step.code == 503 else "unrelayable").inc()
                raise ApiError(step.code, step.message)
            self._outcomes.labels("retried").inc()
            await self._refreshed(wait=REFRESH_WAIT)  # Retry: with a map looked up now
            retried = True

    async def _owner_of(self, app_id: str) -> str:
        owner = None if self.owners is None else self.owners.owner_of(app_id)
        if owner is None:  # not loaded yet, or the partition is being moved
            await self._refreshed(wait=REFRESH_WAIT)
            owner = None if self.owners is None else self.owners.owner_of(app_id)
        if owner is None:  # (no map at all: no instance has answered one that holds up)
            raise ApiError(503, UNREACHABLE if self.owners is None else MOVING)
        return owner

    async def _ask(self, owner: str, method: str, path_qs: str, body: bytes,
                   headers: dict[str, str], retried: bool) -> tuple[Decision, Answer | None]:
        assert self._session is not None, "the event log client is not started"
        url = URL(forward_url(owner, path_qs), encoded=True)
        failure: Failure
        try:
            async with self._session.request(
                method, url, data=body if body else None, headers=headers | {"Via": VIA, RELAY_HEADER: self.mark},
                allow_redirects=False,
            ) as response:
                answer = Answer(response.status, await _read_whole(response, MAX_ANSWER_BODY),
                                response.headers.get("Content-Type", ""))
        except _TooLarge as exc:
            log.error("the event log at %s answered %s %s with over %d bytes", owner,
                      method, url.path, MAX_ANSWER_BODY)
            return Decision(too_large(exc.size), refresh=False), None
        except aiohttp.ClientConnectorError as exc:
            failure = "connect"
            problem: object = exc
        except TimeoutError as exc:  # (aiohttp's timeouts are TimeoutErrors)
            failure, problem = "timeout", exc
        except aiohttp.ClientError as exc:  # disconnected, reset, a broken answer
            failure, problem = "lost", exc
        else:
            mime = answer.content_type.partition(";")[0].strip().lower()
            decision = after_answer(answer.status, mime, retried=retried)
            if isinstance(decision.step, Refuse):
                log.error("the event log at %s answered %s %s with %d (%s)%s", owner, method,
                          url.path, answer.status, mime, " after a retry" if retried else "")
            elif answer.status in (421, 503):
                log.info("the event log at %s answered %d; looking its owners up again",
                         owner, answer.status)
            return decision, answer
        decision = after_failure(failure, method, retried=retried,
                                 timeout=self._forward_timeout)
        log.warning("the event log at %s gave no answer to %s %s (%s: %r)%s", owner, method,
                    url.path, failure, problem, " after a retry" if retried else "")
        return decision, None

    # --- the owner map ----------------------------------------------------------

    def refresh_soon(self) -> None:
        """Look the owners up again now, in the background."""
        self._wake.set()

    async def _refreshed(self, wait: float) -> None:
        """Until a lookup begun now (or one under way) ends, for `wait` s at most."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh(), name="event log owners now")
        # (asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation
        # that comes as what it waits for ends, and stop() would wait forever.)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await asyncio.shield(self._refreshing)

    async def _keep_refreshing(self) -> None:
        while True:
            self._wake.clear()
            await self._refreshed(wait=len(self.urls) * OWNERS_TIMEOUT + 1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_every):
                    await self._wake.wait()

    async def _refresh(self) -> None:
        """Ask the instances in turn (the one that answered last first) until one
        answers a map that holds up; keep the map there is when none does."""
        problems = []
        order = [*range(self._preferred, len(self.urls)), *range(self._preferred)]
        for index in order:
            url = self.urls[index]
            try:
                owners = await self._owners_from(url)
            except BadOwners as exc:
                problems.append(f"{url}: {exc}")
                continue
            except Exception as exc:  # any failure of another service's: next one
                problems.append(f"{url}: {exc!r}")
                continue
            if owners != self.owners:
                log.info("event log owners: %d of %d partitions owned, by %s",
                         len(owners.owners), owners.partitions,
                         ", ".join(sorted(set(owners.owners.values()))) or "none")
            self.owners, self._preferred = owners, index
            self._report(None)
            return
        self._report("; ".join(problems))

    async def _owners_from(self, base: str) -> OwnerMap:
        assert self._session is not None
        async with self._session.get(
            URL(base + "/internal/owners", encoded=True), headers={"Via": VIA, RELAY_HEADER: self.mark},
            allow_redirects=False, timeout=aiohttp.ClientTimeout(total=OWNERS_TIMEOUT),
        ) as response:
            if response.status != 200:
                raise BadOwners(f"answered {response.status}")
            try:
                body = await _read_whole(response, MAX_OWNERS_BODY)
            except _TooLarge:
                raise BadOwners(f"answered over {MAX_OWNERS_BODY} bytes") from None
        return parse_owners(body)

    def _report(self, problem: str | None) -> None:
        """One log line when the lookups start or stop failing, not one each time."""
        if problem == self._problem:
            return
        if problem is None:
            log.info("event log owners found")
        else:
            log.warning("no event log instance answered its owners (keeping the last "
                        "map): %s", problem)
        self._problem = problem


async def _read_whole(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, unless it is over `limit` bytes (_TooLarge)."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise _TooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)
