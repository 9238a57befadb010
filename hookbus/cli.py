"""`hookbus`: the operator's command line (issue 14 item 3).

    hookbus [--url URL] [--token JWT] [--app APP] [--json] GROUP COMMAND …

Groups: `webhooks` (list, create, get, update, delete, rotate, test, attempts,
stats), `events` (publish, list, get, resend, tail), `dlq` (list, replay),
`tokens mint`, `reseal`, `completion`. Settings: flags, else `HOOKBUS_URL`
(default http://127.0.0.1:8080), `HOOKBUS_TOKEN`, `HOOKBUS_APP`. Output: tables
(rich), or the API's JSON with `--json`. A failure prints the API's status and
message on stderr and exits 1 (2: a usage or configuration error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hookbus.client import Client
from hookbus.config import ConfigError, resolve
from hookbus.errors import HookbusError

_encode = msgspec.json.Encoder()


class State:
    def __init__(self, url: str | None, token: str | None, app: str | None, as_json: bool):
        self._flags = (url, token, app)
        self.as_json = as_json
        self.out = Console(highlight=False, soft_wrap=True, markup=False)
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            url, token, app = self._flags
            self._client = Client(url, token, app)
        return self._client

    def emit(self, value: Any, render: Callable[[Any], Any] | None = None) -> None:
        """The API's answer: as JSON with --json, else rendered (or as JSON)."""
        if self.as_json or render is None:
            click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
        else:
            self.out.print(render(value))


pass_state = click.make_pass_decorator(State)


def _table(*columns: str, **options: Any) -> Table:
    """A table whose cells fold rather than end in "…": ids are never cut."""
    table = Table(**options)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


@contextmanager
def _failures(as_json: bool) -> Iterator[None]:
    try:
        yield
    except HookbusError as exc:
        if as_json:
            click.echo(json.dumps({"error": {
                "code": exc.code, "status": exc.status, "message": exc.message,
                "details": [{"field": d.field, "reason": d.reason} for d in exc.details]}}),
                err=True)
        else:
            click.secho(f"error: {exc}", fg="red", err=True)
            for detail in exc.details:
                click.echo(f"  {detail.field}: {detail.reason}", err=True)
        sys.exit(1)
    except ConfigError as exc:
        if as_json:
            click.echo(json.dumps({"error": {"code": 0, "status": "INVALID_ARGUMENT",
                                             "message": str(exc), "details": []}}), err=True)
        else:
            click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)


class _Group(click.Group):
    """Runs every command inside `_failures`, so each ends with the API's message;
    the root takes `--json` anywhere on the line (`hookbus webhooks list --json`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None and "--json" in args:
            end = args.index("--") if "--" in args else len(args)
            if "--json" in args[:end]:
                args = ["--json", *[a for n, a in enumerate(args) if n >= end or a != "--json"]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.params.get("as_json")) or any(
            p.params.get("as_json") for p in _parents(ctx))
        with _failures(as_json):
            return super().invoke(ctx)


def _parents(ctx: click.Context) -> Iterator[click.Context]:
    while ctx.parent is not None:
        ctx = ctx.parent
        yield ctx


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="HOOKBUS_URL", help="The API (HOOKBUS_URL; http://127.0.0.1:8080).")
@click.option("--token", envvar="HOOKBUS_TOKEN", help="A bearer token (HOOKBUS_TOKEN).")
@click.option("--app", envvar="HOOKBUS_APP", help="The app to act on (HOOKBUS_APP).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, app: str | None,
        as_json: bool) -> None:
    """Hookbus from the command line: webhooks, events, dead letters, tokens."""
    resolve({}, url=url)  # a malformed URL is a usage error before any call
    ctx.obj = State(url, token, app, as_json)


# Webhooks ------------------------------------------------------------------

@cli.group()
def webhooks() -> None:
    """An app's webhooks."""


