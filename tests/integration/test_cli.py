"""The `hookbus` command against the real stack (issue 14 items 3 and 5), with
Click's CliRunner and `--json` output parsed: tokens, webhooks, events (tail
included), dead letters and their replay, errors. The stack's schedule is
`1s,2s`: a failing endpoint's delivery is dead about 3 s after its event."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from devtools.processes import Stack
from hookbus.cli import cli
from tests.conftest import JWT_SECRET, Receiver

APP = "app_cli"


async def run(env: dict[str, str], *args: str, code: int = 0) -> Result:
    """`hookbus --app APP ARGS…` in a thread (the receiver answers in this loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["--app", APP, *args], env=env)
    assert result.exit_code == code, (args, result.output, result.stderr, result.exception)
    return result


async def run_json(env: dict[str, str], *args: str) -> dict:
    return json.loads((await run(env, *args, "--json")).stdout)


async def eventually(env: dict[str, str], check, *args: str, timeout: float = 30) -> dict:
    """`hookbus ARGS --json` until `check(answer)` holds (the event log files
    events within a moment)."""
    async with asyncio.timeout(timeout):
        while True:
            answer = await run_json(env, *args)
            if check(answer):
                return answer
            await asyncio.sleep(0.3)


async def test_cli_against_the_stack(stack: Stack, receiver: Receiver) -> None:
    async def fail(_: web.Request, n: int) -> web.Response:
        return web.Response(status=500)

    receiver.respond("/fail", fail)
    minted = json.loads((await run({"HOOKBUS_JWT_SECRET": JWT_SECRET},
                                   "tokens", "mint", "--app", APP, "--json")).stdout)
    assert minted["scope"] == "app" and minted["app_id"] == APP
    env = {"HOOKBUS_URL": stack.ingest_url, "HOOKBUS_TOKEN": minted["token"]}

    created = await run_json(env, "webhooks", "create", receiver.url("/ok"),
                             "--trigger", "message.received", "--description", "cli")
    webhook_id = created["id"]
    assert created["secret"].startswith("whsec_")
    listed = await run_json(env, "webhooks", "list")
    assert [w["id"] for w in listed] == [webhook_id] and "secret" not in listed[0]
    assert (await run_json(env, "webhooks", "get", webhook_id))["secret"] == created["secret"]
    updated = await run_json(env, "webhooks", "update", webhook_id, "--description", "changed")
    assert updated["description"] == "changed" and updated["version"] == created["version"] + 1
    rotated = await run_json(env, "webhooks", "rotate", webhook_id)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    tested = await run_json(env, "webhooks", "test", webhook_id)
    assert (await receiver.wait_for("/ok", tested["id"])).headers["webhook-id"] == tested["id"]

    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    published = await run_json(env, "events", "publish", "message.received",
                               "--data", '{"text": "hello"}', "--key", "cli-1")
    assert (await run_json(env, "events", "publish", "message.received", "--data",
                           '{"text": "hello"}', "--key", "cli-1"))["id"] == published["id"]
    await receiver.wait_for("/ok", published["id"])
    tail = await run(env, "events", "tail", "--since", since, "--max", "1", "--interval", "0.2",
                     "--json")
    assert json.loads(tail.stdout.splitlines()[0])["id"] == published["id"]
    await eventually(env, lambda page: published["id"] in [e["id"] for e in page["events"]],
                     "events", "list", "--type", "message.received")
    detail = await eventually(env, lambda d: d["deliveries"] and
                              d["deliveries"][0]["status"] == "delivered",
                              "events", "get", published["id"])
    assert detail["event"]["data"] == {"text": "hello"}
    resent = await run_json(env, "events", "resend", published["id"])
    assert resent["webhook_ids"] == [webhook_id]
    assert len(await receiver.wait_count("/ok", 3)) >= 3  # test, event, its resend

    # Dead letters: every attempt of a failing endpoint fails, then replay.
    failing = (await run_json(env, "webhooks", "create", receiver.url("/fail"),
                              "--trigger", "conversation.read"))["id"]
    dead_event = (await run_json(env, "events", "publish", "conversation.read"))["id"]
    await eventually(env, lambda page: dead_event in [e["id"] for e in page["events"]],
                     "dlq", "list")
    letters = await run_json(env, "dlq", "list", "--webhook", failing)
    assert [a["event_id"] for a in letters["attempts"]] == [dead_event]
    job = await run_json(env, "dlq", "replay", failing, "--interval", "0.2")
    assert job["state"] == "done" and job["replayed"] == 1, job
    await receiver.wait_count("/fail", 4)  # three attempts, then the replay's first
    shown = await run(env, "dlq", "replay", failing, "--interval", "0.2")  # rich output
    assert "replay rj_" in shown.stdout

    # Errors: the API's status and message, a non-zero exit.
    missing = await run(env, "webhooks", "get", "wh_nope", code=1)
    assert "404" in missing.stderr and "Traceback" not in missing.stderr
    refused = await run(env, "webhooks", "create", "ftp://x", "--json", code=1)
    assert json.loads(refused.stderr)["error"]["details"][0]["field"] == "target"
    anonymous = await run({"HOOKBUS_URL": stack.ingest_url}, "webhooks", "list", code=1)
    assert "401" in anonymous.stderr

    assert (await run_json(env, "webhooks", "delete", webhook_id)) == {"deleted": webhook_id}
    await run(env, "webhooks", "get", webhook_id, code=1)


def test_the_console_script_runs_and_completes() -> None:
    """The installed entry point (a subprocess), and its shell completion."""
    out = subprocess.run([sys.executable, "-m", "hookbus", "completion", "bash"],
                         capture_output=True, text=True, check=True).stdout
    assert "_HOOKBUS_COMPLETE" in out
    out = subprocess.run([sys.executable, "-m", "hookbus", "webhooks", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for command in ("list", "create", "get", "update", "delete", "rotate", "test"):
        assert command in out
    bad = subprocess.run([sys.executable, "-m", "hookbus", "--url", "nope", "webhooks", "list"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "HOOKBUS_URL" in bad.stderr


@pytest.mark.parametrize("args", [["--app", "a", "webhooks", "update", "wh_1"],
                                  ["events", "publish"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
