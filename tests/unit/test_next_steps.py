"""What follows a delivery task: `triage` (may it go now?) and `next_steps`
(the writes after what happened), row by row, and the promises they keep
whatever happens: every scheduled attempt is real, a deferral never uses up an
attempt, the deadline is set once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.attempts import Attempt
from schemas.deliveries import DeliveryTask
from schemas.webhooks import Webhook
from services.deliverer.next_steps import (
    Attempted,
    BreakerOpen,
    CannotSign,
    DeadLetter,
    Deleted,
    Disable,
    Disabled,
    Dismissed,
    Forged,
    Go,
    NotYetDue,
    Plan,
    Policy,
    QueueFull,
    RecordAttempt,
    Retry,
    UnknownWebhook,
    next_steps,
    triage,
)
from services.deliverer.outcomes import Delivered, Failed, Gone, Refused, Report

NOW = 1_800_000_000.0
POLICY = Policy(schedule=(1.0, 2.0), disable_after=100.0, unknown_webhook_grace=60.0)
TOTAL = 3.0
TASK = DeliveryTask(webhook_id="wh_1", app_id="app_1", event_id="evt_1",
                    event_type="message.received",
                    event_created_at=datetime(2026, 11, 22, tzinfo=UTC), body=msgspec.Raw(b"{}"))
WEBHOOK = Webhook(id="wh_1", app_id="app_1", target="https://example.com/hook", triggers=["*"],
                  secret="whsec_c2VjcmV0", created_at=datetime(2026, 11, 1, tzinfo=UTC),
                  updated_at=datetime(2026, 11, 1, tzinfo=UTC))


def task(**fields: object) -> DeliveryTask:
    return msgspec.structs.replace(TASK, **fields)


def webhook(**fields: object) -> Webhook:
    return msgspec.structs.replace(WEBHOOK, **fields)


def failed(error: str = "HTTP 500", status: int | None = 500,
           retry_after: float | None = None) -> Attempted:
    return Attempted(Report(Failed(error, status, retry_after), 0.25, status, "boom"))


# -- triage --------------------------------------------------------------------
@pytest.mark.parametrize(("the_task", "the_webhook", "deleted", "breaker_wait", "expected"), [
    (TASK, WEBHOOK, False, 0.0, Go()),
    (TASK, None, False, 0.0, UnknownWebhook()),
    (TASK, None, True, 0.0, Deleted()),
    (TASK, webhook(app_id="app_2"), False, 0.0, Forged("app_2")),
    (TASK, webhook(app_id="app_2", enabled=False), False, 0.0, Forged("app_2")),
    (TASK, webhook(enabled=False), False, 0.0, Disabled()),
    (TASK, webhook(target_type="DISMISS"), False, 5.0, Dismissed()),
    (task(not_before=NOW + 5), WEBHOOK, False, 0.0, NotYetDue()),
    (task(not_before=NOW), WEBHOOK, False, 0.0, Go()),
    # An open breaker holds a task back until its deadline, never after.
    (TASK, WEBHOOK, False, 10.0, BreakerOpen(10.0)),
    (task(deadline=NOW + 1), WEBHOOK, False, 10.0, BreakerOpen(10.0)),
    (task(deadline=NOW), WEBHOOK, False, 10.0, Go()),
    (task(deadline=NOW - 1, attempt=3), WEBHOOK, False, 10.0, Go()),
], ids=["go", "unknown", "deleted", "forged", "forged-before-disabled", "disabled", "dismiss",
        "between-hops", "hops-over", "breaker", "breaker-before-deadline",
        "breaker-at-deadline", "breaker-after-deadline"])
def test_triage(the_task, the_webhook, deleted, breaker_wait, expected) -> None:
    assert triage(the_task, the_webhook, deleted=deleted, breaker_wait=breaker_wait,
                  policy=POLICY, now=NOW) == expected


# -- next_steps, row by row ------------------------------------------------------
def plan(situation, the_task: DeliveryTask = TASK, failing_since: float | None = None,
         policy: Policy = POLICY) -> Plan:
    return next_steps(the_task, situation, failing_since=failing_since, policy=policy, now=NOW)


def kinds(p: Plan) -> list[str]:
    return [type(w).__name__ for w in p.writes]


def only(p: Plan, kind: type):  # noqa: ANN201
    (found,) = [w for w in p.writes if isinstance(w, kind)]
    return found


def attempt_of(p: Plan) -> Attempt:
    """The plan's one attempt record that is not a dead letter's."""
    (found,) = [w.attempt for w in p.writes
                if isinstance(w, RecordAttempt) and w.attempt.result != "dead"]
    return found


def dead_row(p: Plan) -> Attempt:
    """The attempt record of the plan's dead letter."""
    (found,) = [w.attempt for w in p.writes
                if isinstance(w, RecordAttempt) and w.attempt.result == "dead"]
    return found


