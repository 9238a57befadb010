"""Ingest relays the event log's routes (issue 11) to the instance that owns the
app, on a real broker, with real HTTP servers on loopback standing in for event
log instances: answers relayed as they are, the client's Authorization and
request id forwarded, a 421 followed to the new owner, nothing forwarded that
ingest refuses (401, 403, unknown webhook), and a 503 in the contract's shape,
never a crash, when no instance answers or one answers nonsense. Ingest's
readiness and its events do not wait for the event log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from devtools.broker import Broker, free_port
from services.common.config import KafkaSettings
from services.common.target_policy import TargetPolicy
from services.common.topics import Topics
from services.eventlog.keys import partition_of
from services.ingest.app import create_app
from services.ingest.eventlog_routing import MAX_ANSWER_BODY, MOVING, UNREACHABLE
from services.ingest.settings import Settings
from tests.conftest import JWT_SECRET, SECRET_KEYS, auth, token, until
from tests.integration.conftest import APP, Api, assert_error

PARTITIONS = 3


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: CIMultiDict[str]  # (aiohttp's client spells X-Request-ID so)
    body: bytes


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _ok(_: web.Request) -> web.StreamResponse:
    return web.json_response({"events": [], "next": None})


@dataclass
class StandIn:
    """One event log instance as ingest sees it: `GET /internal/owners` answers
    `owners` (JSON, or bytes as they are); every other request is recorded and
    answered by `answer`."""

    port: int = field(default_factory=free_port)
    owners: object = None
    answer: Answer = _ok
    seen: list[Seen] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def own_all(self, owner: StandIn | str) -> None:
        url = owner if isinstance(owner, str) else owner.url
        self.owners = {"partitions": PARTITIONS,
                       "owners": {str(p): url for p in range(PARTITIONS)}}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/internal/owners", self._owners)
        app.router.add_route("*", "/{tail:.*}", self._record)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _owners(self, _: web.Request) -> web.Response:
        if isinstance(self.owners, bytes):
            return web.Response(body=self.owners, content_type="application/json")
        return web.json_response(self.owners)

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.rel_url.raw_path_qs,
                              CIMultiDict(request.headers), await request.read()))
        return await self.answer(request)


@pytest.fixture
async def stand_ins() -> AsyncIterator[Callable[[], Awaitable[StandIn]]]:
    started: list[StandIn] = []

    async def start() -> StandIn:
        instance = StandIn()
        instance.own_all(instance)
        await instance.start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        assert instance.runner is not None
        await instance.runner.cleanup()


@pytest.fixture
async def ingest(kafka: Broker, topics: Topics) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    """Starts ingest in this process, asking the given event log URLs, once ready."""
    runners: list[web.AppRunner] = []
    async with aiohttp.ClientSession() as http:

        async def start(*eventlog_urls: str) -> Api:
            settings = Settings(
                kafka=KafkaSettings(kafka.bootstrap, topics.prefix), jwt_secret=JWT_SECRET,
                secret_keys=SECRET_KEYS, http_port=free_port(),
                target_policy=TargetPolicy(allow_http=False), eventlog_urls=eventlog_urls,
            )
            runner = web.AppRunner(create_app(settings))
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
            api = Api(f"http://127.0.0.1:{settings.http_port}", http, topics, kafka.bootstrap)
            await until(lambda: _ready(api))
            return api

        yield start
        for runner in runners:
            await runner.cleanup()


async def _ready(api: Api) -> bool:
    return (await api.call("GET", "/readyz"))[0] == 200


async def _webhook(api: Api, app_id: str = APP) -> str:
    status, created = await api.call("POST", f"/v1/apps/{app_id}/webhooks", headers=auth(app_id),
                                     json={"target": "https://example.com/h"})
    assert status == 201 and created is not None
    return created["id"]


async def _raw(api: Api, method: str, path: str, **kwargs: object) -> tuple[int, bytes, str]:
    async with api.http.request(method, api.base + path, **kwargs) as response:
        return response.status, await response.read(), response.headers.get("Content-Type", "")


# --- relayed ----------------------------------------------------------------------


async def test_answers_are_relayed_as_they_are_with_the_clients_headers(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)
    body = b'{"events": [], "next": "RXg"}'

    async def page(_: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "application/json; charset=utf-8"})

    log.answer = page
    headers = auth(APP) | {"X-Request-Id": "req-relay-1"}
    path = f"/v1/apps/{APP}/events?type=message.received&status=failed&limit=5"
    status, got, content_type = await _raw(api, "GET", path, headers=headers)
    assert (status, got, content_type) == (200, body, "application/json; charset=utf-8")
    [seen] = log.seen
    assert (seen.method, seen.path_qs, seen.body) == ("GET", path, b"")
    assert seen.headers["Authorization"] == headers["Authorization"]
    assert seen.headers["X-Request-Id"] == "req-relay-1"
    assert "hookbus-ingest" in seen.headers["Via"]

    # An error of the event log's, and a resend's body and content type.
    async def not_found(_: web.Request) -> web.Response:
        return web.Response(status=404, body=b'{"error": {"code": 404}}',
                            content_type="application/json")

    log.answer = not_found
    status, got, _ = await _raw(api, "POST", f"/v1/apps/{APP}/events/evt_1/resend",
                                headers=auth(APP), data=b'{"webhook_id": "wh_1"}')
    assert (status, got) == (404, b'{"error": {"code": 404}}')
    seen = log.seen[-1]
    assert (seen.method, seen.path_qs, seen.body) == \
        ("POST", f"/v1/apps/{APP}/events/evt_1/resend", b'{"webhook_id": "wh_1"}')
    assert seen.headers["X-Request-Id"].startswith("req_")  # ingest's own when none was given


async def test_every_event_log_route_is_relayed(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)
    hook = await _webhook(api)

    async def accepted(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path},
                                 status=202 if request.method == "POST" else 200)

    log.answer = accepted
    base = f"/v1/apps/{APP}"
    for method, path, status in [
        ("GET", f"{base}/events", 200),
        ("GET", f"{base}/events/evt_%C3%BC%2F1", 200),
        ("POST", f"{base}/events/evt_1/resend", 202),
        ("GET", f"{base}/webhooks/{hook}/attempts?limit=2&cursor=QUJD", 200),
        ("GET", f"{base}/webhooks/{hook}/stats", 200),
        ("POST", f"{base}/webhooks/{hook}/replay", 202),
        ("GET", f"{base}/webhooks/{hook}/replay/rpl_1", 200),
    ]:
        got, body = await api.call(method, path, headers=auth(APP), json={})
        assert got == status, (path, body)
        assert log.seen[-1].path_qs == path
    assert len(log.seen) == 7


async def test_a_503_of_the_event_logs_is_relayed(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)
    body = b'{"error": {"code": 503, "status": "UNAVAILABLE", "message": "restoring"}}'

    async def restoring(_: web.Request) -> web.Response:
        return web.Response(status=503, body=body, content_type="application/json")

    log.answer = restoring
    status, got, _ = await _raw(api, "GET", f"/v1/apps/{APP}/events", headers=auth(APP))
    assert (status, got) == (503, body)
    assert len(log.seen) == 1  # (not asked again: it said it is not ready)


# --- moved, gone, broken ----------------------------------------------------------


async def test_a_421_refreshes_the_owners_and_asks_the_new_owner(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    old, new = await stand_ins(), await stand_ins()
    old.own_all(old)
    new.own_all(old)
    api = await ingest(old.url, new.url)

    async def moved(_: web.Request) -> web.Response:
        # The partition moved just now: both instances' maps say so from here on.
        old.own_all(new)
        new.own_all(new)
        return web.json_response({"error": {"code": 421}}, status=421)

    async def served(_: web.Request) -> web.Response:
        return web.json_response({"events": [], "next": None, "by": "new"})

    old.answer, new.answer = moved, served
    status, body = await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP))
    assert (status, body) == (200, {"events": [], "next": None, "by": "new"})
    assert len(old.seen) == 1 and len(new.seen) == 1
    assert new.seen[0].headers["Authorization"] == auth(APP)["Authorization"]


async def test_a_421_after_the_retry_is_a_503(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)

    async def misdirected(_: web.Request) -> web.Response:
        return web.json_response({"error": {"code": 421}}, status=421)

    log.answer = misdirected
    status, error = await api.call("POST", f"/v1/apps/{APP}/events/evt_1/resend",
                                   headers=auth(APP), json={})
    assert_error(status, error, 503)
    assert error is not None and error["error"]["message"] == MOVING
    assert len(log.seen) == 2


async def test_an_owner_that_refuses_connections_is_a_503(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    log.own_all(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    api = await ingest(log.url)
    status, error = await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP))
    assert_error(status, error, 503)
    assert error is not None and error["error"]["message"] == MOVING
    assert log.seen == []


async def test_with_no_event_log_at_all_ingest_is_ready_and_takes_events(
    ingest: Callable[..., Awaitable[Api]]
) -> None:
    api = await ingest(f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}")
    status, error = await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP))
    assert_error(status, error, 503)
    assert error is not None and error["error"]["message"] == UNREACHABLE
    assert await _ready(api)
    status, accepted = await api.call("POST", f"/v1/apps/{APP}/events", headers=auth(APP),
                                      json={"type": "message.received"})
    assert status == 202 and accepted is not None


async def test_a_partition_being_moved_is_a_503(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    mine = partition_of(APP, PARTITIONS)
    log.owners = {"partitions": PARTITIONS,
                  "owners": {str(p): log.url for p in range(PARTITIONS) if p != mine}}
    api = await ingest(log.url)
    assert_error(*await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP)), 503)
    assert log.seen == []


@pytest.mark.parametrize("owners", [
    b"<html>not json</html>",
    b'{"partitions": 3, "owners": {"0": "file:///etc/passwd"}}',
    b'{"partitions": 0, "owners": {}}',
    b'{"partitions": 3, "owners": {"7": "http://127.0.0.1:1"}}',
    b'{"partitions": 3, "owners": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
])
async def test_a_broken_owner_map_is_a_503_until_a_good_one_comes(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]],
    owners: bytes,
) -> None:
    log = await stand_ins()
    log.owners = owners
    api = await ingest(log.url)
    assert_error(*await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP)), 503)
    assert log.seen == []
    log.own_all(log)
    status, _ = await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP))
    assert status == 200 and len(log.seen) == 1


@pytest.mark.parametrize("answer", ["html", "too large", "teapot"])
async def test_an_answer_the_api_cannot_give_is_a_500_in_shape(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]],
    answer: str,
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)

    async def odd(_: web.Request) -> web.Response:
        if answer == "html":
            return web.Response(text="<h1>502 Bad Gateway</h1>", content_type="text/html")
        if answer == "too large":
            return web.Response(body=b" " * (MAX_ANSWER_BODY + 1), content_type="application/json")
        return web.json_response({"error": "short and stout"}, status=418)

    log.answer = odd
    assert_error(*await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP)), 500)


async def test_an_owner_map_naming_ingest_is_not_a_loop(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)
    log.own_all(api.base)  # (ingest: a misconfigured event log's advertised URL)
    answers: list[tuple[int, dict | None]] = []

    async def looped() -> bool:  # (once ingest's lookup every few seconds saw the map)
        answers.append(await api.call("GET", f"/v1/apps/{APP}/events", headers=auth(APP)))
        return answers[-1][0] != 200

    await until(looped, timeout=10)
    status, error = answers[-1]
    assert_error(status, error, 500)
    assert error is not None and "names ingest" in error["error"]["message"]


# --- refused before forwarding ----------------------------------------------------


async def test_ingest_authorizes_before_it_forwards(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)
    hook = await _webhook(api)
    paths = [("GET", "/v1/apps/app_2/events"), ("GET", "/v1/apps/app_2/events/evt_1"),
             ("POST", "/v1/apps/app_2/events/evt_1/resend"),
             ("GET", f"/v1/apps/app_2/webhooks/{hook}/attempts"),
             ("GET", f"/v1/apps/app_2/webhooks/{hook}/stats"),
             ("POST", f"/v1/apps/app_2/webhooks/{hook}/replay"),
             ("GET", f"/v1/apps/app_2/webhooks/{hook}/replay/rpl_1")]
    for method, path in paths:
        assert_error(*await api.call(method, path, headers=auth(APP), json={}), 403)
        assert_error(*await api.call(method, path, json={}), 401)
        assert_error(*await api.call(method, path, json={}, headers={
            "Authorization": "Bearer not-a-token"}), 401)
    assert log.seen == []


async def test_a_webhook_not_in_the_app_is_a_404_before_forwarding(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)
    elsewhere = await _webhook(api, "app_2")
    admin = {"Authorization": f"Bearer {token(scope='admin')}"}
    for hook in ("wh_nope", elsewhere):
        for method, suffix in [("GET", "attempts"), ("GET", "stats"), ("POST", "replay"),
                               ("GET", "replay/rpl_1")]:
            path = f"/v1/apps/{APP}/webhooks/{hook}/{suffix}"
            assert_error(*await api.call(method, path, headers=admin, json={}), 404)
    assert log.seen == []


async def test_a_body_over_the_limit_is_a_413_before_forwarding(
    ingest: Callable[..., Awaitable[Api]], stand_ins: Callable[[], Awaitable[StandIn]]
) -> None:
    log = await stand_ins()
    api = await ingest(log.url)
    body = json.dumps({"webhook_id": "x" * (300 * 1024)}).encode()
    assert_error(*await api.call("POST", f"/v1/apps/{APP}/events/evt_1/resend",
                                 headers=auth(APP), data=body), 413)
    assert log.seen == []
