"""Wiring checks for rendered Kubernetes manifests: what schema validation cannot see.

``kubernetes-validate`` checks each object against its schema alone. A Service whose selector matches no
pod, a targetPort or probe port the container does not declare, a PodDisruptionBudget that protects
nothing or an HPA aimed at a missing Deployment all pass it, and fail only on a live cluster. This module
checks the objects against each other:

    kubectl kustomize deploy/k8s/overlays/cpu | python deploy/check_manifests.py -

prints one line per problem and exits 1, or prints "ok: N objects" and exits 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


@dataclass(frozen=True)
class Workload:
    """A pod-template owner, with what the other objects point at."""
    kind: str
    name: str
    namespace: str
    pod_labels: dict
    pod_spec: dict

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def load(text: str) -> list[dict]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ValueError(f"document {i + 1} is not a Kubernetes object (no kind)")
    return docs


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """Kubernetes' LabelSelector semantics (matchLabels and matchExpressions); an empty selector matches all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _namespace(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace", "")


def _workloads(docs: list[dict]) -> list[Workload]:
    found = []
    for obj in docs:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        template = (obj.get("spec") or {}).get("template") or {}
        found.append(Workload(obj["kind"], _name(obj), _namespace(obj),
                              (template.get("metadata") or {}).get("labels") or {}, template.get("spec") or {}))
    return found


def _containers(pod_spec: dict) -> list[dict]:
    return list(pod_spec.get("containers") or []) + list(pod_spec.get("initContainers") or [])


def _port_declared(port, container: dict) -> bool:
    """A port given by name or number is among the container's declared ports."""
    for declared in container.get("ports") or []:
        if isinstance(port, str) and not port.isdigit():
            if declared.get("name") == port:
                return True
        elif declared.get("containerPort") == int(port):
            return True
    return False


def _check_workload(w: Workload, by_kind: dict) -> list[str]:
    problems = []
    account = w.pod_spec.get("serviceAccountName")
    if account and account != "default" and (w.namespace, account) not in by_kind.get("ServiceAccount", {}):
        problems.append(f"{w.ref}: serviceAccountName {account!r} is not in the manifests")
    volumes = {v.get("name"): v for v in w.pod_spec.get("volumes") or []}
    for container in _containers(w.pod_spec):
        where = f"{w.ref} container {container.get('name')}"
        for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_kind)
            if not probe:
                continue
            for handler in ("httpGet", "tcpSocket", "grpc"):
                if handler in probe and not _port_declared(probe[handler].get("port"), container):
                    problems.append(f"{where}: {probe_kind} port {probe[handler].get('port')!r} "
                                    "is not a declared container port")
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problems.append(f"{where}: volumeMount {mount.get('name')!r} names no volume of the pod")
        for source in container.get("envFrom") or []:
            for ref_key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = source.get(ref_key)
                if ref and not ref.get("optional") and (w.namespace, ref.get("name")) not in by_kind.get(kind, {}):
                    problems.append(f"{where}: envFrom {kind} {ref.get('name')!r} is not in the manifests")
    for name, volume in volumes.items():
        if "configMap" in volume and not volume["configMap"].get("optional"):
            if (w.namespace, volume["configMap"].get("name")) not in by_kind.get("ConfigMap", {}):
                problems.append(f"{w.ref}: volume {name!r} ConfigMap {volume['configMap'].get('name')!r} "
                                "is not in the manifests")
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"].get("claimName")
            if (w.namespace, claim) not in by_kind.get("PersistentVolumeClaim", {}):
                problems.append(f"{w.ref}: volume {name!r} PersistentVolumeClaim {claim!r} is not in the manifests")
    return problems


def check(docs: list[dict]) -> list[str]:
    """Every wiring problem found, one sentence each; empty when the objects fit together."""
    problems: list[str] = []
    by_kind: dict[str, dict[tuple[str, str], dict]] = {}
    for obj in docs:
        by_kind.setdefault(obj["kind"], {})[(_namespace(obj), _name(obj))] = obj
    workloads = _workloads(docs)

    for obj in docs:
        spec = obj.get("spec") or {}
        if obj["kind"] in WORKLOAD_KINDS and obj["kind"] != "Job":
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not spec.get("selector") or not selector_matches(spec["selector"], labels):
                problems.append(f"{obj['kind']}/{_name(obj)}: selector {spec.get('selector')} "
                                f"does not match its pod template labels {labels}")
    for w in workloads:
        problems += _check_workload(w, by_kind)

    for (ns, name), svc in by_kind.get("Service", {}).items():
        selector = (svc.get("spec") or {}).get("selector")
        if not selector:
            continue  # a Service without selector has its endpoints managed by hand
        pods = [w for w in workloads if w.namespace == ns and selector_matches({"matchLabels": selector}, w.pod_labels)]
        if not pods:
            problems.append(f"Service/{name}: selector {selector} matches no pod template")
            continue
        for port in svc["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for w in pods:
                if not any(_port_declared(target, c) for c in w.pod_spec.get("containers") or []):
                    problems.append(f"Service/{name}: port {port.get('name') or port.get('port')} targetPort "
                                    f"{target!r} is not a container port of {w.ref}")

    for (ns, name), pdb in by_kind.get("PodDisruptionBudget", {}).items():
        selector = (pdb.get("spec") or {}).get("selector")
        if not any(w.namespace == ns and selector_matches(selector, w.pod_labels) for w in workloads):
            problems.append(f"PodDisruptionBudget/{name}: selector {selector} matches no pod template")

    for (ns, name), hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if (ns, target.get("name")) not in by_kind.get(target.get("kind", ""), {}):
            problems.append(f"HorizontalPodAutoscaler/{name}: scaleTargetRef {target.get('kind')}/"
                            f"{target.get('name')} is not in the manifests")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: check_manifests.py FILE.yaml... (or - for standard input)", file=sys.stderr)
        return 2
    docs = []
    for path in argv:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
            docs += load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            print(f"{path}: cannot read manifests: {e}", file=sys.stderr)
            return 2
    if not docs:
        print("no Kubernetes objects in the input", file=sys.stderr)
        return 2
    problems = check(docs)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {len(docs)} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