def test_delivered() -> None:
    p = plan(Attempted(Report(Delivered(204), 0.05, 204, None)), failing_since=NOW - 50)
    assert (kinds(p), p.outcome, p.failing_since) == (["RecordAttempt"], "success", None)
    record = only(p, RecordAttempt).attempt
    assert (record.result, record.attempt, record.status_code, record.latency_ms) == \
        ("success", 1, 204, 50.0)


def test_failed_then_retried_on_the_schedule() -> None:
    p = plan(failed())
    assert (kinds(p), p.outcome, p.failing_since) == (["RecordAttempt", "Retry"], "retry", NOW)
    record = only(p, RecordAttempt).attempt
    assert (record.result, record.error, record.response) == ("failure", "HTTP 500", "boom")
    retry = only(p, Retry)
    assert retry.tier == 1.0
    assert (retry.task.attempt, retry.task.due_at, retry.task.not_before) == (2, NOW + 1, None)
    assert retry.task.deadline == NOW + TOTAL and retry.task.tried
    assert retry.task.last_error == "HTTP 500"


def test_the_deadline_is_set_once() -> None:
    p = plan(failed(), task(attempt=2, deadline=NOW - 0.5, tried=True), failing_since=NOW - 1)
    retry = only(p, Retry)
    assert (retry.tier, retry.task.attempt, retry.task.deadline) == (2.0, 3, NOW - 0.5)
    assert p.failing_since == NOW - 1


def test_the_last_attempt_failed_is_a_dead_letter() -> None:
    p = plan(failed(), task(attempt=3, deadline=NOW, due_at=NOW, not_before=NOW - 1))
    assert (kinds(p), p.outcome) == (["RecordAttempt", "DeadLetter", "RecordAttempt"], "dead")
    assert attempt_of(p).result == "failure"
    letter = only(p, DeadLetter).task
    assert letter.last_error == "HTTP 500" and letter.attempt == 3
    assert (letter.due_at, letter.not_before, letter.deadline) == (None, None, None)
    dead = dead_row(p)
    assert (dead.result, dead.error, dead.attempt, dead.at) == \
        ("dead", "HTTP 500", 3, datetime.fromtimestamp(NOW, UTC))
    assert (dead.status_code, dead.response, dead.retry_at) == (None, None, None)


@pytest.mark.parametrize(("retry_after", "tier", "due", "not_before"), [
    (2.0, 2.0, NOW + 2, None),          # longer than the schedule's 1s: honoured
    (1.5, 1.0, NOW + 1, NOW + 1.5),     # between tiers: hops, never behind a longer tier
    (0.5, 1.0, NOW + 1, None),          # shorter than the schedule: the schedule
    (3600.0, 2.0, NOW + 2, None),       # capped at the longest delay
])
def test_retry_after(retry_after: float, tier: float, due: float, not_before) -> None:
    retry = only(plan(failed("HTTP 429", 429, retry_after)), Retry)
    assert (retry.tier, retry.task.due_at, retry.task.not_before) == (tier, due, not_before)


