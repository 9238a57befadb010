"""Logging set-up for the entry points: one JSON object per line in production,
readable text under `make run` (`HOOKBUS_LOG_FORMAT=text`)."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

import msgspec

# Context a log call may pass in `extra=`; copied into the JSON object.
CONTEXT_FIELDS = ("event_id", "webhook_id", "request_id", "attempt", "duration_ms")
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


# Errors Kafka clients log while a broker's leaders and group coordinators settle
# (a fresh broker, topics just created, a restart): they retry and recover on
# their own. Named by Kafka's error class, as aiokafka's messages carry it.
TRANSIENT_KAFKA_ERRORS = (
    "NotLeaderForPartitionError", "NotLeaderOrFollowerError", "LeaderNotAvailableError",
    "GroupCoordinatorNotAvailableError", "CoordinatorNotAvailableError",
    "NotCoordinatorForGroupError", "NotCoordinatorError", "GroupLoadInProgressError",
    "CoordinatorLoadInProgressError", "UnknownTopicOrPartitionError",
)
STARTUP_GRACE = 60.0  # seconds after logging is configured


class SettlingKafkaErrors(logging.Filter):
    """Demotes to INFO, during the first `grace` seconds of a process, the ERROR
    lines of Kafka's client libraries (aiokafka, kafka) that name a transient
    error of TRANSIENT_KAFKA_ERRORS, or a topic not yet in the metadata: at
    start-up they mean "not settled yet", and the client retries. Demoted lines
    show only where their logger's level allows INFO (aiokafka's is WARNING).
    Any other error, and these same errors after the grace, stay ERROR."""

    def __init__(self, grace: float = STARTUP_GRACE, clock=time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._until = clock() + grace

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno != logging.ERROR or not record.name.startswith(("aiokafka", "kafka"))
                or self._clock() >= self._until or not _settling(record.getMessage())):
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def _settling(message: str) -> bool:
    return (any(name in message for name in TRANSIENT_KAFKA_ERRORS)
            or (message.startswith("Topic ") and message.endswith("not found in cluster metadata")))


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service:<9} %(levelname)-7s %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{name}={record.__dict__[name]}"
            for name in CONTEXT_FIELDS
            if record.__dict__.get(name) is not None
        )
        return f"{text}  [{context}]" if context else text


def logging_config(service: str, fmt: str, level: str = "INFO") -> dict:
    """A `logging.config.dictConfig` mapping (Faust's worker takes one too)."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hookbus": {"()": formatter, "service": service}},
        "filters": {"settling": {"()": SettlingKafkaErrors}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "hookbus",
                       "stream": sys.stderr, "filters": ["settling"]}
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "aiohttp.access": {"level": "WARNING"},
            # Faust and mode narrate every service start and stop at INFO.
            "faust": {"level": "WARNING"},
            "mode": {"level": "WARNING"},
        },
    }


def configure(service: str, fmt: str, level: str = "INFO") -> None:
    import logging.config

    logging.config.dictConfig(logging_config(service, fmt, level))
