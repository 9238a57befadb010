"""A single-node Apache Kafka (KRaft) broker for development and tests.

Its jars come from Maven Central through `deploy/kafka/pom.xml`, copied once
into `.cache/kafka/<pom digest>/`; the broker runs from them with
`java -cp 'jars/*' kafka.Kafka`, on loopback, with its data in a directory of
the caller's choosing.

Given a `Lock`, the broker is locked as production's is (contract §9): clients
log in with SASL/SCRAM-SHA-512 over TLS (and over plain TCP on a second port),
its users are created when the storage is formatted, and the standard
authorizer refuses whatever no ACL allows; only `admin` is a super user.

    python -m devtools.broker fetch    # copy the jars (no-op when cached)
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.common.config import KafkaSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"
# Sized for a laptop, or two cores shared with the services and the tests: a
# small heap to start with, the serial collector, the client compiler only (at
# rest the server compiler alone took 0.1 core for minutes after start-up), and
# thread pools sized for two cores (issue 13).
JAVA_OPTS = ["-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-XX:ActiveProcessorCount=2", "-Djava.awt.headless=true"]
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


ADMIN = "admin"
SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Lock:
    """SASL users (name -> password; `admin`, the super user, is added) and the
    second, plain-TCP SASL port. Passwords are drawn when not given."""

    users: dict[str, str] = field(default_factory=dict)
    sasl_plaintext_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.users.setdefault(ADMIN, secrets.token_urlsafe(18))


class Broker:
    """One broker process; `start` formats the storage on first use."""

    def __init__(self, data_dir: Path, port: int, controller_port: int | None = None,
                 lock: Lock | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.controller_port = controller_port or free_port()
        self.lock = lock
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The broker's JVM (its CPU and memory are read from /proc)."""
        assert self._process is not None, "the broker is not running"
        return self._process.pid

    @property
    def bootstrap(self) -> str:
        """Where clients connect: PLAINTEXT, or SASL_SSL when locked."""
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed a locked broker's certificate (PEM)."""
        return self.data_dir / "tls" / "ca.crt"

    def kafka_settings(self, prefix: str, user: str = ADMIN, *, tls: bool = True,
                       password: str | None = None) -> KafkaSettings:
        """How `user` reaches this locked broker: SASL_SSL on `bootstrap`, or
        (`tls=False`) SASL_PLAINTEXT on the second port."""
        assert self.lock is not None, "only a locked broker has users"
        return KafkaSettings(
            bootstrap=self.bootstrap if tls else f"127.0.0.1:{self.lock.sasl_plaintext_port}",
            topic_prefix=prefix,
            security_protocol="SASL_SSL" if tls else "SASL_PLAINTEXT",
            sasl_mechanism=SCRAM, sasl_username=user,
            sasl_password=self.lock.users[user] if password is None else password,
            ssl_cafile=str(self.ca_file) if tls else None,
        )

    def service_env(self, user: str) -> dict[str, str]:
        """The `HOOKBUS_KAFKA_*` settings of a service logging in as `user` over SASL_SSL."""
        assert self.lock is not None, "only a locked broker has users"
        return {
            "HOOKBUS_KAFKA_BOOTSTRAP": self.bootstrap,
            "HOOKBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "HOOKBUS_KAFKA_SASL_MECHANISM": SCRAM,
            "HOOKBUS_KAFKA_SASL_USERNAME": user,
            "HOOKBUS_KAFKA_SASL_PASSWORD": self.lock.users[user],
            "HOOKBUS_KAFKA_SSL_CAFILE": str(self.ca_file),
        }

    def _java(self, *args: str) -> list[str]:
        return ["java", *JAVA_OPTS, "-cp", str(jars_dir() / "*"), *args]

    def _listeners(self) -> list[str]:
        if self.lock is None:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ]
        admin = self.lock.users[ADMIN]
        plain = self.lock.sasl_plaintext_port
        tls = self.data_dir / "tls"
        scram_login = (f"org.apache.kafka.common.security.scram.ScramLoginModule required "
                       f'username="{ADMIN}" password="{admin}";')
        return [
            # Clients: SCRAM over TLS (the broker talks to itself there too) and
            # over plain TCP. The controller's listener: PLAIN (SCRAM users live
            # in the metadata the controller serves), as admin.
            f"listeners=CLIENT://127.0.0.1:{self.port},SASL://127.0.0.1:{plain},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=CLIENT://127.0.0.1:{self.port},SASL://127.0.0.1:{plain}",
            "listener.security.protocol.map=CLIENT:SASL_SSL,SASL:SASL_PLAINTEXT,"
            "CONTROLLER:SASL_PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=CLIENT",
            f"sasl.enabled.mechanisms={SCRAM}",
            f"sasl.mechanism.inter.broker.protocol={SCRAM}",
            f"listener.name.client.scram-sha-512.sasl.jaas.config={scram_login}",
            f"listener.name.sasl.scram-sha-512.sasl.jaas.config={scram_login}",
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "listener.name.controller.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN}" password="{admin}" user_{ADMIN}="{admin}";',
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls / 'server.pem'}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls / 'ca.crt'}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{ADMIN}",
            "allow.everyone.if.no.acl.found=false",
        ]

    def _write_config(self) -> Path:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if self.lock is not None and not (self.data_dir / "tls" / "server.pem").exists():
            _write_certificates(self.data_dir / "tls")
        config = self.data_dir / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            *self._listeners(),
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
            "num.network.threads=2",
            "num.io.threads=2",
            "background.threads=2",
            "metadata.max.idle.interval.ms=2000",
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
            scram = [] if self.lock is None else [
                arg for name, password in sorted(self.lock.users.items())
                for arg in ("--add-scram", f"{SCRAM}=[name={name},password={password}]")]
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "--standalone",
                           "-t", cluster_id, "-c", str(config), *scram),
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


def _write_certificates(directory: Path) -> None:
    """A throwaway CA (`ca.crt`) and a certificate for 127.0.0.1 and localhost
    it signed, with its key (`server.pem`, PEM, as Kafka's PEM key store reads it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(name("hookbus development CA"))
          .issuer_name(name("hookbus development CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH, x509.OID_CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    server = directory / "server.pem"
    server.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
                       + cert.public_bytes(pem) + ca.public_bytes(pem))
    server.chmod(0o600)


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m devtools.broker fetch")
    print(fetch_jars())