def test_a_failure_streak_as_long_as_disable_after_disables() -> None:
    p = plan(failed(), failing_since=NOW - 100)
    assert kinds(p) == ["RecordAttempt", "Disable", "Retry"]
    assert only(p, Disable).reason == "every attempt failed for 100s"
    assert p.failing_since is None
    assert kinds(plan(failed(), failing_since=NOW - 99)) == ["RecordAttempt", "Retry"]


def test_gone_disables_and_dead_letters() -> None:
    p = plan(Attempted(Report(Gone("HTTP 410 Gone"), 0.1, 410, None)), failing_since=NOW - 5)
    assert (kinds(p), p.outcome, p.failing_since) == \
        (["RecordAttempt", "Disable", "DeadLetter", "RecordAttempt"], "dead", None)
    assert attempt_of(p).result == "gone"
    assert "410" in only(p, Disable).reason
    assert (dead_row(p).result, dead_row(p).error) == ("dead", "HTTP 410 Gone")


def test_refused_is_dead_lettered_unsent() -> None:
    p = plan(Attempted(Report(Refused("target resolves to 10.0.0.1"), 0.0)))
    assert (kinds(p), p.outcome) == (["RecordAttempt", "DeadLetter", "RecordAttempt"], "refused")
    assert attempt_of(p).result == "refused"
    assert dead_row(p).error == "target resolves to 10.0.0.1"


@pytest.mark.parametrize(("wait", "the_task", "tier", "not_before"), [
    (10.0, TASK, 2.0, NOW + 3),                        # until the deadline (now + 3s)
    (0.5, TASK, 1.0, None),                            # at least the shortest tier
    (10.0, task(deadline=NOW + 1.5), 1.0, NOW + 1.5),  # never past the deadline
])
def test_an_open_breaker_defers_without_using_an_attempt(wait, the_task, tier, not_before):
    p = plan(BreakerOpen(wait), the_task)
    assert (kinds(p), p.outcome) == (["RecordAttempt", "Retry"], "deferred")
    record = only(p, RecordAttempt).attempt
    assert record.result == "deferred" and "circuit open" in record.error
    assert record.attempt == 1 and record.retry_at is not None
    retry = only(p, Retry)
    assert (retry.tier, retry.task.attempt, retry.task.not_before) == (tier, 1, not_before)
    assert retry.task.deadline == (the_task.deadline or NOW + TOTAL)


@pytest.mark.parametrize(("wait", "tier", "not_before"), [
    (0.0, 1.0, None),            # at least the shortest tier
    (1.5, 1.0, NOW + 1.5),       # as long as it would have waited in the queue
    (600.0, 2.0, NOW + TOTAL),   # never past its deadline
])
def test_a_full_queue_defers_as_long_as_the_task_would_have_waited(wait, tier, not_before):
    retry = only(plan(QueueFull("the app's queue is full", wait)), Retry)
    assert (retry.tier, retry.task.not_before, retry.task.attempt) == (tier, not_before, 1)


def test_a_full_queue_defers_until_the_deadline_then_dead_letters() -> None:
    p = plan(QueueFull("the endpoint's queue is full"), task(attempt=2, deadline=NOW + 1))
    assert (kinds(p), p.outcome) == (["RecordAttempt", "Retry"], "deferred")
    assert only(p, RecordAttempt).attempt.error == "the endpoint's queue is full"
    assert only(p, Retry).task.attempt == 2 and only(p, Retry).tier == 1.0
    late = plan(QueueFull("the endpoint's queue is full"),
                task(attempt=2, deadline=NOW, last_error="HTTP 503"))
    assert (kinds(late), late.outcome) == (["DeadLetter", "RecordAttempt"], "dead")
    assert only(late, DeadLetter).reason == dead_row(late).error == \
        "the endpoint's queue is full until the task's deadline (last error: HTTP 503)"
    assert dead_row(late).attempt == 2