def _webhooks_table(items: list[dict[str, Any]]) -> Table:
    table = _table("id", "target", "triggers", "enabled", "scheme", "version")
    for w in items:
        table.add_row(w["id"], w["target"], ", ".join(w["triggers"]),
                      "yes" if w["enabled"] else f"no {w.get('disabled_reason') or ''}".strip(),
                      w["signature_scheme"], str(w["version"]))
    return table


def _webhook_view(w: dict[str, Any]) -> Table:
    table = _table("field", "value", show_header=False)
    for name, value in w.items():
        table.add_row(name, value if isinstance(value, str) else json.dumps(value))
    return table


@webhooks.command("list")
@pass_state
def webhooks_list(state: State) -> None:
    """The app's webhooks (no secrets)."""
    state.emit(state.client.list_webhooks(), _webhooks_table)


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep:
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint="--header")
        headers[name.strip()] = text
    return headers


@webhooks.command("create")
@click.argument("target")
@click.option("--trigger", "triggers", multiple=True, help="A trigger (repeat; default message).")
@click.option("--secret", help="whsec_… (v1) or whsk_… (v1a); generated when absent.")
@click.option("--scheme", type=click.Choice(["v1", "v1a"]), help="Signature scheme.")
@click.option("--description")
@click.option("--header", "headers", multiple=True, help="A custom header NAME=VALUE (repeat).")
@click.option("--payload-format",
              type=click.Choice(["standard", "chatwoot", "nativemsg", "smooch", "sinch"]))
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@pass_state
def webhooks_create(state: State, target: str, triggers: tuple[str, ...], secret: str | None,
                    scheme: str | None, description: str | None, headers: tuple[str, ...],
                    payload_format: str | None, disabled: bool) -> None:
    """Register TARGET; prints the webhook with its secret."""
    fields: dict[str, Any] = {}
    for name, value in (("secret", secret), ("signature_scheme", scheme),
                        ("description", description), ("payload_format", payload_format)):
        if value is not None:
            fields[name] = value
    if headers:
        fields["headers"] = _headers(headers)
    if disabled:
        fields["enabled"] = False
    state.emit(state.client.create_webhook(target, list(triggers) or None, **fields),
               _webhook_view)


@webhooks.command("get")
@click.argument("webhook_id")
@pass_state
def webhooks_get(state: State, webhook_id: str) -> None:
    """One webhook, with its secret."""
    state.emit(state.client.get_webhook(webhook_id), _webhook_view)


@webhooks.command("update")
@click.argument("webhook_id")
@click.option("--target")
@click.option("--trigger", "triggers", multiple=True, help="Replaces the triggers (repeat).")
@click.option("--description")
@click.option("--header", "headers", multiple=True, help="Replaces the headers: NAME=VALUE.")
@click.option("--enable/--disable", "enabled", default=None)
@click.option("--scheme", type=click.Choice(["v1", "v1a"]))
@click.option("--payload-format",
              type=click.Choice(["standard", "chatwoot", "nativemsg", "smooch", "sinch"]))
@click.option("--version", type=int, help="Refuse (409) unless this is the current version.")
@pass_state
def webhooks_update(state: State, webhook_id: str, target: str | None, triggers: tuple[str, ...],
                    description: str | None, headers: tuple[str, ...], enabled: bool | None,
                    scheme: str | None, payload_format: str | None, version: int | None) -> None:
    """Change what you name; the rest stays."""
    fields: dict[str, Any] = {name: value for name, value in (
        ("target", target), ("description", description), ("enabled", enabled),
        ("signature_scheme", scheme), ("payload_format", payload_format),
        ("version", version)) if value is not None}
    if triggers:
        fields["triggers"] = list(triggers)
    if headers:
        fields["headers"] = _headers(headers)
    if not fields:
        raise click.UsageError("nothing to change: name at least one option")
    state.emit(state.client.update_webhook(webhook_id, **fields), _webhook_view)


