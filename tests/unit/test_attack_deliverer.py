"""A hostile review of the deliverer's pure core: what a hostile tenant's
endpoint or a hostile producer of `deliveries` and the retry tiers can make it
do. Each test failed before its fix."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.deliveries import DeliveryTask, delivery_task_decoder
from schemas.webhooks import ClientCredentials, Webhook
from services.deliverer import oauth, retry_policy
from services.deliverer.breaker import Breakers
from services.deliverer.next_steps import (
    DeadLetter,
    Go,
    NotYetDue,
    Policy,
    Retry,
    UnknownWebhook,
    next_steps,
    triage,
)
from services.deliverer.outcomes import Failed, of_response, parse_retry_after

SCHEDULE = (5.0, 300.0, 1800.0)
POLICY = Policy(SCHEDULE, disable_after=86400.0, unknown_webhook_grace=60.0)
NOW = 1_800_000_000.0


def task(**fields: object) -> DeliveryTask:
    return DeliveryTask(webhook_id="wh_1", app_id="app_1", event_id="evt_1",
                        event_type="message.received",
                        event_created_at=datetime(2026, 1, 1, tzinfo=UTC),
                        body=msgspec.Raw(b"{}"), **fields)  # type: ignore[arg-type]


def webhook() -> Webhook:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Webhook(id="wh_1", app_id="app_1", target="https://example.com/in", triggers=["*"],
                   secret="whsec_c2VjcmV0", created_at=at, updated_at=at, version=1)


# -- a hostile endpoint ----------------------------------------------------------
@pytest.mark.parametrize("value", ["²", "³", "¹²", "1²", "٣", "１"])
def test_a_retry_after_of_unicode_digits_is_no_crash(value: str) -> None:
    """`str.isdigit` is true for superscripts, which `float` refuses: a 429
    with `Retry-After: ²` raised ValueError out of the attempt and stopped the
    deliverer, which met the same task again after every restart."""
    outcome = of_response(429, "Too Many Requests", value, datetime.now(UTC))
    assert isinstance(outcome, Failed) and outcome.status == 429
    wait = parse_retry_after(value, datetime.now(UTC))
    assert wait is None or wait >= 0


# -- a hostile producer ----------------------------------------------------------
@pytest.mark.parametrize("attempt", [0, -1, -3, -100])
def test_a_task_with_an_attempt_below_one_is_no_task(attempt: int) -> None:
    """`schedule[attempt - 1]` with a negative attempt indexes from the end or
    raises IndexError (the deliverer stopped, and crash-looped on the record)."""
    raw = msgspec.json.encode(task(attempt=attempt))
    with pytest.raises(msgspec.ValidationError):
        delivery_task_decoder.decode(raw)
    step = retry_policy.next_step(SCHEDULE, attempt, NOW)
    assert isinstance(step, retry_policy.GiveUp) or step.attempt >= 1


@given(since=st.one_of(st.floats(min_value=NOW, max_value=1e300), st.just(float("nan"))))
def test_an_unknown_webhook_task_cannot_be_kept_alive_by_its_unknown_since(since: float) -> None:
    """`unknown_since` in the future (or NaN) kept a task of an unknown webhook
    hopping through the shortest tier for ever; its grace counts from when the
    deliverer first saw it, at the latest."""
    current, now = task(unknown_since=since), NOW
    for _ in range(1000):
        plan = next_steps(current, UnknownWebhook(), failing_since=None, policy=POLICY, now=now)
        letters = [w for w in plan.writes if isinstance(w, DeadLetter)]
        if letters:
            assert letters[0].reason == "unknown webhook"
            return
        retry = next(w for w in plan.writes if isinstance(w, Retry))
        current, now = retry.task, now + retry.tier
    pytest.fail("the task was never dead-lettered")


@given(not_before=st.floats(min_value=NOW + 2 * sum(SCHEDULE) + 1, max_value=1e300))
def test_a_not_before_beyond_any_real_wait_is_no_reason_to_hop(not_before: float) -> None:
    """No wait the deliverer writes is longer than the schedule's total; a
    `not_before` well beyond that kept a task hopping through the longest tier for
    ever. Such a task is due."""
    situation = triage(task(not_before=not_before), webhook(), deleted=False, breaker_wait=0.0,
                       policy=POLICY, now=NOW)
    assert isinstance(situation, Go)


def test_a_real_not_before_is_still_waited_for() -> None:
    situation = triage(task(not_before=NOW + 1000), webhook(), deleted=False, breaker_wait=0.0,
                       policy=POLICY, now=NOW)
    assert isinstance(situation, NotYetDue)


# -- memory ------------------------------------------------------------------------
def test_breakers_of_endpoints_that_failed_long_ago_are_forgotten() -> None:
    """A tenant moving its webhook to a new path before each failing event made
    one breaker per path, kept for ever (only a success dropped one)."""
    breakers = Breakers(threshold=5, cooldown=10.0, max_cooldown=300.0)
    now = NOW
    for n in range(20_000):
        for _ in range(6 if n % 2 else 1):  # half of them trip
            breakers.failed(f"https://evil.example/{n}", now)
        now += 1.0
    assert len(breakers) < 2_000
    # A recent failure streak is kept: it still counts.
    for _ in range(5):
        breakers.failed("https://flaky.example/", now)
    assert breakers.is_open("https://flaky.example/", now)


async def test_tokens_of_credentials_changed_long_ago_are_forgotten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A token and a lock per credential set, kept for ever: a tenant changing
    its client secret before each event grew the deliverer without bound."""
    clock = [1000.0]
    monkeypatch.setattr(oauth.time, "monotonic", lambda: clock[0])
    tokens = oauth.TokenCache(None)  # type: ignore[arg-type]

    async def fetch(creds: ClientCredentials) -> tuple[str, float]:
        return f"tok-{creds.client_secret}", oauth.MIN_TTL

    monkeypatch.setattr(tokens, "_fetch", fetch)
    for n in range(10_000):
        creds = ClientCredentials(client_id="id", client_secret=f"s{n}",
                                  endpoint="https://auth.example/token")
        assert await tokens.token(creds) == f"tok-s{n}"
        clock[0] += 1.0
    assert len(tokens._tokens) < 2_000 and len(tokens._locks) < 2_000