def test_an_unknown_webhook_is_deferred_for_the_grace_then_dead_lettered() -> None:
    p = plan(UnknownWebhook())
    assert (kinds(p), p.outcome) == (["RecordAttempt", "Retry"], "deferred")
    deferred = only(p, Retry).task
    assert (deferred.unknown_since, deferred.attempt, deferred.deadline) == (NOW, 1, None)
    assert "unknown webhook" in only(p, RecordAttempt).attempt.error
    again = plan(UnknownWebhook(), task(unknown_since=NOW - 59))
    assert only(again, Retry).task.unknown_since == NOW - 59
    late = plan(UnknownWebhook(), task(unknown_since=NOW - 60))
    assert (kinds(late), late.outcome) == (["DeadLetter", "RecordAttempt"], "dead")
    assert only(late, DeadLetter).task.last_error == dead_row(late).error == "unknown webhook"


def test_nothing_is_written_for_a_dismissed_target() -> None:
    p = plan(Dismissed(), failing_since=NOW - 3)
    assert (p.writes, p.outcome, p.failing_since) == ((), "dismissed", NOW - 3)


@pytest.mark.parametrize(("situation", "reason"), [
    (Deleted(), "the webhook was deleted"), (Disabled(), "the webhook is disabled"),
])
def test_a_dropped_task_is_recorded_not_sent(situation, reason: str) -> None:
    """The event log (issue 11) counts it as `dropped`: it needs a record."""
    p = plan(situation, task(attempt=2), failing_since=NOW - 3)
    assert (kinds(p), p.outcome, p.failing_since) == (["RecordAttempt"], "dropped", NOW - 3)
    record = only(p, RecordAttempt).attempt
    assert (record.result, record.error, record.attempt) == ("dropped", reason, 2)


def test_every_attempt_record_names_its_app_and_its_events_time() -> None:
    for situation in (failed(), Attempted(Report(Delivered(200), 0.1, 200)), Deleted(),
                      BreakerOpen(1.0), QueueFull("full", 1.0), UnknownWebhook()):
        for write in plan(situation).writes:
            if isinstance(write, RecordAttempt):
                assert (write.attempt.app_id, write.attempt.event_created_at) == \
                    (TASK.app_id, TASK.event_created_at)


@pytest.mark.parametrize(("the_task", "the_webhook", "expected"), [
    (TASK, WEBHOOK, CannotSign("sealed under key 'k1'")),
    (TASK, webhook(app_id="app_2"), Forged("app_2")),      # forged first: never signed
    (TASK, webhook(enabled=False), Disabled()),
    (TASK, webhook(target_type="DISMISS"), Dismissed()),   # nothing to sign
    (task(not_before=NOW + 5), WEBHOOK, NotYetDue()),
])
def test_triage_of_a_webhook_whose_secrets_cannot_be_opened(the_task, the_webhook,
                                                            expected) -> None:
    assert triage(the_task, the_webhook, deleted=False, breaker_wait=10.0, policy=POLICY,
                  now=NOW, secret_problem="sealed under key 'k1'") == expected


def test_a_secret_that_cannot_be_opened_defers_without_an_attempt_or_a_streak() -> None:
    """The platform's fault, not the endpoint's: no attempt used, the failure
    streak untouched (so the webhook is never disabled for it); at the deadline a
    dead letter, to be replayed once the key is back."""
    p = plan(CannotSign("sealed under key 'k1'"), task(attempt=2), failing_since=None)
    assert (kinds(p), p.outcome, p.failing_since) == (["RecordAttempt", "Retry"], "deferred", None)
    record = only(p, RecordAttempt).attempt
    assert (record.result, record.error) == ("deferred", "cannot sign: sealed under key 'k1'")
    assert only(p, Retry).task.attempt == 2 and only(p, Retry).task.deadline == NOW + TOTAL
    streak = plan(CannotSign("x"), failing_since=NOW - 10 * POLICY.disable_after)
    assert "Disable" not in kinds(streak) and streak.failing_since == NOW - 1000
    late = plan(CannotSign("sealed under key 'k1'"), task(deadline=NOW))
    assert (kinds(late), late.outcome) == (["DeadLetter", "RecordAttempt"], "dead")
    assert only(late, DeadLetter).reason == dead_row(late).error == \
        "cannot sign: sealed under key 'k1'"


