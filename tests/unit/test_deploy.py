"""The Kubernetes manifests: both kustomizations render, every core object is
valid against the Kubernetes schemas (offline, strict), and the Strimzi topics
are exactly the contract's, as the code defines them."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from devtools.broker import ROOT
from devtools.k8s_topics import OUTPUT, default_topics, render

KUBERNETES_VERSION = "1.33"
CUSTOM_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "ServiceMonitor"}


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
