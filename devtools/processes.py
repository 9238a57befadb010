"""Hookbus's services as real processes (`python -m services.X`), several
instances of each if wanted, for the end-to-end tests, `make chaos` and
`make bench`. Each instance logs to its own file; `kill` and `restart` are the
fault injections, `restart_dead` plays Kubernetes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from devtools.broker import ROOT, free_port

# For stacks started by tests, chaos and bench runs only; `make run` makes its own.
DEV_SECRET_KEYS = "dev:ZGV2ZWxvcG1lbnQtb25seS1zZWFsaW5nLWtleS0zMmI="


@dataclass
class ServiceProcess:
    name: str          # e.g. "router-2"
    service: str       # e.g. "router"
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int          # the API port of ingest and the event log, the metrics port of the others
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    wrap: tuple[str, ...] = ()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Stack:
    def __init__(self, bootstrap: str, prefix: str, log_dir: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "HOOKBUS_KAFKA_BOOTSTRAP": bootstrap,
            "HOOKBUS_TOPIC_PREFIX": prefix,
            "HOOKBUS_ROUTER_DATA_DIR": str(log_dir / "router-data"),
            "PYTHONUNBUFFERED": "1",
            "HOOKBUS_SECRET_KEYS": os.environ.get("HOOKBUS_SECRET_KEYS") or DEV_SECRET_KEYS,
            **env,
        }
        self.log_dir = log_dir
        self.services: dict[str, ServiceProcess] = {}

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.services['ingest'].port}"

    @property
    def eventlog_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{s.port}" for s in self.services.values()
                if s.service == "eventlog"]

    def start(self, service: str, name: str | None = None,
              wrap: tuple[str, ...] = ()) -> ServiceProcess:
        """Start an instance; `wrap` goes between the interpreter and `-m services.X`
        (e.g. a profiler's `-m pyinstrument …`)."""
        name = name or service
        port = free_port()
        env = dict(self.env)
        if service == "eventlog":
            # Its API, health and metrics on one port, advertised to the group.
            env["HOOKBUS_EVENTLOG_HTTP_PORT"] = str(port)
            env["HOOKBUS_EVENTLOG_URL"] = f"http://127.0.0.1:{port}"
            env["HOOKBUS_EVENTLOG_DATA_DIR"] = str(self.log_dir / f"{name}-data")
        else:
            env["HOOKBUS_HTTP_PORT" if service == "ingest" else "HOOKBUS_METRICS_PORT"] = str(port)
        env["HOOKBUS_ROUTER_DATA_DIR"] = str(self.log_dir / f"{name}-data")
        if service == "ingest" and "HOOKBUS_EVENTLOG_URLS" not in self.env:
            # The event log instances started so far (start them first).
            env["HOOKBUS_EVENTLOG_URLS"] = ",".join(self.eventlog_urls) or "http://127.0.0.1:1"
        self.services[name] = self._spawn(name, service, port, env, wrap)
        return self.services[name]

    def _spawn(self, name: str, service: str, port: int, env: dict[str, str],
               wrap: tuple[str, ...] = ()) -> ServiceProcess:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, *wrap, "-m", f"services.{service}"], env=env, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT,
            )
        return ServiceProcess(name, service, process, log_path, port, env=env, wrap=wrap)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, no final commit."""
        self.services[name].process.kill()
        self.services[name].process.wait()

    def terminate(self, name: str, timeout: float = 60) -> int:
        """SIGTERM, as a rolling update does: the instance drains and exits. This
        blocks; from async code call it with `asyncio.to_thread`."""
        process = self.services[name].process
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    async def wait_instance_ready(self, name: str, timeout: float = 60, *,
                                  exited_fails: bool = False) -> None:
        """Until one instance's /readyz answers 200 (`exited_fails`: unless it exits;
        otherwise a supervisor may restart it meanwhile)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                service = self.services[name]
                if not service.alive and exited_fails:
                    raise RuntimeError(f"{name} exited:\n{service.log()[-3000:]}")
                if service.alive:
                    try:
                        async with session.get(
                                f"http://127.0.0.1:{service.port}/readyz") as response:
                            if response.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready:\n{service.log()[-3000:]}")
                await asyncio.sleep(0.2)

    def restart(self, name: str) -> ServiceProcess:
        old = self.services[name]
        if old.alive:
            self.kill(name)
        new = self._spawn(name, old.service, old.port, old.env, old.wrap)
        new.restarts = old.restarts + 1
        self.services[name] = new
        return new

    def restart_dead(self) -> list[str]:
        """Restart every instance that exited, as a Kubernetes Deployment would."""
        dead = [name for name, s in self.services.items() if not s.alive]
        for name in dead:
            self.restart(name)
        return dead

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until every instance's /readyz answers 200; an instance that exits fails it."""
        deadline = time.monotonic() + timeout
        for name in list(self.services):
            await self.wait_instance_ready(name, deadline - time.monotonic(), exited_fails=True)

    def stop(self, timeout: float = 30) -> dict[str, int]:
        """SIGTERM every instance; returns their exit codes."""
        for service in self.services.values():
            if service.alive:
                service.process.send_signal(signal.SIGTERM)
        codes = {}
        for service in self.services.values():
            try:
                codes[service.name] = service.process.wait(timeout)
            except subprocess.TimeoutExpired:
                service.process.kill()
                codes[service.name] = service.process.wait()
        return codes