def test_a_forged_task_is_dead_lettered_never_attempted() -> None:
    p = plan(Forged("app_2"))
    assert (kinds(p), p.outcome) == (["DeadLetter", "RecordAttempt"], "dead")
    assert only(p, DeadLetter).reason.startswith("forged: webhook wh_1 belongs to app app_2")
    assert dead_row(p).error == only(p, DeadLetter).reason


def test_a_task_between_hops_hops_on_unrecorded() -> None:
    p = plan(NotYetDue(), task(attempt=2, due_at=NOW, not_before=NOW + 5, deadline=NOW + 9))
    assert (kinds(p), p.outcome) == (["Retry"], "hop")
    retry = only(p, Retry)
    assert (retry.tier, retry.task.due_at, retry.task.not_before) == (2.0, NOW + 2, NOW + 5)
    assert (retry.task.attempt, retry.task.deadline) == (2, NOW + 9)
    last = only(plan(NotYetDue(), task(not_before=NOW + 0.4)), Retry)
    assert (last.tier, last.task.due_at, last.task.not_before) == (1.0, NOW + 1, None)


def test_without_retry_tiers_what_would_wait_is_dead_lettered() -> None:
    none = Policy(schedule=(), disable_after=100.0, unknown_webhook_grace=60.0)
    for situation in (failed(), BreakerOpen(5.0), UnknownWebhook()):
        assert plan(situation, policy=none).outcome == "dead"
    assert plan(QueueFull("full"), policy=none).outcome == "dead"  # deadline = now
    hop = plan(NotYetDue(), task(not_before=NOW + 1, last_error="HTTP 502"), policy=none)
    assert (kinds(hop), hop.outcome) == (["DeadLetter", "RecordAttempt"], "dead")
    assert dead_row(hop).error == "HTTP 502"


def test_a_task_that_may_go_is_not_planned_for() -> None:
    with pytest.raises(ValueError):
        plan(Go())


# -- properties ----------------------------------------------------------------
schedules = st.lists(st.sampled_from([1.0, 2.0, 5.0, 30.0, 300.0]), min_size=1, max_size=5)


@given(schedules, st.lists(st.floats(0.0, 400.0), min_size=1, max_size=50))
def test_a_dead_endpoint_behind_an_open_breaker_gets_every_scheduled_attempt(
    schedule: list[float], breaker_waits: list[float]
) -> None:
    """Whatever the breaker says, a task for an endpoint that always fails gets
    1 + len(schedule) real attempts, then one dead letter; deferrals never use up
    an attempt; the deadline, once set, never moves."""
    policy = Policy(tuple(schedule), disable_after=10**9, unknown_webhook_grace=60.0)
    now, current, attempts, deadline = NOW, TASK, 0, None
    for step in range(10**4):
        breaker_wait = breaker_waits[step % len(breaker_waits)]
        situation = triage(current, WEBHOOK, deleted=False, breaker_wait=breaker_wait,
                           policy=policy, now=now)
        if isinstance(situation, Go):
            attempts += 1
            situation = failed()
        p = next_steps(current, situation, failing_since=None, policy=policy, now=now)
        if any(isinstance(w, DeadLetter) for w in p.writes):
            break
        retry = only(p, Retry)
        if deadline is None:
            deadline = retry.task.deadline
        assert retry.task.deadline == deadline == NOW + sum(schedule)
        expected_attempt = current.attempt + (1 if p.outcome == "retry" else 0)
        assert retry.task.attempt == expected_attempt
        assert retry.task.due_at == now + retry.tier and retry.tier in schedule
        current, now = retry.task, retry.task.due_at
    else:
        pytest.fail("never dead-lettered")
    assert attempts == 1 + len(schedule) == current.attempt


