"""`make run`: the whole development stack in the foreground.

Starts Kafka under `.run/kafka` (unless one already listens on the bootstrap
port), creates the topics, then runs the event log, ingest, router and deliverer as child
processes with readable logs. Ctrl-C (or SIGTERM) stops the services, then the
broker, and leaves no process behind. A service that dies stops the stack."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

from devtools.broker import ROOT, Broker, port_open
from devtools.token import DEV_JWT_SECRET
from devtools.topics import create as create_topics
from services.common.config import Env
from services.common.sealing import new_key_entry

SERVICES = ("eventlog", "ingest", "router", "deliverer")
RUN_DIR = ROOT / ".run"


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} make-run   {message}", file=sys.stderr, flush=True)


def dev_environment() -> dict[str, str]:
    """The environment of the services: the caller's, plus development defaults."""
    env = dict(os.environ)
    if not env.get("HOOKBUS_JWT_SECRET"):
        env["HOOKBUS_JWT_SECRET"] = DEV_JWT_SECRET
        say(f"HOOKBUS_JWT_SECRET is not set: using the development secret {DEV_JWT_SECRET!r}")
    if not env.get("HOOKBUS_SECRET_KEYS"):
        env["HOOKBUS_SECRET_KEYS"] = dev_secret_keys()
    if "HOOKBUS_ALLOW_HTTP" not in env:
        env["HOOKBUS_ALLOW_HTTP"] = "true"
        say("development stack: http:// targets are allowed (HOOKBUS_ALLOW_HTTP=true)")
    if "HOOKBUS_ALLOWED_PRIVATE_CIDRS" not in env:
        env["HOOKBUS_ALLOWED_PRIVATE_CIDRS"] = "127.0.0.0/8,::1/128"
        say("development stack: loopback targets are allowed "
            "(HOOKBUS_ALLOWED_PRIVATE_CIDRS=127.0.0.0/8,::1/128)")
    env.setdefault("HOOKBUS_LOG_FORMAT", "text")
    env.setdefault("HOOKBUS_ROUTER_DATA_DIR", str(RUN_DIR / "router"))
    env.setdefault("HOOKBUS_EVENTLOG_DATA_DIR", str(RUN_DIR / "eventlog"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def dev_secret_keys() -> str:
    """The development stack's sealing key: made on first use and kept beside the
    broker's data under .run/, so that webhooks written by an earlier `make run`
    still open."""
    path = RUN_DIR / "secret-keys"
    if path.exists():
        keys = path.read_text().strip()
        say(f"HOOKBUS_SECRET_KEYS is not set: using the development key in {path}")
    else:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        keys = new_key_entry(f"dev-{time.strftime('%Y%m%d')}")
        path.touch(mode=0o600)
        path.write_text(keys + "\n")
        say(f"HOOKBUS_SECRET_KEYS is not set: made a development key, kept in {path}")
    say(f"HOOKBUS_SECRET_KEYS={keys}")
    return keys


def start_broker(env: dict[str, str]) -> Broker | None:
    """Our own broker under .run/kafka, or None when one is already listening."""
    bootstrap = env.get("HOOKBUS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if port_open(int(port), host or "127.0.0.1"):
        say(f"using the Kafka broker already listening on {bootstrap}")
        return None
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"no Kafka answers at {bootstrap}, and make run only starts one on loopback")
    broker = Broker(RUN_DIR / "kafka", int(port), int(env.get("HOOKBUS_KAFKA_CONTROLLER_PORT", "9093")))
    say(f"starting Kafka on {broker.bootstrap} (data in {broker.data_dir}) ...")
    started = time.monotonic()
    broker.start()
    say(f"Kafka is up in {time.monotonic() - started:.1f}s")
    return broker


def ready(api: str) -> bool:
    """Whether ingest's /readyz answers 200 (Kafka, topics and webhooks loaded)."""
    try:
        with urllib.request.urlopen(f"{api}/readyz", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def welcome(api: str, started: float) -> str:
    """What a newcomer needs once the stack is ready: where things are, and the
    first commands (README, Quickstart)."""
    return "\n".join([
        f"ready in {time.monotonic() - started:.1f}s. Hookbus is running:",
        f"    API       {api}/v1/...  (OpenAPI: {api}/openapi.json)",
        f"    docs      {api}/docs",
        f"    console   {api}/console",
        "  A token for app app_1 (in another terminal):",
        "    export HOOKBUS_TOKEN=$(make -s token APP=app_1)   # or: .venv/bin/hookbus tokens mint --app app_1",
        "    .venv/bin/hookbus --app app_1 webhooks create http://127.0.0.1:9000/hooks   # make receiver listens there",
        "    .venv/bin/hookbus --app app_1 events publish message.received --data '{\"text\": \"hello\"}'",
        "  README.md, Quickstart, says more. Ctrl-C stops everything.",
    ])


def start_services(env: dict[str, str]) -> dict[str, subprocess.Popen[bytes]]:
    return {
        name: subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches us; we stop them in order
        )
        for name in SERVICES
    }


def stop_services(children: dict[str, subprocess.Popen[bytes]], timeout: float = 20) -> None:
    for name, child in children.items():
        if child.poll() is None:
            say(f"stopping {name} (pid {child.pid})")
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name, child in children.items():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in {timeout}s: killing it")
            child.kill()
            child.wait()


def main() -> int:
    started = time.monotonic()
    env = dev_environment()
    broker = start_broker(env)
    children: dict[str, subprocess.Popen[bytes]] = {}
    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        created = asyncio.run(create_topics(Env(env)))
        say(f"topics: created {len(created)}" if created else "topics: all exist")
        children = start_services(env)
        say(f"started {', '.join(f'{n} (pid {c.pid})' for n, c in children.items())}; "
            f"ingest on http://{env.get('HOOKBUS_HTTP_HOST', '127.0.0.1')}:"
            f"{env.get('HOOKBUS_HTTP_PORT', '8080')} in {time.monotonic() - started:.1f}s; "
            "Ctrl-C stops everything")
        api = (f"http://{env.get('HOOKBUS_HTTP_HOST', '127.0.0.1')}:"
               f"{env.get('HOOKBUS_HTTP_PORT', '8080')}")
        announced, polled = False, 0.0
        while not stop_requested:
            if not announced and time.monotonic() - polled >= 1:
                polled = time.monotonic()
                if ready(api):
                    say(welcome(api, started))
                    announced = True
            dead = [(n, c.returncode) for n, c in children.items() if c.poll() is not None]
            if dead:
                say("stopping: " + ", ".join(f"{n} exited with {rc}" for n, rc in dead))
                code = 1
                break
            time.sleep(0.2)
    finally:
        stop_services(children)
        if broker is not None:
            say("stopping Kafka")
            broker.stop()
        say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
