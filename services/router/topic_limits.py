"""The `max.message.bytes` of the topics the router writes, read from the broker
(the topic's own setting, or the broker's default when it has none)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from services.common.config import KafkaAccess
from services.common.kafka_clients import client_options

MAX_MESSAGE_BYTES = "max.message.bytes"


async def max_message_bytes(kafka: KafkaAccess, topics: list[str]) -> dict[str, int]:
    """`max.message.bytes` of each of `topics`; raises a KafkaError (e.g.
    UnknownTopicOrPartitionError) when one cannot be read."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        responses = await admin.describe_configs([
            ConfigResource(ConfigResourceType.TOPIC, topic, {MAX_MESSAGE_BYTES: None})
            for topic in topics
        ])
    finally:
        await admin.close()
    found: dict[str, int] = {}
    for response in responses:
        for error_code, error_message, _type, name, entries in response.resources:
            if error_code:
                raise for_code(error_code)(f"{name}: {error_message}")
            for entry in entries:
                if entry[0] == MAX_MESSAGE_BYTES:
                    found[name] = int(entry[1])
    missing = set(topics) - set(found)
    if missing:
        raise KafkaError(f"no {MAX_MESSAGE_BYTES} for {', '.join(sorted(missing))}")
    return found