situations = st.one_of(
    st.builds(lambda s, e, r: failed(e, s, r), st.sampled_from([500, 429, 503, None]),
              st.just("HTTP 5xx"), st.none() | st.floats(0, 10**5)),
    st.builds(lambda s: Attempted(Report(Delivered(s), 0.1, s)), st.integers(200, 299)),
    st.just(Attempted(Report(Gone("HTTP 410"), 0.1, 410))),
    st.just(Attempted(Report(Refused("private"), 0.0))),
    st.builds(BreakerOpen, st.floats(0, 10**4)),
    st.builds(QueueFull, st.just("full"), st.floats(0, 10**5)),
    st.just(UnknownWebhook()), st.just(Deleted()), st.just(Disabled()), st.just(Dismissed()),
    st.just(Forged("app_2")), st.just(CannotSign("sealed under key 'k1'")),
)


@given(schedules, situations, st.integers(1, 8), st.none() | st.floats(-100, 100),
       st.none() | st.floats(0, 120), st.none() | st.floats(0, 200))
def test_every_plan_is_well_formed(schedule, situation, attempt, deadline_in, unknown_for,
                                   failing_for) -> None:
    policy = Policy(tuple(schedule), disable_after=100.0, unknown_webhook_grace=60.0)
    the_task = task(attempt=attempt,
                    deadline=None if deadline_in is None else NOW + deadline_in,
                    unknown_since=None if unknown_for is None else NOW - unknown_for)
    p = next_steps(the_task, situation, policy=policy, now=NOW,
                   failing_since=None if failing_for is None else NOW - failing_for)
    retries = [w for w in p.writes if isinstance(w, Retry)]
    letters = [w for w in p.writes if isinstance(w, DeadLetter)]
    assert len(retries) + len(letters) <= 1  # the task goes on, or ends, not both
    every_record = [w.attempt for w in p.writes if isinstance(w, RecordAttempt)]
    assert all(r.attempt == attempt for r in every_record)
    assert all((r.app_id, r.event_created_at, r.origin) ==
               (the_task.app_id, the_task.event_created_at, the_task.origin)
               for r in every_record)
    # A dead letter, and only a dead letter, comes with a `dead` record of its
    # reason, after the attempt's own record.
    dead = [r for r in every_record if r.result == "dead"]
    assert [(r.error, r.at) for r in dead] == \
        [(letter.reason, datetime.fromtimestamp(NOW, UTC)) for letter in letters]
    if dead:
        at = next(i for i, w in enumerate(p.writes)
                  if isinstance(w, RecordAttempt) and w.attempt.result == "dead")
        assert at > p.writes.index(letters[0]) and every_record[-1] is dead[0]
    records = [r for r in every_record if r.result != "dead"]
    assert len(records) <= 1
    if isinstance(situation, Attempted):
        assert len(records) == 1 and records[0].result != "deferred"
    for retry in retries:
        assert retry.tier in schedule and retry.task.due_at == NOW + retry.tier
        assert retry.task.not_before is None or retry.task.not_before > retry.task.due_at
        if p.outcome == "retry":
            assert retry.task.attempt == attempt + 1
        else:
            assert p.outcome == "deferred" and retry.task.attempt == attempt
            assert records and records[0].result == "deferred" and records[0].error
        if the_task.deadline is not None:
            assert retry.task.deadline == the_task.deadline
    for letter in letters:
        assert letter.task.last_error == letter.reason and letter.task.due_at is None
    assert p.outcome in {"success", "retry", "deferred", "dead", "dismissed", "refused",
                         "dropped"}