@webhooks.command("delete")
@click.argument("webhook_id")
@pass_state
def webhooks_delete(state: State, webhook_id: str) -> None:
    """Delete a webhook for good."""
    state.client.delete_webhook(webhook_id)
    state.emit({"deleted": webhook_id}, lambda v: f"deleted {v['deleted']}")


@webhooks.command("rotate")
@click.argument("webhook_id")
@click.option("--secret", help="The new secret (generated when absent).")
@pass_state
def webhooks_rotate(state: State, webhook_id: str, secret: str | None) -> None:
    """A new signing secret; the old one keeps signing through the overlap."""
    state.emit(state.client.rotate_secret(webhook_id, secret=secret),
               lambda v: v.get("secret") or v.get("public_key"))


@webhooks.command("test")
@click.argument("webhook_id")
@pass_state
def webhooks_test(state: State, webhook_id: str) -> None:
    """Send a webhook.test event to this webhook only."""
    event_id = state.client.test_webhook(webhook_id)
    state.emit({"id": event_id}, lambda v: f"sent webhook.test {v['id']}")


@webhooks.command("attempts")
@click.argument("webhook_id")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@pass_state
def webhooks_attempts(state: State, webhook_id: str, limit: int) -> None:
    """The webhook's latest attempts, newest first."""
    state.emit(state.client.attempts(webhook_id, limit=limit), _attempts_table)


def _attempts_table(page: dict[str, Any]) -> Table:
    table = _table("at", "event", "attempt", "result", "code", "ms", "error")
    for a in page["attempts"]:
        table.add_row(a["at"], a["event_id"], str(a["attempt"]), a["result"],
                      str(a.get("status_code") or ""), f"{a.get('latency_ms', 0):.0f}",
                      a.get("error") or "")
    return table


@webhooks.command("stats")
@click.argument("webhook_id")
@pass_state
def webhooks_stats(state: State, webhook_id: str) -> None:
    """Delivered, failed, dead, success rate, latency, streak, breaker."""
    state.emit(state.client.stats(webhook_id), _webhook_view)


# Events --------------------------------------------------------------------

@cli.group()
def events() -> None:
    """Publish events and look them up in the event log."""


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=what)
    return value


def _batch(path: str) -> list[dict[str, Any]]:
    """Events from a file (or - for stdin): a JSON array, or one object a line."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        stripped = text.strip()
        if stripped.startswith("["):
            items = json.loads(stripped)
        else:
            items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--batch") from None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--batch") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise click.BadParameter("every event must be a JSON object", param_hint="--batch")
    return items


@events.command("publish")
@click.argument("event_type", required=False)
@click.option("--data", default="{}", help="The event's data, a JSON object.")
@click.option("--id", "event_id", help="The event's id (generated when absent).")
@click.option("--key", help="An Idempotency-Key: a repeat answers the same id(s).")
@click.option("--batch", "batch_file", type=click.Path(allow_dash=True),
              help="Publish the events of a file (JSON array or JSON lines; - for stdin), "
                   "500 a request.")
@pass_state
def events_publish(state: State, event_type: str | None, data: str, event_id: str | None,
                   key: str | None, batch_file: str | None) -> None:
    """Publish one EVENT_TYPE event, or a --batch of them."""
    if batch_file is not None:
        if event_type is not None:
            raise click.UsageError("give an EVENT_TYPE or --batch, not both")
        ids = state.client.publish_many(_batch(batch_file), idempotency_key=key)
        state.emit({"ids": ids}, lambda v: f"published {len(v['ids'])} events")
        return
    if event_type is None:
        raise click.UsageError("give an EVENT_TYPE (or --batch FILE)")
    published = state.client.publish(event_type, _json_object(data, "--data"), id=event_id,
                                     idempotency_key=key)
    state.emit({"id": published}, lambda v: v["id"])


def _events_table(page: dict[str, Any]) -> Table:
    table = _table("created", "id", "type", "delivered", "retrying", "dead", "pending")
    for e in page["events"]:
        d = e["deliveries"]
        table.add_row(e["created_at"], e["id"], e["type"], str(d.get("delivered", 0)),
                      str(d.get("retrying", 0)), str(d.get("dead", 0)), str(d.get("pending", 0)))
    if page.get("next"):
        table.caption = f"more: --cursor {page['next']}"
    return table


@events.command("list")
@click.option("--type", "event_type")
@click.option("--status", type=click.Choice(
    ["pending", "delivered", "retrying", "dead", "dropped", "failed"]))
@click.option("--since", help="RFC 3339 time.")
@click.option("--until", help="RFC 3339 time.")
@click.option("--limit", type=click.IntRange(1, 250))
@click.option("--cursor")
@pass_state
def events_list(state: State, event_type: str | None, status: str | None, since: str | None,
                until: str | None, limit: int | None, cursor: str | None) -> None:
    """The app's events, newest first, with their deliveries by status."""
    state.emit(state.client.list_events(type=event_type, status=status, since=since,
                                        until=until, limit=limit, cursor=cursor), _events_table)


