"""What follows a delivery task, as data (house style habits 1 and 5). Pure.

`triage` says whether a task may be attempted now, or what stands in its way
(its webhook is unknown, deleted, disabled or another app's; its secrets cannot
be opened; it waits between hops; its endpoint's breaker is open). `next_steps` turns what happened to the
task (an attempt's report, or what stood in its way) into the writes that
follow it: an attempt record, a retry or deferral on a tier, a dead letter, a
disable. Every dead letter comes with an attempt record of result `dead` (its
reason in `error`), after the attempt's own record if there was an attempt, so
that the attempts log (and the event log) shows how every series ended. Every
attempt record carries the task's app, event time and origin. The deliverer's shell performs them, all acknowledged before the
task's offset may be committed.

Deadlines: a task's `deadline` is set once, when the deliverer first handles
it: then plus the schedule's total. Until then an open breaker defers it
without using up an attempt; after it, the breaker no longer holds it back, so
every attempt of the schedule reaches the endpoint. A task whose queue is full
is deferred for about as long as it would have waited there (never past its
deadline), and dead-lettered once past its deadline; one whose webhook stays
unknown, `unknown_webhook_grace` after its first deferral."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from schemas.attempts import Attempt, AttemptResult
from schemas.deliveries import DeliveryTask
from schemas.webhooks import Webhook
from services.deliverer import retry_policy
from services.deliverer.outcomes import Delivered, Failed, Gone, Refused, Report


CANNOT_SIGN_WAIT = 60.0  # seconds between looks at a webhook whose secrets cannot be opened


@dataclass(frozen=True, slots=True)
class Policy:
    schedule: tuple[float, ...]
    disable_after: float
    unknown_webhook_grace: float

    def deadline_of(self, task: DeliveryTask, now: float) -> float:
        return task.deadline if task.deadline is not None else now + sum(self.schedule)


# -- what happened to a task ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class Go:
    """Nothing stands in the way: attempt it."""


@dataclass(frozen=True, slots=True)
class Attempted:
    report: Report


@dataclass(frozen=True, slots=True)
class BreakerOpen:
    wait: float  # until the breaker lets a probe through


@dataclass(frozen=True, slots=True)
class QueueFull:
    reason: str
    wait: float = 0.0  # how long it would have waited in the queue


@dataclass(frozen=True, slots=True)
class UnknownWebhook:
    pass


@dataclass(frozen=True, slots=True)
class Deleted:
    pass


@dataclass(frozen=True, slots=True)
class Disabled:
    pass


@dataclass(frozen=True, slots=True)
class Forged:
    owner: str  # the app that does own the webhook


@dataclass(frozen=True, slots=True)
class CannotSign:
    """The webhook's secrets cannot be opened (their sealing key is not
    configured): the platform's fault, not the endpoint's."""

    problem: str


@dataclass(frozen=True, slots=True)
class Dismissed:
    pass


@dataclass(frozen=True, slots=True)
class NotYetDue:
    """Out of a tier before its wait is over: hop on."""


Situation = (Go | Attempted | BreakerOpen | QueueFull | UnknownWebhook | Deleted | Disabled
             | Forged | Dismissed | NotYetDue | CannotSign)


# -- what to write -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RecordAttempt:
    attempt: Attempt


@dataclass(frozen=True, slots=True)
class Retry:
    tier: float          # the delay naming the retry topic
    task: DeliveryTask   # as written there


@dataclass(frozen=True, slots=True)
class DeadLetter:
    task: DeliveryTask   # as written to deliveries.dlq, `last_error` = reason
    reason: str


@dataclass(frozen=True, slots=True)
class Disable:
    reason: str


Write = RecordAttempt | Retry | DeadLetter | Disable


@dataclass(frozen=True, slots=True)
class Plan:
    writes: tuple[Write, ...]
    outcome: str                 # the label of hookbus_deliveries_total
    failing_since: float | None  # the webhook's failure streak after this task
    note: str = ""               # one log line


def triage(task: DeliveryTask, webhook: Webhook | None, *, deleted: bool, breaker_wait: float,
           policy: Policy, now: float, secret_problem: str | None = None) -> Situation:
    """Whether `task` may be attempted now. `deleted`: a tombstone of its
    webhook was seen; `breaker_wait`: seconds its endpoint's breaker stays open;
    `secret_problem`: why its secrets cannot be opened, if they cannot."""
    if webhook is None:
        return Deleted() if deleted else UnknownWebhook()
    if webhook.app_id != task.app_id:
        return Forged(webhook.app_id)
    if not webhook.enabled:
        return Disabled()
    if webhook.target_type == "DISMISS":
        return Dismissed()
    # No wait the deliverer writes is longer than the schedule's total: a far
    # later `not_before` was not written by it, and would keep the task hopping
    # for ever (twice the total leaves room for clocks).
    if task.not_before is not None and now < task.not_before <= now + 2 * sum(policy.schedule):
        return NotYetDue()
    if secret_problem is not None:
        return CannotSign(secret_problem)
    if breaker_wait > 0 and now < policy.deadline_of(task, now):
        return BreakerOpen(breaker_wait)
    return Go()


def next_steps(task: DeliveryTask, situation: Situation, *, failing_since: float | None,
               policy: Policy, now: float) -> Plan:
    """The writes that follow `task` after `situation`, at `now`."""
    match situation:
        case Attempted(report):
            return _after_attempt(task, report, failing_since, policy, now)
        case BreakerOpen(wait):
            deadline = policy.deadline_of(task, now)
            return _defer(task, min(wait, max(0.0, deadline - now)),
                          "circuit open: the endpoint keeps failing", failing_since, policy, now)
        case QueueFull(reason, wait):
            deadline = policy.deadline_of(task, now)
            if now >= deadline:
                why = f"{reason} until the task's deadline" + (
                    f" (last error: {task.last_error})" if task.last_error else "")
                return _dead(task, why, "dead", failing_since, now)
            # About as long as it would have waited: no churn through a full queue.
            return _defer(task, min(wait, deadline - now), reason, failing_since, policy, now)
        case CannotSign(problem):
            # Deferred, not failed: no attempt used, no failure streak (so never
            # disabled for it); dead-lettered at the deadline, to be replayed
            # once the key is back.
            reason = f"cannot sign: {problem}"
            deadline = policy.deadline_of(task, now)
            if now >= deadline:
                return _dead(task, reason, "dead", failing_since, now)
            return _defer(task, min(CANNOT_SIGN_WAIT, deadline - now), reason, failing_since,
                          policy, now)
        case UnknownWebhook():
            since = task.unknown_since
            if since is None or not since <= now:  # one from the future (or NaN) is forged
                since = now
            if now - since >= policy.unknown_webhook_grace:
                return _dead(task, "unknown webhook", "dead", failing_since, now)
            waiting = msgspec.structs.replace(task, unknown_since=since)
            return _defer(waiting, 0.0, "unknown webhook: not known to the deliverer yet",
                          failing_since, policy, now, keep_deadline=True)
        case Deleted():
            return _dropped(task, "the webhook was deleted", failing_since, now)
        case Disabled():
            return _dropped(task, "the webhook is disabled", failing_since, now)
        case Forged(owner):
            return _dead(task, f"forged: webhook {task.webhook_id} belongs to app {owner}, "
                               f"not {task.app_id}", "dead", failing_since, now)
        case Dismissed():
            return Plan((), "dismissed", failing_since)
        case NotYetDue():
            assert task.not_before is not None
            step = retry_policy.deferral(policy.schedule, task.attempt, now, task.not_before - now)
            if isinstance(step, retry_policy.GiveUp):
                return _dead(task, task.last_error or step.reason, "dead", failing_since, now)
            hopped = msgspec.structs.replace(task, due_at=step.due_at, not_before=step.not_before)
            return Plan((Retry(step.tier, hopped),), "hop", failing_since)
        case Go():
            raise ValueError("a task that may go is attempted, not planned for")


def _after_attempt(task: DeliveryTask, report: Report, failing_since: float | None,
                   policy: Policy, now: float) -> Plan:
    outcome = report.outcome
    match outcome:
        case Delivered(status):
            record = _record(task, "success", now, report)
            return Plan((record,), "success", None, f"delivered (HTTP {status})")
        case Gone(error):
            return Plan((_record(task, "gone", now, report),
                         Disable(f"the target answered {error}"),
                         *_dead_letter(task, error, now)),
                        "dead", None, f"not retried: {error}")
        case Refused(error):
            return Plan((_record(task, "refused", now, report),
                         *_dead_letter(task, error, now)),
                        "refused", failing_since, f"not retried: {error}")
        case Failed(error, _, retry_after):
            since = failing_since if failing_since is not None else now
            writes: list[Write] = [_record(task, "failure", now, report)]
            if now - since >= policy.disable_after:
                writes.append(Disable(f"every attempt failed for {policy.disable_after:g}s"))
                since = None
            step = retry_policy.next_step(policy.schedule, task.attempt, now,
                                          retry_after=retry_after)
            if isinstance(step, retry_policy.GiveUp):
                writes.extend(_dead_letter(task, error, now))
                return Plan(tuple(writes), "dead", since,
                            f"dead letter after {step.reason}: {error}")
            retry = msgspec.structs.replace(
                task, attempt=step.attempt, due_at=step.due_at, not_before=step.not_before,
                deadline=policy.deadline_of(task, now), unknown_since=None, tried=True,
                last_error=error)
            writes.append(Retry(step.tier, retry))
            due = step.not_before or step.due_at
            return Plan(tuple(writes), "retry", since,
                        f"attempt failed ({error}); retry {step.attempt} due in {due - now:.1f}s")
    raise TypeError(f"not an attempt's outcome: {outcome!r}")


def _defer(task: DeliveryTask, wait: float, reason: str, failing_since: float | None,
           policy: Policy, now: float, *, keep_deadline: bool = False) -> Plan:
    """Wait `wait` seconds (at least the shortest tier) without using up an
    attempt; the attempts log shows why."""
    step = retry_policy.deferral(policy.schedule, task.attempt, now, wait)
    if isinstance(step, retry_policy.GiveUp):
        return _dead(task, reason, "dead", failing_since, now)
    deadline = task.deadline if keep_deadline else policy.deadline_of(task, now)
    deferred = msgspec.structs.replace(task, due_at=step.due_at, not_before=step.not_before,
                                       deadline=deadline)
    retry_at = step.not_before or step.due_at
    record = RecordAttempt(Attempt(
        webhook_id=task.webhook_id, event_id=task.event_id, event_type=task.event_type,
        attempt=task.attempt, at=_time(now), result="deferred", error=reason,
        retry_at=_time(retry_at), app_id=task.app_id, event_created_at=task.event_created_at,
        origin=task.origin))
    return Plan((record, Retry(step.tier, deferred)), "deferred", failing_since,
                f"deferred {retry_at - now:.1f}s: {reason}")


def _dead(task: DeliveryTask, reason: str, outcome: str,
          failing_since: float | None, now: float) -> Plan:
    return Plan(_dead_letter(task, reason, now), outcome, failing_since,
                f"dead letter: {reason}")


def _dead_letter(task: DeliveryTask, reason: str, now: float) -> tuple[DeadLetter, RecordAttempt]:
    """The dead letter, and its record in the attempts log (result `dead`)."""
    record = RecordAttempt(Attempt(
        webhook_id=task.webhook_id, event_id=task.event_id, event_type=task.event_type,
        attempt=task.attempt, at=_time(now), result="dead", error=reason,
        app_id=task.app_id, event_created_at=task.event_created_at, origin=task.origin))
    return DeadLetter(_letter(task, reason), reason), record


def _letter(task: DeliveryTask, reason: str) -> DeliveryTask:
    """The task as a dead letter: its last error, and none of its timing (a
    replay starts a new series)."""
    return msgspec.structs.replace(task, due_at=None, not_before=None, deadline=None,
                                   unknown_since=None, last_error=reason)


def _record(task: DeliveryTask, result: AttemptResult, now: float,
            report: Report) -> RecordAttempt:
    return RecordAttempt(Attempt(
        webhook_id=task.webhook_id, event_id=task.event_id, event_type=task.event_type,
        attempt=task.attempt, at=_time(now), result=result,
        latency_ms=round(report.latency * 1000, 2), status_code=report.status_code,
        error=getattr(report.outcome, "error", None), response=report.excerpt,
        app_id=task.app_id, event_created_at=task.event_created_at, origin=task.origin,
    ))


def _dropped(task: DeliveryTask, reason: str, failing_since: float | None,
             now: float) -> Plan:
    """Not sent, and not retried: recorded, so that the event log can say so."""
    record = RecordAttempt(Attempt(
        webhook_id=task.webhook_id, event_id=task.event_id, event_type=task.event_type,
        attempt=task.attempt, at=_time(now), result="dropped", error=reason,
        app_id=task.app_id, event_created_at=task.event_created_at, origin=task.origin))
    return Plan((record,), "dropped", failing_since, f"dropped: {reason}")


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
