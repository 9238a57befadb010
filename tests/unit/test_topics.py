"""The topics' settings (contract §3) as `Topics.specs` gives them: the event
log's retention (`HOOKBUS_EVENT_LOG_RETENTION`) on `events`, `attempts` and
`eventlog.updates`, and the event log table's changelog, named as Faust names it."""

from __future__ import annotations

import pytest

from devtools.topics import deployment_topics
from services.common.config import ConfigError, Env, event_log_retention_from_env
from services.common.topics import Topics, eventlog_app_id

DAY_MS = 86_400_000
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)  # the contract's default


def configs(topics: Topics) -> dict[str, dict[str, str]]:
    return {spec.name.removeprefix(topics.prefix): spec.config for spec in topics.specs()}


@pytest.mark.parametrize(("env", "seconds"), [
    ({}, 7 * 86400.0),
    ({"HOOKBUS_EVENT_LOG_RETENTION": "30d"}, 30 * 86400.0),
    ({"HOOKBUS_EVENT_LOG_RETENTION": "1h"}, 3600.0),
    ({"HOOKBUS_EVENT_LOG_RETENTION": "90m"}, 5400.0),
])
def test_the_event_log_retention(env: dict[str, str], seconds: float) -> None:
    assert event_log_retention_from_env(Env(env)) == seconds


@pytest.mark.parametrize(("text", "reason"), [
    ("59m", "must be at least 1h, not 59m"),
    ("0s", "must be at least 1h"),
    ("a week", "not a duration"),
])
def test_a_retention_under_an_hour_or_not_a_duration_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="HOOKBUS_EVENT_LOG_RETENTION") as raised:
        event_log_retention_from_env(Env({"HOOKBUS_EVENT_LOG_RETENTION": text}))
    assert reason in str(raised.value)


def test_by_default_events_and_attempts_are_kept_seven_days() -> None:
    found = configs(Topics("hookbus.", SCHEDULE))
    for name in ("events", "attempts", "eventlog.updates", "deliveries"):
        assert found[name] == {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    assert found["deliveries.dlq"]["retention.ms"] == str(30 * DAY_MS)


def test_the_event_log_retention_is_that_of_events_attempts_and_updates() -> None:
    topics = deployment_topics(Env({"HOOKBUS_EVENT_LOG_RETENTION": "30d",
                                    "HOOKBUS_RETRY_SCHEDULE": "1s,2s,2s"}))
    found = configs(topics)
    for name in ("events", "attempts", "eventlog.updates"):
        assert found[name] == {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}
    assert found["deliveries"]["retention.ms"] == str(7 * DAY_MS)  # not the log's
    # Kept until the last retry of the oldest event kept could be filed, plus a
    # day for compaction; compacted (the sweep's tombstones) within a day.
    assert found["eventlog-log-changelog"] == {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(30 * DAY_MS + 5_000 + DAY_MS),
        "segment.ms": str(DAY_MS),
        "max.compaction.lag.ms": str(DAY_MS),
    }


def test_the_retry_window_is_the_schedules_total_unless_given() -> None:
    assert Topics("p.", SCHEDULE).retry_window == sum(SCHEDULE)  # 10h twice: both count
    assert Topics("p.", (1, 2), retry_window=60.0).retry_window == 60.0
    changelog = configs(Topics("p.", SCHEDULE))["eventlog-log-changelog"]
    # A week and an hour at least: a webhook's hour counters live that long.
    assert changelog["retention.ms"] == str(7 * DAY_MS + 3_600_000 + sum(SCHEDULE) * 1000
                                            + DAY_MS)
    short = configs(Topics("p.", (1, 2), event_log_retention=3600.0))["eventlog-log-changelog"]
    assert short["retention.ms"] == str(7 * DAY_MS + 3_600_000 + 3_000 + DAY_MS)


def test_the_changelog_is_named_as_faust_names_the_event_logs_table() -> None:
    """Faust never declares it (topic_allow_declare=False): the name must be
    the one Faust reads and writes, `{app id}-{table}-changelog`."""
    import faust

    topics = Topics("staging.")
    app = faust.App(eventlog_app_id("staging."), topic_allow_declare=False)
    table = app.Table("log", key_type=bytes, value_type=bytes)
    assert table.changelog_topic.get_topic_name() == topics.eventlog_changelog == \
        "staging.eventlog-log-changelog"
    assert topics.eventlog_updates == "staging.eventlog.updates"
