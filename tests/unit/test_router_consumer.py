"""The router's consumer leans on two aiokafka internals (read_committed.py):
the consumer's `_isolation_level`, read when it starts, and its fetcher's
`_prefetch_backoff`, read at every fetch. An upgrade that renamed either would
leave the attribute set and unused; these fail first."""

from __future__ import annotations

import inspect

from aiokafka.consumer import consumer, fetcher

from services.router.read_committed import PREFETCH_BACKOFF_SECONDS


def test_the_fetcher_still_reads_its_prefetch_backoff_at_every_fetch() -> None:
    assert inspect.signature(fetcher.Fetcher).parameters["prefetch_backoff"].default == 0.1
    source = inspect.getsource(fetcher.Fetcher)
    assert "self._prefetch_backoff = prefetch_backoff" in source
    assert "backoff=self._prefetch_backoff" in source  # each FetchResult's
    assert PREFETCH_BACKOFF_SECONDS > 1.5  # longer than Faust's fetch wait


def test_the_consumer_still_builds_its_fetcher_from_its_isolation_level() -> None:
    assert "isolation_level=self._isolation_level" in inspect.getsource(
        consumer.AIOKafkaConsumer.start)
