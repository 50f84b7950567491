"""The training manifests (deploy/k8s/training/): the Indexed Job and its headless Service pass strict schema
validation and the wiring checks; the TFJob matches the Kubeflow Training Operator's own models (the
kubeflow-training package) field for field, and its pod template passes strict validation as a PodTemplate.
Broken copies show that each check can fail."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from deploy import check_manifests
from tests.deploy.conftest import K8S

TRAINING = K8S / "training"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((TRAINING / name).read_text()) if d]


def _validate(tool, tmp_path, docs: list[dict]) -> subprocess.CompletedProcess:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return subprocess.run([tool("kubernetes-validate"), "--strict", "-k", "1.32.0", str(path)],
                          capture_output=True, text=True)


def _indexed_job_with_claims() -> list[dict]:
    claims = _docs("data-pvc.yaml") + [d for d in yaml.safe_load_all((K8S / "base" / "models-pvc.yaml").read_text())]
    return _docs("indexed-job.yaml") + claims


def test_indexed_job_passes_strict_schema_validation(tool, tmp_path):
    docs = _indexed_job_with_claims()
    result = _validate(tool, tmp_path, docs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(docs) == 4


def test_indexed_job_passes_wiring_checks_and_agrees_with_itself():
    docs = _indexed_job_with_claims()
    assert check_manifests.check(docs) == []
    job = next(d for d in docs if d["kind"] == "Job")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == int(env["TLSERVE_TRAIN_WORKERS"])
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"]
    assert env["TLSERVE_TRAIN_WORKER_ADDRESS"] == f"{job['metadata']['name']}-{{index}}.{pod['subdomain']}:2222"


def test_wiring_check_catches_a_broken_indexed_job():
    docs = _indexed_job_with_claims()
    next(d for d in docs if d["kind"] == "Service")["spec"]["selector"]["job-name"] = "tlserve-training"
    assert any("Service/tlserve-train: selector" in p for p in check_manifests.check(docs))


def _tfjob_round_trip(doc: dict) -> dict:
    """The TFJob read into kubeflow-training's models and written back: fields the models do not know vanish."""
    from kubeflow.training import models
    from kubeflow.training.api_client import ApiClient  # resolves the operator's and Kubernetes' models

    class Response:
        data = __import__("json").dumps(doc)

    job = ApiClient().deserialize(Response(), models.KubeflowOrgV1TFJob)
    return ApiClient().sanitize_for_serialization(job)


def test_tfjob_matches_the_training_operators_models():
    [doc] = _docs("tfjob.yaml")
    assert doc["apiVersion"] == "kubeflow.org/v1" and doc["kind"] == "TFJob"
    assert _tfjob_round_trip(doc) == doc
    specs = doc["spec"]["tfReplicaSpecs"]
    assert set(specs) == {"Chief", "Worker"} and specs["Chief"]["replicas"] == 1
    for spec in specs.values():
        # the operator finds the container by this name and the port by this name
        container = spec["template"]["spec"]["containers"][0]
        assert container["name"] == "tensorflow" and container["ports"][0]["name"] == "tfjob-port"


def test_tfjob_round_trip_catches_a_misspelt_field():
    [doc] = _docs("tfjob.yaml")
    broken = copy.deepcopy(doc)
    broken["spec"]["tfReplicaSpecs"]["Worker"]["replica"] = broken["spec"]["tfReplicaSpecs"]["Worker"].pop("replicas")
    assert _tfjob_round_trip(broken) != broken


@pytest.mark.parametrize("role", ["Chief", "Worker"])
def test_tfjob_pod_templates_pass_strict_validation(role, tool, tmp_path):
    [doc] = _docs("tfjob.yaml")
    template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"tlserve-train-{role.lower()}"},
                "template": doc["spec"]["tfReplicaSpecs"][role]["template"]}
    result = _validate(tool, tmp_path, [template])
    assert result.returncode == 0, result.stdout + result.stderr
    template["template"]["spec"]["containers"][0]["volumeMount"] = []
    assert _validate(tool, tmp_path, [template]).returncode != 0
