"""The API's methods, written once for `Client` (sync) and `AsyncClient`: each
builds its `Call` (hookbus.api) and hands it to `_run`, which the sync client
answers with the result and the async one with an awaitable of it."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from hookbus import api
from hookbus.config import Config, require_app

R = TypeVar("R")


def new_event_id() -> str:
    """An `evt_` id of 128 random bits, as ingest makes them."""
    return f"evt_{secrets.token_hex(16)}"


def named(events: Sequence[Mapping[str, Any]], idempotency_key: str | None
          ) -> list[Mapping[str, Any]]:
    """`events`, each without an `id` given one when there is no key: a publish
    is retried on 503, which ingest also answers when Kafka did not acknowledge
    a record that it may still have written; the retry must then be the same
    event (contract §4: the id is the idempotency key), not one with a new id.
    With a key, ingest derives the ids from it."""
    if idempotency_key is not None:
        return list(events)
    return [e if e.get("id") is not None else {**e, "id": new_event_id()} for e in events]


class ApiMethods(Generic[R]):
    config: Config

    def _run(self, call: api.Call, pick: str | None = None) -> R:
        raise NotImplementedError

    def _app(self, app: str | None) -> str:
        return require_app(self.config, app)

    # Events
    def publish(self, type: str, data: Mapping[str, Any] | None = None, *,
                app: str | None = None, id: str | None = None,
                created_at: datetime | str | None = None,
                idempotency_key: str | None = None) -> R:
        """Publish one event; the event's id (`evt_…`, or `id`). With an
        `idempotency_key`, a repeat within its TTL answers the same id; without
        one, the SDK names the event (`named`), so its retries are one event."""
        if id is None and idempotency_key is None:
            id = new_event_id()
        event = api.event_body(type, data, id=id, created_at=created_at)
        return self._run(api.publish(self._app(app), event, idempotency_key), pick="id")

    def event_types(self) -> R:
        return self._run(api.event_types())

    def list_events(self, *, app: str | None = None, type: str | None = None,
                    status: str | None = None, since: datetime | str | None = None,
                    until: datetime | str | None = None, limit: int | None = None,
                    cursor: str | None = None) -> R:
        """`{"events": [...], "next": cursor}`, newest first."""
        return self._run(api.list_events(self._app(app), type=type, status=status, since=since,
                                         until=until, limit=limit, cursor=cursor))

    def get_event(self, event_id: str, *, app: str | None = None) -> R:
        """`{"event": envelope, "deliveries": [...]}`."""
        return self._run(api.get_event(self._app(app), event_id))

    def resend_event(self, event_id: str, *, webhook_id: str | None = None,
                     app: str | None = None) -> R:
        return self._run(api.resend_event(self._app(app), event_id, webhook_id))

    # Webhooks
    def list_webhooks(self, *, app: str | None = None) -> R:
        return self._run(api.list_webhooks(self._app(app)), pick="webhooks")

    def create_webhook(self, target: str, triggers: list[str] | None = None, *,
                       app: str | None = None, **fields: Any) -> R:
        """The webhook, with its secret (`v1`) or public key (`v1a`)."""
        body = {"target": target, **fields}
        if triggers is not None:
            body["triggers"] = triggers
        return self._run(api.create_webhook(self._app(app), body))

    def get_webhook(self, webhook_id: str, *, app: str | None = None) -> R:
        return self._run(api.get_webhook(self._app(app), webhook_id))

    def update_webhook(self, webhook_id: str, *, app: str | None = None, **fields: Any) -> R:
        return self._run(api.update_webhook(self._app(app), webhook_id, fields))

    def delete_webhook(self, webhook_id: str, *, app: str | None = None) -> R:
        return self._run(api.delete_webhook(self._app(app), webhook_id))

    def rotate_secret(self, webhook_id: str, *, secret: str | None = None,
                      app: str | None = None) -> R:
        """`{"secret": "whsec_…"}` (`v1a`: `{"public_key": "whpk_…"}`)."""
        return self._run(api.rotate_secret(self._app(app), webhook_id, secret))

    def test_webhook(self, webhook_id: str, *, app: str | None = None) -> R:
        """Send a `webhook.test` event to this webhook only; its event id."""
        return self._run(api.send_test_event(self._app(app), webhook_id), pick="id")

    def attempts(self, webhook_id: str, *, limit: int | None = None, cursor: str | None = None,
                 app: str | None = None) -> R:
        return self._run(api.attempts(self._app(app), webhook_id, limit=limit, cursor=cursor))

    def stats(self, webhook_id: str, *, app: str | None = None) -> R:
        return self._run(api.stats(self._app(app), webhook_id))

    # Dead letters
    def start_replay(self, webhook_id: str, *, since: datetime | str | None = None,
                     until: datetime | str | None = None, app: str | None = None) -> R:
        """Start re-enqueuing the webhook's dead letters: the job (`rj_…`, `running`)."""
        return self._run(api.start_replay(self._app(app), webhook_id, since=since, until=until))

    def replay_job(self, webhook_id: str, job_id: str, *, app: str | None = None) -> R:
        """A replay job's progress: `scanned` of `total`, `replayed`, `state`."""
        return self._run(api.replay_job(self._app(app), webhook_id, job_id))
