"""The ingest service: the management API and event ingestion (contract §6).

Every write is acknowledged by Kafka (acks=all, idempotent producer; a batch of
events: one transaction) before the client hears success; every error has the
contract's shape and writes nothing.
`create_app` only wires: each API resource has its module in `routes/`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.common.kafka_clients import LATENCY_LINGER_MS, client_options
from services.common.shutdown import Shutdown
from services.ingest.http import MAX_BODY, errors_and_metrics
from services.ingest.routes import (
    apps,
    attempts,
    console,
    event_types,
    events,
    operations,
    portal_links,
    replay,
    stats,
    webhooks,
)
from services.ingest.settings import Settings
from services.ingest.state import INGEST, Ingest

log = logging.getLogger(__name__)
# How long the requests under way at a SIGTERM may still take, in all. aiohttp
# waits its `shutdown_timeout` for a request's handler, then, having aborted
# only the reading of its body, as long again before cancelling it: run_app
# gets half of this (__main__.py). A shutdown_timeout of 10 s held a request
# waiting for an unanswering broker 20 s, and ingest was SIGKILLed.
REQUESTS_GRACE = 10.0
# The Kafka clients' close, all steps together (each step also has its own
# limit; see services/common/shutdown.py): after the requests' grace, within
# Kubernetes' 20 s. Every 202 was acknowledged by Kafka before it was sent, so
# an abandoned close loses nothing a client was told.
CLOSE_BUDGET = 6.0


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors_and_metrics])
    app[INGEST] = Ingest(settings)
    app.cleanup_ctx.append(_kafka)
    app.cleanup_ctx.append(_eventlog)
    for resource in (webhooks, attempts, stats, replay, events, event_types, operations,
                     apps, portal_links, console):
        resource.add_routes(app)
    return app


async def _kafka(app: web.Application) -> AsyncIterator[None]:
    ingest = app[INGEST]
    kafka = ingest.settings.kafka
    producer = AIOKafkaProducer(
        **client_options(kafka), acks="all", enable_idempotence=True,
        linger_ms=LATENCY_LINGER_MS,
    )
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await producer.start()
    await admin.start()
    await ingest.batches.start()
    for follower_task in (await ingest.view.start(), await ingest.idempotency_follower.start()):
        follower_task.add_done_callback(_fatal_if_failed)
    ingest.producer, ingest.admin = producer, admin
    log.info("ingest connected to kafka at %s (%s)", kafka.bootstrap, kafka.security_protocol)
    try:
        yield
    finally:
        shutdown = Shutdown(CLOSE_BUDGET, log)
        await shutdown.step("closing the webhooks view", ingest.view.stop, 2.5)
        await shutdown.step("closing the idempotency follower",
                            ingest.idempotency_follower.stop, 2.5)
        await shutdown.step("stopping the batch producers", ingest.batches.stop, 2.0)
        await shutdown.step("flushing the producer", producer.stop, 2.0)
        await shutdown.step("closing the admin client", admin.close, 1.0)


async def _eventlog(app: web.Application) -> AsyncIterator[None]:
    """The event log's client: its session and its owner map's lookups. Nothing
    waits for the event log: ingest takes events while it is down."""
    client = app[INGEST].eventlog
    await client.start()
    try:
        yield
    finally:
        await client.stop()


def _fatal_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("following %s failed; exiting", task.get_name(), exc_info=task.exception())
        raise SystemExit(70)