@events.command("get")
@click.argument("event_id")
@pass_state
def events_get(state: State, event_id: str) -> None:
    """The envelope, and every webhook's status and attempts."""
    def render(detail: dict[str, Any]) -> Any:
        table = _table("webhook", "status", "attempts", "last result", title=detail["event"]["id"])
        for d in detail["deliveries"]:
            last = d["attempts"][-1] if d["attempts"] else {}
            table.add_row(d["webhook_id"], d["status"], str(len(d["attempts"])),
                          f"{last.get('result', '')} {last.get('status_code') or ''}".strip())
        return table

    state.emit(state.client.get_event(event_id), render)


@events.command("resend")
@click.argument("event_id")
@click.option("--webhook", "webhook_id", help="Only to this webhook (else to all of them).")
@pass_state
def events_resend(state: State, event_id: str, webhook_id: str | None) -> None:
    """A new attempt series (same webhook-id)."""
    state.emit(state.client.resend_event(event_id, webhook_id=webhook_id),
               lambda v: f"resending {v['event_id']} to {', '.join(v['webhook_ids'])}")


@events.command("tail")
@click.option("--type", "event_type")
@click.option("--status", type=click.Choice(
    ["pending", "delivered", "retrying", "dead", "dropped", "failed"]))
@click.option("--since", help="RFC 3339 time to start from (default: now).")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds a poll.")
@click.option("--max", "max_events", type=int, help="Stop after this many events.")
@pass_state
def events_tail(state: State, event_type: str | None, status: str | None, since: str | None,
                interval: float, max_events: int | None) -> None:
    """Print events as they are published (oldest first), until Ctrl-C."""
    since = since or datetime.now(UTC).isoformat(timespec="milliseconds")
    seen: set[str] = set()
    try:
        while max_events is None or len(seen) < max_events:
            page = state.client.list_events(type=event_type, status=status, since=since,
                                            limit=250)
            for event in reversed(page["events"]):
                if event["id"] in seen or (max_events is not None and len(seen) >= max_events):
                    continue
                seen.add(event["id"])
                if state.as_json:
                    click.echo(json.dumps(event))
                else:
                    state.out.print(f"{event['created_at']}  {event['id']}  {event['type']}")
            if max_events is None or len(seen) < max_events:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


# Dead letters --------------------------------------------------------------

@cli.group()
def dlq() -> None:
    """Dead letters: list them, replay them."""


