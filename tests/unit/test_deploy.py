"""The Kubernetes manifests: both kustomizations render, every core object is
valid against the Kubernetes schemas (offline, strict), the Strimzi topics
are exactly the contract's, as the code defines them, and its Kafka is locked:
each service logs in as its own KafkaUser, whose ACLs are exactly
`services.common.kafka_acls`'s, and producers may write `events` only."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from devtools.broker import ROOT
from devtools import k8s_users
from devtools.k8s_topics import OUTPUT, default_topics, render
from services.common.kafka_acls import PRODUCER, ROLES, acls, user_name

KUBERNETES_VERSION = "1.33"
CUSTOM_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "ServiceMonitor"}


def kustomize() -> str:
    built = ROOT / ".cache" / "bin" / "kustomize"
    found = str(built) if built.exists() else shutil.which("kustomize")
    assert found, "kustomize is missing: `make test` builds it into .cache/bin"
    return found


def rendered(path: str) -> list[dict]:
    output = subprocess.run([kustomize(), "build", str(ROOT / path)], check=True,
                            capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.mark.parametrize("path", ["deploy/k8s/base", "deploy/k8s/overlays/strimzi"])
def test_every_object_is_valid(path: str) -> None:
    objects = rendered(path)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "PodDisruptionBudget",
                                            "HorizontalPodAutoscaler", "ConfigMap", "Secret"}
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_deployments_are_probed_limited_and_unprivileged() -> None:
    for deployment in (o for o in rendered("deploy/k8s/base") if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["resources"]["limits"]["memory"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_strimzi_topics_are_the_contracts() -> None:
    assert OUTPUT.read_text() == render(default_topics()), "run python -m devtools.k8s_topics"
    topics = {o["spec"]["topicName"]: o["spec"] for o in rendered("deploy/k8s/overlays/strimzi")
              if o["kind"] == "KafkaTopic"}
    assert set(topics) == {s.name for s in default_topics().specs()}
    assert topics["hookbus.webhooks"]["config"]["cleanup.policy"] == "compact"
    assert {"hookbus.deliveries.retry.5s", "hookbus.deliveries.retry.10h"} <= set(topics)


def test_sealing_keys_reach_only_the_services_that_hold_secrets_and_fail_closed() -> None:
    """The base ships no usable sealing key: ingest and the deliverer refuse to
    start until one is set; the router, which never sees a secret, gets none."""
    from services.common.config import ConfigError, Env
    from services.common.sealing import keys_from_env

    objects = rendered("deploy/k8s/base")
    sealing = next(o for o in objects if o["kind"] == "Secret"
                   and o["metadata"]["name"].startswith("hookbus-sealing"))
    with pytest.raises(ConfigError):
        keys_from_env(Env(sealing["stringData"]))
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        sources = [ref.get("secretRef", {}).get("name", "")
                   for container in deployment["spec"]["template"]["spec"]["containers"]
                   for ref in container.get("envFrom", [])]
        holds_secrets = deployment["metadata"]["name"] in ("hookbus-ingest", "hookbus-deliverer")
        assert any(s.startswith("hookbus-sealing") for s in sources) is holds_secrets


def test_strimzi_users_have_exactly_the_acls_of_the_code() -> None:
    assert k8s_users.USERS.read_text() == k8s_users.render_users(k8s_users.default_topics()) \
        and k8s_users.ACCESS.read_text() == k8s_users.render_access(), \
        "run python -m devtools.k8s_users"
    users = {o["metadata"]["name"]: o["spec"] for o in rendered("deploy/k8s/overlays/strimzi")
             if o["kind"] == "KafkaUser"}
    expected = acls(k8s_users.default_topics())
    assert set(users) == {user_name(role) for role in ROLES}
    for role in ROLES:
        spec = users[user_name(role)]
        assert spec["authentication"] == {"type": "scram-sha-512"}
        assert spec["authorization"]["type"] == "simple"
        granted = sorted((r["resource"]["type"], r["resource"].get("name", ""),
                          r["resource"].get("patternType", "literal"), tuple(r["operations"]),
                          r.get("type", "allow"), r["host"])
                         for r in spec["authorization"]["acls"])
        assert granted == sorted((a.resource_type, a.name, a.pattern, a.operations, "allow", "*")
                                 for a in expected[role])


def test_producers_may_write_events_and_nothing_else() -> None:
    [producer] = [o["spec"] for o in rendered("deploy/k8s/overlays/strimzi")
                  if o["kind"] == "KafkaUser" and o["metadata"]["name"] == user_name(PRODUCER)]
    assert producer["authorization"]["acls"] == [{
        "resource": {"type": "topic", "name": "hookbus.events", "patternType": "literal"},
        "operations": ["Write"], "host": "*"}]


def test_strimzi_kafka_takes_only_scram_over_tls_and_authorizes() -> None:
    objects = rendered("deploy/k8s/overlays/strimzi")
    [kafka] = [o["spec"] for o in objects if o["kind"] == "Kafka"]
    assert kafka["kafka"]["authorization"] == {"type": "simple"}
    assert kafka["kafka"]["listeners"] == [{"name": "tls", "port": 9093, "type": "internal",
                                            "tls": True,
                                            "authentication": {"type": "scram-sha-512"}}]
    assert "userOperator" in kafka["entityOperator"]
    [config] = [o["data"] for o in objects if o["kind"] == "ConfigMap"]
    assert config["HOOKBUS_KAFKA_BOOTSTRAP"] == "hookbus-kafka-bootstrap:9093"
    assert config["HOOKBUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["HOOKBUS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        service = deployment["metadata"]["name"].removeprefix("hookbus-")
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["HOOKBUS_KAFKA_SASL_USERNAME"]["value"] == f"hookbus-{service}"
        assert env["HOOKBUS_KAFKA_SASL_PASSWORD"]["valueFrom"] == {
            "secretKeyRef": {"name": f"hookbus-{service}", "key": "password"}}
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "kafka-ca"]
        assert config["HOOKBUS_KAFKA_SSL_CAFILE"] == mount["mountPath"] + "/ca.crt"
        [volume] = [v for v in pod["volumes"] if v["name"] == "kafka-ca"]
        assert volume["secret"]["secretName"] == "hookbus-cluster-ca-cert"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]



def test_the_event_log_runs_beside_the_services_and_ingest_finds_it() -> None:
    """Two instances (each partition's standby on the other), its RocksDB in a
    volume of the pod (the changelog and the standby rebuild it), advertised at
    the pod's own address; ingest reaches any instance through the Service. The
    retention in the ConfigMap is the one the topics are made with."""
    from urllib.parse import urlsplit

    from services.common.config import Env, event_log_retention_from_env

    objects = rendered("deploy/k8s/base")
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    eventlog = deployments["hookbus-eventlog"]
    assert eventlog["spec"]["replicas"] >= 2
    pod = eventlog["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["services.eventlog"]
    env = [e["name"] for e in container["env"]]
    values = {e["name"]: e for e in container["env"]}
    assert values["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert values["HOOKBUS_EVENTLOG_URL"]["value"] == "http://$(POD_IP):8090"
    # Kubernetes expands $(NAME) only from variables defined before.
    assert env.index("POD_IP") < env.index("HOOKBUS_EVENTLOG_URL")
    assert values["HOOKBUS_EVENTLOG_HTTP_PORT"]["value"] == "8090"
    assert values["HOOKBUS_EVENTLOG_HTTP_HOST"]["value"] == "0.0.0.0"
    [port] = container["ports"]
    assert port == {"name": "http", "containerPort": 8090}
    data_dir = values["HOOKBUS_EVENTLOG_DATA_DIR"]["value"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume

    [service] = [o for o in objects
                 if o["kind"] == "Service" and o["metadata"]["name"] == "hookbus-eventlog"]
    assert service["spec"]["selector"] == eventlog["spec"]["selector"]["matchLabels"]
    ingest = deployments["hookbus-ingest"]["spec"]["template"]["spec"]["containers"][0]
    urls = {e["name"]: e["value"] for e in ingest["env"]}["HOOKBUS_EVENTLOG_URLS"]
    for url in urls.split(","):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == (
            "hookbus-eventlog", service["spec"]["ports"][0]["port"])

    [config] = [o["data"] for o in objects if o["kind"] == "ConfigMap"]
    retention = event_log_retention_from_env(Env(config))
    topics = {s.name: s.config for s in default_topics().specs()}
    assert topics["hookbus.events"]["retention.ms"] == str(int(retention * 1000))
