"""The SSRF guard at attempt time, through a real aiohttp session: names are
resolved by a fixed table here (no DNS is reachable), every address class the
contract names is refused before any connection, and an allowed name is
connected to at the address that was checked."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from schemas.deliveries import DeliveryTask
from schemas.webhooks import ClientCredentials, Webhook
from services.common.config import parse_cidrs
from services.common.secrets import generate_secret
from services.common.target_policy import TargetPolicy
from services.deliverer.attempt import Attempter, guarded_session
from services.deliverer.guard import StaticResolver
from services.deliverer.outcomes import Delivered, Refused
from tests.conftest import Receiver

NAMES = {
    "loopback.test": ["127.0.0.2"],
    "private10.test": ["10.1.2.3"],
    "private172.test": ["172.20.0.5"],
    "private192.test": ["192.168.1.1"],
    "metadata.test": ["169.254.169.254"],
    "cgnat.test": ["100.100.1.1"],
    "multicast.test": ["239.1.1.1"],
    "unspecified.test": ["0.0.0.0"],
    "ula.test": ["fd12::1"],
    "linklocal6.test": ["fe80::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "rebind.test": ["127.0.0.1", "10.0.0.1"],  # one bad address is enough
    "allowed.test": ["127.0.0.1"],
}
NOW = datetime.now(UTC)


def webhook(url: str) -> Webhook:
    return Webhook(id="wh_ssrf", app_id="app_1", target=url, triggers=["*"],
                   secret=generate_secret(), created_at=NOW, updated_at=NOW)


TASK = DeliveryTask(webhook_id="wh_ssrf", app_id="app_1", event_id="evt_1",
                    event_type="message.received", event_created_at=NOW,
                    body=msgspec.Raw(b'{"id":"evt_1"}'))


@pytest.fixture
async def attempter() -> Attempter:
    policy = TargetPolicy(allow_http=True, allowed_private=parse_cidrs("127.0.0.1/32"))
    session = guarded_session(policy, None, 10, StaticResolver(NAMES))
    yield Attempter(session, policy, "hookbus/test", timeout=5)
    await session.close()


@pytest.mark.parametrize("name", [n for n in NAMES if n != "allowed.test"])
async def test_refused_before_connecting(attempter: Attempter, receiver: Receiver,
                                         name: str) -> None:
    report = await attempter.attempt(webhook(f"http://{name}:{receiver.port}/hook"), TASK)
    assert isinstance(report.outcome, Refused), report
    assert name in report.outcome.error
    assert receiver.received == []


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://[::1]:1/",
                                 "http://10.0.0.1/", "http://127.0.0.2:1/"])
async def test_literal_addresses_refused(attempter: Attempter, url: str) -> None:
    report = await attempter.attempt(webhook(url), TASK)
    assert isinstance(report.outcome, Refused), report


async def test_allowed_name_connects_to_the_checked_address(
    attempter: Attempter, receiver: Receiver
) -> None:
    report = await attempter.attempt(webhook(f"http://allowed.test:{receiver.port}/hook"), TASK)
    assert isinstance(report.outcome, Delivered), report
    assert receiver.received[0].headers["Host"] == f"allowed.test:{receiver.port}"


async def test_the_token_endpoint_is_guarded_too(attempter: Attempter, receiver: Receiver) -> None:
    hook = msgspec.structs.replace(
        webhook(f"http://allowed.test:{receiver.port}/hook"),
        client_credentials=ClientCredentials(client_id="a", client_secret="b",
                                             endpoint="http://metadata.test/token"),
    )
    report = await attempter.attempt(hook, TASK)
    assert isinstance(report.outcome, Refused), report
    assert "metadata.test" in report.outcome.error and "link-local" in report.outcome.error
    assert receiver.received == []