# -- dead letters and origins in the attempts log -------------------------------
@pytest.mark.parametrize(("situation", "the_task", "reason", "before"), [
    (failed(), task(attempt=3), "HTTP 500", ["RecordAttempt"]),
    (Attempted(Report(Gone("HTTP 410 Gone"), 0.1, 410, None)), TASK, "HTTP 410 Gone",
     ["RecordAttempt", "Disable"]),
    (Attempted(Report(Refused("target resolves to 10.0.0.1"), 0.0)), TASK,
     "target resolves to 10.0.0.1", ["RecordAttempt"]),
    (Forged("app_2"), TASK, "forged: webhook wh_1 belongs to app app_2, not app_1", []),
    (UnknownWebhook(), task(unknown_since=NOW - 60), "unknown webhook", []),
    (QueueFull("the app's queue is full"), task(deadline=NOW),
     "the app's queue is full until the task's deadline", []),
    (CannotSign("sealed under key 'k1'"), task(deadline=NOW),
     "cannot sign: sealed under key 'k1'", []),
], ids=["last-failure", "gone", "refused", "forged", "unknown-past-grace",
        "queue-full-past-deadline", "cannot-sign-past-deadline"])
def test_every_dead_letter_is_recorded_as_dead(situation, the_task: DeliveryTask, reason: str,
                                              before: list[str]) -> None:
    """The event log (issue 11) shows how each delivery ended: a dead letter
    leaves a `dead` row in `attempts`, with the letter's reason, after the
    attempt's own record."""
    p = plan(situation, the_task)
    assert kinds(p) == [*before, "DeadLetter", "RecordAttempt"]
    dead = dead_row(p)
    assert dead == Attempt(webhook_id="wh_1", event_id="evt_1", event_type="message.received",
                           attempt=the_task.attempt, at=datetime.fromtimestamp(NOW, UTC),
                           result="dead", error=reason, app_id="app_1",
                           event_created_at=TASK.event_created_at)
    assert only(p, DeadLetter).reason == reason


@pytest.mark.parametrize("origin", ["", "test", "replay:job_1", "resend:rs_1"])
def test_every_record_carries_the_tasks_origin_and_retries_keep_it(origin: str) -> None:
    the_task = task(origin=origin)
    for situation in (failed(), Attempted(Report(Delivered(200), 0.1, 200)), Deleted(),
                      BreakerOpen(1.0), QueueFull("full", 1.0), UnknownWebhook(), Forged("x"),
                      Attempted(Report(Gone("HTTP 410"), 0.1, 410))):
        p = plan(situation, the_task)
        for write in p.writes:
            match write:
                case RecordAttempt(attempt):
                    assert attempt.origin == origin
                case Retry(_, retried) | DeadLetter(retried, _):
                    assert retried.origin == origin


def test_records_without_an_origin_still_decode_and_new_results_are_skipped_by_old_readers(
) -> None:
    """Schema evolution: a record written before `origin` decodes as "";
    `origin` is left out when empty; a reader that does not know `dead` fails
    to decode the record (and skips it), as it did for `dropped`."""
    from schemas.attempts import attempt_decoder
    from schemas.deliveries import delivery_task_decoder

    old = (b'{"webhook_id": "wh_1", "event_id": "evt_1", "event_type": "message.received",'
           b' "attempt": 1, "at": "2026-11-22T00:00:00Z", "result": "failure"}')
    assert attempt_decoder.decode(old).origin == ""
    assert b"origin" not in msgspec.json.encode(TASK)
    assert delivery_task_decoder.decode(msgspec.json.encode(task(origin="test"))).origin == "test"
    dead = msgspec.json.encode(dead_row(plan(Forged("app_2"))))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(dead, type=_AttemptBeforeDead)


class _AttemptBeforeDead(msgspec.Struct, kw_only=True):
    result: Literal["success", "failure", "gone", "refused", "deferred", "dropped"]