@dlq.command("list")
@click.option("--webhook", "webhook_id", help="This webhook's dead letters (its attempts log).")
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True)
@pass_state
def dlq_list(state: State, webhook_id: str | None, limit: int) -> None:
    """The app's events with a dead delivery; or, with --webhook, that webhook's
    dead letters (newest first, replayed ones included)."""
    if webhook_id is None:
        state.emit(state.client.list_events(status="dead", limit=limit), _events_table)
        return
    page = state.client.attempts(webhook_id, limit=100)
    dead = [a for a in page["attempts"] if a["result"] == "dead"][:limit]
    state.emit({"attempts": dead}, _attempts_table)


@dlq.command("replay")
@click.argument("webhook_id")
@click.option("--since", help="Dead since (RFC 3339).")
@click.option("--until", help="Dead until (RFC 3339).")
@click.option("--no-wait", is_flag=True, help="Start the job and print it.")
@click.option("--interval", type=float, default=0.5, show_default=True)
@pass_state
def dlq_replay(state: State, webhook_id: str, since: str | None, until: str | None,
               no_wait: bool, interval: float) -> None:
    """Re-enqueue the webhook's dead letters, with a progress bar."""
    job = state.client.start_replay(webhook_id, since=since, until=until)
    if not no_wait:
        job = _follow(state, webhook_id, job, interval)
    state.emit(job, lambda j: f"replay {j['id']}: {j['state']}, replayed {j['replayed']} "
                              f"of {j['scanned']} dead letters read")
    if job["state"] == "failed":
        sys.exit(1)


def _follow(state: State, webhook_id: str, job: dict[str, Any], interval: float) -> dict:
    with Progress(TextColumn("replay {task.fields[job]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("replayed {task.fields[replayed]}"), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=state.as_json) as progress:
        task = progress.add_task("replay", total=job["total"] or None, completed=job["scanned"],
                                 job=job["id"], replayed=job["replayed"])
        while job["state"] == "running":
            time.sleep(interval)
            job = state.client.replay_job(webhook_id, job["id"])
            progress.update(task, total=job["total"] or None, completed=job["scanned"],
                            replayed=job["replayed"])
    return job


# Tokens and operator jobs ---------------------------------------------------

@cli.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("mint")
@click.option("--app", "app_id", help="The app the token acts for (scope app).")
@click.option("--scope", type=click.Choice(["app", "admin"]))
@click.option("--ttl", default="1h", show_default=True, help="Lifetime, e.g. 1h, 8h.")
@pass_state
def tokens_mint(state: State, app_id: str | None, scope: str | None, ttl: str) -> None:
    """A token signed with HOOKBUS_JWT_SECRET, else make run's development secret
    (as `make token` does)."""
    from devtools.token import DEV_JWT_SECRET
    from services.common.config import ConfigError as SettingError, parse_duration
    from services.ingest.auth import issue_token

    try:
        lifetime = int(parse_duration(ttl))
    except SettingError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    scope = scope or ("app" if app_id else "admin")
    if scope == "app" and not app_id:
        raise click.UsageError("scope app needs --app")
    secret = os.environ.get("HOOKBUS_JWT_SECRET") or DEV_JWT_SECRET
    token = issue_token(secret, scope=scope, app_id=app_id if scope == "app" else None,
                        lifetime=lifetime, issuer=os.environ.get("HOOKBUS_JWT_ISSUER") or None,
                        audience=os.environ.get("HOOKBUS_JWT_AUDIENCE") or None)
    state.emit({"token": token, "scope": scope, "app_id": app_id, "expires_in": lifetime},
               lambda v: v["token"])


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def reseal(args: tuple[str, ...]) -> None:
    """Re-seal every webhook's secrets under the first HOOKBUS_SECRET_KEYS key
    (`python -m services.reseal`; `--rate N`, or `new-key ID`). Its exit status."""
    sys.exit(subprocess.call([sys.executable, "-m", "services.reseal", *args]))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(hookbus completion bash)"."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None
    click.echo(complete(cli, {}, "hookbus", "_HOOKBUS_COMPLETE").source())


def main() -> None:
    cli(prog_name="hookbus")


if __name__ == "__main__":
    main()
