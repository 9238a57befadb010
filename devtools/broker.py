"""A single-node Apache Kafka (KRaft) broker for development and tests.

Its jars come from Maven Central through `deploy/kafka/pom.xml`, copied once
into `.cache/kafka/<pom digest>/`; the broker runs from them with
`java -cp 'jars/*' kafka.Kafka`, on loopback, with its data in a directory of
the caller's choosing.

    python -m devtools.broker fetch    # copy the jars (no-op when cached)
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"
JAVA_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-Djava.awt.headless=true"]
_STARTED = "Kafka Server started"


def jars_dir() -> Path:
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return ROOT / ".cache" / "kafka" / digest / "jars"


def fetch_jars() -> Path:
    """Copy the broker's jars with Maven unless they are already cached."""
    target = jars_dir()
    if (target / ".complete").exists():
        return target
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is required to fetch the Kafka broker's jars")
    partial = target.with_name("jars.partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"fetching the Kafka broker's jars with Maven into {target} ...", file=sys.stderr)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={partial}"],
        check=True,
    )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    (target / ".complete").touch()
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Broker:
    """One broker process; `start` formats the storage on first use."""

    def __init__(self, data_dir: Path, port: int, controller_port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.controller_port = controller_port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str) -> list[str]:
        return ["java", *JAVA_OPTS, "-cp", str(jars_dir() / "*"), *args]

    def _write_config(self) -> Path:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.cleaner.backoff.ms=1000",
            "",
        ]))
        return config

    def start(self, timeout: float = 90) -> None:
        jars_dir().exists() or fetch_jars()
        config = self._write_config()
        if not (self.data_dir / "data" / "meta.properties").exists():
            cluster_id = subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"),
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "--standalone",
                           "-t", cluster_id, "-c", str(config)),
                check=True, capture_output=True,
            )
        server_log = self.data_dir / "logs" / "server.log"
        seen = server_log.stat().st_size if server_log.exists() else 0
        with open(self.data_dir / "logs" / "stdout.log", "ab") as out:
            self._process = subprocess.Popen(
                self._java(f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
                           f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                           "kafka.Kafka", str(config)),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the broker exited with {self._process.returncode}; "
                                   f"see {self.data_dir / 'logs'}")
            if server_log.exists():
                with open(server_log, "rb") as f:
                    f.seek(seen)
                    if _STARTED.encode() in f.read() and port_open(self.port):
                        return
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"the broker did not start within {timeout}s; see {self.data_dir}")

    def stop(self, timeout: float = 30) -> None:
        """Controlled shutdown (SIGTERM), then SIGKILL if it takes too long."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m devtools.broker fetch")
    print(fetch_jars())
