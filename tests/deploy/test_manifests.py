"""The Kubernetes manifests: both overlays render, pass strict schema validation and the wiring checks,
and say what the issue asks of them. Broken copies show that each check can fail."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from deploy import check_manifests
from tests.deploy.conftest import K8S, OVERLAYS, render


def _one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container(docs: list[dict]) -> dict:
    return _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_strict_schema_validation(overlay, rendered, tool, tmp_path):
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered[overlay])
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", "1.32.0", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(list(yaml.safe_load_all(rendered[overlay])))


def test_schema_validation_rejects_a_wrong_field(docs, tool, tmp_path):
    deployment = _one(docs["cpu"], "Deployment")
    deployment["spec"]["replicas"] = "two"
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(docs["cpu"]))
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", "1.32.0", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "replicas" in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_wiring_checks(overlay, docs):
    assert check_manifests.check(docs[overlay]) == []


def _break_pod_labels(docs):
    _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"


def _break_service_target_port(docs):
    _one(docs, "Service")["spec"]["ports"][1]["targetPort"] = "grcp"


def _break_service_selector(docs):
    _one(docs, "Service")["spec"]["selector"]["app.kubernetes.io/instance"] = "tlserv"


def _break_probe_port(docs):
    _container(docs)["readinessProbe"]["httpGet"]["port"] = 3001


def _break_pdb_selector(docs):
    _one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "tlsrv"


def _break_hpa_target(docs):
    _one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "tlserve-old"


def _break_configmap_ref(docs):
    _container(docs)["envFrom"][0]["configMapRef"]["name"] = "tlserve-config"  # the name before the hash suffix


def _break_volume_mount(docs):
    _container(docs)["volumeMounts"][0]["name"] = "model"


BREAKAGES = {
    "pod labels no longer match the Deployment selector": (_break_pod_labels, "selector"),
    "Service targetPort names no container port": (_break_service_target_port, "targetPort 'grcp'"),
    "Service selector matches no pod": (_break_service_selector, "Service/tlserve: selector"),
    "probe port is not a container port": (_break_probe_port, "readinessProbe port 3001"),
    "PDB selector matches no pod": (_break_pdb_selector, "PodDisruptionBudget/tlserve"),
    "HPA targets a missing Deployment": (_break_hpa_target, "scaleTargetRef Deployment/tlserve-old"),
    "envFrom names a missing ConfigMap": (_break_configmap_ref, "envFrom ConfigMap 'tlserve-config'"),
    "volumeMount names no volume": (_break_volume_mount, "volumeMount 'model'"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_wiring_check_catches_a_broken_manifest(breakage, docs):
    breaks, expected = BREAKAGES[breakage]
    breaks(docs["cpu"])
    problems = check_manifests.check(docs["cpu"])
    assert any(expected in p for p in problems), problems


def test_wiring_check_command_exits_1_on_a_broken_file_and_0_on_a_good_one(docs, rendered, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(rendered["cpu"])
    assert check_manifests.main([str(good)]) == 0
    assert "ok: 6 objects" in capsys.readouterr().out
    _break_service_target_port(docs["cpu"])
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs["cpu"]))
    assert check_manifests.main([str(broken)]) == 1
    assert "targetPort 'grcp'" in capsys.readouterr().out
    not_yaml = tmp_path / "not.yaml"
    not_yaml.write_text("just: [a, string\n")
    assert check_manifests.main([str(not_yaml)]) == 2
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n")
    assert check_manifests.main([str(empty)]) == 2


def test_selector_expressions_follow_kubernetes_semantics():
    labels = {"app": "tlserve", "tier": "gpu"}
    assert check_manifests.selector_matches({"matchExpressions": [{"key": "tier", "operator": "In",
                                                                   "values": ["gpu", "cpu"]}]}, labels)
    assert not check_manifests.selector_matches({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                                       "values": ["gpu"]}]}, labels)
    assert not check_manifests.selector_matches({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)
    assert check_manifests.selector_matches({"matchLabels": {"app": "tlserve"}}, labels)
    assert not check_manifests.selector_matches({"matchLabels": {"app": "other"}}, labels)


@pytest.mark.parametrize("overlay", ("cpu", "gpu"))
def test_deployment_runs_safely_and_drains(overlay, docs):
    config = _one(docs[overlay], "ConfigMap")["data"]
    deployment = _one(docs[overlay], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(docs[overlay])
    # the grace period covers the server's drain delay and shutdown grace
    drain = float(config["TLSERVE_DRAIN_DELAY_S"]) + float(config["TLSERVE_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert "/tmp" in mounts  # BentoML's home and the Prometheus multiprocess directory live there
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BENTOML_HOME"].startswith("/tmp/") and env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "startupProbe" in container
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", ("cpu", "gpu"))
def test_service_exposes_http_and_grpc_with_app_protocol(overlay, docs):
    ports = {p["name"]: p for p in _one(docs[overlay], "Service")["spec"]["ports"]}
    assert (ports["http"]["port"], ports["http"]["appProtocol"]) == (3000, "http")
    assert (ports["grpc"]["port"], ports["grpc"]["appProtocol"]) == (8500, "grpc")


def test_gpu_overlay_requests_a_gpu_on_gpu_nodes(docs):
    pod = _one(docs["gpu"], "Deployment")["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert "nvidia.com/gpu" not in _container(docs["cpu"])["resources"]["limits"]


def test_podman_local_overlay_uses_the_local_image_and_a_host_model_directory(docs):
    pod = _one(docs["podman-local"], "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith("localhost/")
    assert pod["containers"][0]["imagePullPolicy"] == "Never"
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert "hostPath" in models


def test_queue_depth_hpa_example_validates_and_targets_the_deployment(docs, tool):
    example = K8S / "examples" / "hpa-queue-depth.yaml"
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", "1.32.0", str(example)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    hpa = yaml.safe_load(example.read_text())
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "tlserve_queue_depth"
    with_example = [d for d in docs["cpu"] if d["kind"] != "HorizontalPodAutoscaler"] + [hpa]
    assert check_manifests.check(with_example) == []


def test_service_monitor_example_selects_the_service_port(docs):
    monitor = yaml.safe_load((K8S / "examples" / "servicemonitor.yaml").read_text())
    service = _one(docs["cpu"], "Service")
    assert check_manifests.selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_init_container_example_renders_validates_and_is_wired(tool, tmp_path):
    """The object-storage variant, applied to the CPU overlay as the example's comment says."""
    root = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {root}/overlays/cpu\npatches:\n  - path: {root}/examples/models-init-container.yaml\n")
    out = subprocess.run([tool("kubectl"), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(tmp_path)],
                         check=True, text=True, capture_output=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-models"]
    assert next(v for v in pod["volumes"] if v["name"] == "models") == {"name": "models", "emptyDir": {"sizeLimit": "5Gi"}}
    assert check_manifests.check(docs) == []
    (tmp_path / "rendered.yaml").write_text(out)
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", "1.32.0", str(tmp_path / "rendered.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_s3_example_renders_validates_and_is_wired(tool, tmp_path):
    """The object-store repository, applied to the CPU overlay as the example's comment says."""
    root = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {root}/overlays/cpu\n  - {root}/examples/models-s3-serviceaccount.yaml\n"
        f"patches:\n  - path: {root}/examples/models-s3.yaml\n")
    out = subprocess.run([tool("kubectl"), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(tmp_path)],
                         check=True, text=True, capture_output=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:2] == ["--model-repo", "s3://YOUR-BUCKET/models"]
    config_map = _one(docs, "ConfigMap")["metadata"]["name"]  # generated, with its content hash
    assert container["envFrom"] == [{"configMapRef": {"name": config_map}},  # kept beside the Secret
                                    {"secretRef": {"name": "tlserve-models-s3", "optional": True}}]
    assert next(m for m in container["volumeMounts"] if m["name"] == "models")["readOnly"] is False
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    assert models == {"name": "models", "emptyDir": {"sizeLimit": "5Gi"}}
    assert check_manifests.check(docs) == []
    without_account = [d for d in docs if d["kind"] != "ServiceAccount"]
    assert check_manifests.check(without_account) == [
        "Deployment/tlserve: serviceAccountName 'tlserve-models' is not in the manifests"]
    (tmp_path / "rendered.yaml").write_text(out)
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", "1.32.0", str(tmp_path / "rendered.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_fails_loudly_on_a_broken_kustomization(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(subprocess.CalledProcessError):
        render(tmp_path)
