"""Start-up's transient Kafka client errors are demoted; real errors stay ERROR
(services/common/logs.py, issue 14 item 4)."""

from __future__ import annotations

import io
import logging
import logging.config

import pytest

from services.common.logs import SettlingKafkaErrors, logging_config


def _record(name: str, message: str, *args: object, level: int = logging.ERROR):
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("name", "message", "args"), [
    ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s",
     ("[Error 15] GroupCoordinatorNotAvailableError",)),
    ("aiokafka.consumer.fetcher", "Failed fetch offsets from %s: %s",
     (1, "[Error 6] NotLeaderForPartitionError")),
    ("aiokafka.producer.sender", "FindCoordinator Request failed: %s",
     ("[Error 15] CoordinatorNotAvailableError",)),
    ("aiokafka.cluster", "Topic %s not found in cluster metadata", ("hookbus.events",)),
])
def test_settling_errors_are_demoted_during_the_grace_only(name, message, args) -> None:
    clock = Clock()
    settling = SettlingKafkaErrors(grace=60, clock=clock)
    record = _record(name, message, *args)
    settling.filter(record)
    assert record.levelno == logging.INFO and record.levelname == "INFO"
    clock.now = 61
    late = _record(name, message, *args)
    assert settling.filter(late) and late.levelno == logging.ERROR


@pytest.mark.parametrize(("name", "message"), [
    ("aiokafka.consumer.group_coordinator", "OffsetCommit failed for group g - "
                                            "GroupAuthorizationFailedError"),
    ("aiokafka.cluster", "Topic hookbus.events is not authorized for this client"),
    ("services.router.app", "NotLeaderForPartitionError while routing evt_1"),
])
def test_other_errors_stay_errors(name: str, message: str) -> None:
    record = _record(name, message)
    assert SettlingKafkaErrors(grace=60).filter(record)
    assert record.levelno == logging.ERROR


def test_the_services_logging_drops_settling_lines_and_keeps_real_ones() -> None:
    """Through the services' own dictConfig: aiokafka logs at WARNING, so a demoted
    line is not printed at all; a real aiokafka error is."""
    config = logging_config("test", "text")
    stream = io.StringIO()
    config["handlers"]["stderr"]["stream"] = stream
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.config.dictConfig(config)
    try:
        log = logging.getLogger("aiokafka.consumer.group_coordinator")
        log.error("Group Coordinator Request failed: %s",
                  "[Error 15] GroupCoordinatorNotAvailableError")
        log.error("Heartbeat failed: %r", "real trouble")
        printed = stream.getvalue()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert "GroupCoordinatorNotAvailableError" not in printed
    assert "ERROR   Heartbeat failed" in printed
