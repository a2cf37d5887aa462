"""deploy/kubernetes/: each manifest is valid against the Kubernetes API's own schemas
(kubernetes-validate, strict: an unknown field is an error) for the version below, and the
manifests agree with the service: probes on its health routes, a grace period above the
preStop pause plus Hypercorn's graceful timeout, settings it knows, secrets by reference."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.settings import Settings
from tests.e2e.server import PROJECT_ROOT

KUBERNETES_VERSION = "1.33.0"  # the oldest release still supported upstream when written
MANIFESTS = PROJECT_ROOT / "deploy" / "kubernetes"


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource of the folder, by kind."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in documents(path):
            by_kind[document["kind"]] = document
    return by_kind


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda path: path.name)
def test_each_manifest_is_valid_for_the_kubernetes_api(path: Path) -> None:
    for document in documents(path):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_what_the_api_would() -> None:
    deployment = manifests()["Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}  # a misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


OTEL_SDK_VARIABLES = {"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}


def test_the_deployment_agrees_with_the_service() -> None:
    resources = manifests()
    deployment = resources["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # SIGTERM comes after the preStop pause; then websockets get 1001 and requests in flight
    # finish within graceful_timeout; the kubelet's SIGKILL must come later still.
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = tomllib.loads((PROJECT_ROOT / "hypercorn.toml").read_text())["graceful_timeout"]
    assert pod["terminationGracePeriodSeconds"] > pause + graceful
    # Every variable is a setting the service reads, or one the OpenTelemetry SDK reads
    # itself (app/tracing.py); secrets come by reference only.
    known = {name.upper() for name in Settings.model_fields} | OTEL_SDK_VARIABLES
    for variable in container["env"]:
        assert variable["name"] in known, variable["name"]
        if variable["name"] in {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}:
            assert "secretKeyRef" in variable["valueFrom"], variable
    # The Service, the budget and the autoscaler all point at these pods.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert resources["Service"]["spec"]["selector"].items() <= labels.items()
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    target = resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # The migration runs the schema upgrade, and the replicas do not (one run per rollout).
    job = resources["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"][-1] == "init-db"
    assert "--migrate" not in container["command"]
