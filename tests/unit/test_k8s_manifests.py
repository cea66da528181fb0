"""Static checks of deploy/k8s/: the Kubernetes manifests, without a cluster.

Every document validates against the Kubernetes 1.30 OpenAPI schemas (kubernetes-validate, strict:
an unknown or misspelt field fails), and the wiring a schema cannot see holds: every `CASCADE_*`
variable is a setting, the admin token comes from the Secret, the recall ConfigMap is
config/recall.toml, Triton asks for a GPU and is ready on /v2/health/ready, the orchestrator has a
CPU HPA, Redis persists like docker/compose.yaml, and every selector finds its pods.
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cascade.settings import MIN_ADMIN_TOKEN_BYTES, Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
KUSTOMIZATION = K8S / "kustomization.yaml"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)
# Shipped for the operator to use by hand, not applied by `kubectl apply -k`.
NOT_IN_KUSTOMIZATION = {"admin-token-secret.template.yaml", "models-loader.yaml"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")
ADMIN_TOKEN = "CASCADE_ADMIN_TOKEN"

Doc = dict[str, Any]


# --- loading -------------------------------------------------------------------------------


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents(paths: Iterable[Path] = MANIFESTS) -> list[Doc]:
    return [doc for path in paths for doc in documents(path)]


def applied_documents() -> list[Doc]:
    """What `kubectl apply -k deploy/k8s` creates: the kustomization's resources."""
    return all_documents(K8S / name for name in documents(KUSTOMIZATION)[0]["resources"])


def named(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


# --- helpers (each checked on a bad sample below) -------------------------------------------


def schema_error(doc: Doc, version: str = KUBERNETES_VERSION) -> str | None:
    """Why `doc` does not validate against Kubernetes `version` (strict: no unknown fields), or None."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return str(err).splitlines()[0]
    return None


def pod_spec(doc: Doc) -> Doc | None:
    """The pod spec of a workload (its template's), or None for other kinds."""
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def pod_labels(doc: Doc) -> dict[str, str]:
    if doc["kind"] == "Pod":
        return doc["metadata"].get("labels") or {}
    return doc["spec"]["template"]["metadata"].get("labels") or {}


def containers(doc: Doc) -> list[Doc]:
    """A workload's containers, init containers included."""
    spec = pod_spec(doc) or {}
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(doc: Doc, name: str) -> Doc:
    [found] = [c for c in containers(doc) if c["name"] == name]
    return found


def setting_variables() -> set[str]:
    """Every environment variable Settings reads (prefix + field name; pydantic-settings matches
    them case-insensitively, so upper case here)."""
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def unknown_settings(docs: Iterable[Doc]) -> list[str]:
    """`CASCADE_*` variables the containers set that no setting reads (silently ignored otherwise)."""
    return sorted(
        env["name"] for doc in docs for c in containers(doc) for env in c.get("env", [])
        if env["name"].upper().startswith("CASCADE_") and env["name"].upper() not in setting_variables()
    )


def literal_admin_tokens(docs: Iterable[Doc]) -> list[str]:
    """Containers that set CASCADE_ADMIN_TOKEN other than from a Secret (a value in the manifest)."""
    return [
        f"{doc['metadata']['name']}/{c['name']}" for doc in docs for c in containers(doc) for env in c.get("env", [])
        if env["name"].upper() == ADMIN_TOKEN and "secretKeyRef" not in (env.get("valueFrom") or {})
    ]


def selector_labels(doc: Doc) -> dict[str, str] | None:
    """The labels a Service, PodDisruptionBudget or NetworkPolicy selects pods by, else None."""
    if doc["kind"] == "Service":
        return doc["spec"].get("selector")
    if doc["kind"] == "PodDisruptionBudget":
        return doc["spec"]["selector"]["matchLabels"]
    if doc["kind"] == "NetworkPolicy":
        return doc["spec"]["podSelector"]["matchLabels"]
    return None


def unmatched_selectors(docs: list[Doc]) -> list[str]:
    """Selectors (Services, PDBs, NetworkPolicies, workloads' own) that select no workload's pods."""
    labels = [pod_labels(d) for d in docs if d["kind"] in WORKLOAD_KINDS]
    missing = []
    for doc in docs:
        wanted = selector_labels(doc)
        if wanted is not None and not any(wanted.items() <= have.items() for have in labels):
            missing.append(f"{doc['kind']}/{doc['metadata']['name']}")
        if doc["kind"] in WORKLOAD_KINDS and doc["kind"] != "Pod":
            if not doc["spec"]["selector"]["matchLabels"].items() <= pod_labels(doc).items():
                missing.append(f"{doc['kind']}/{doc['metadata']['name']} (its own template)")
    return missing


def cpu_hpa_targets(docs: Iterable[Doc]) -> set[tuple[str, str]]:
    """(kind, name) of what autoscaling/v2 HPAs scale on CPU utilisation."""
    targets = set()
    for doc in docs:
        if doc["kind"] != "HorizontalPodAutoscaler" or doc["apiVersion"] != "autoscaling/v2":
            continue
        on_cpu = any(
            m["type"] == "Resource" and m["resource"]["name"] == "cpu"
            and m["resource"]["target"]["type"] == "Utilization"
            for m in doc["spec"].get("metrics", [])
        )
        if on_cpu and doc["spec"]["minReplicas"] <= doc["spec"]["maxReplicas"]:
            ref = doc["spec"]["scaleTargetRef"]
            targets.add((ref["kind"], ref["name"]))
    return targets


def env_values(c: Doc) -> dict[str, str]:
    """A container's literal env values (those from a Secret or ConfigMap left out)."""
    return {env["name"]: env["value"] for env in c.get("env", []) if "value" in env}


def mount_of(doc: Doc, c: Doc, path: str) -> tuple[Doc, Doc]:
    """(volume mount, volume) under which `path` lies in container `c` of workload `doc`."""
    mounts = [m for m in c.get("volumeMounts", []) if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"{c['name']}: nothing mounted at {path}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    [volume] = [v for v in pod_spec(doc)["volumes"] if v["name"] == mount["name"]]
    return mount, volume


def http_probe(c: Doc, probe: str) -> tuple[str, int | str]:
    get = c[probe]["httpGet"]
    return get["path"], get["port"]


def port_number(c: Doc, port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    return number


def iter_service_ports(docs: list[Doc]) -> Iterator[tuple[Doc, Doc, Doc]]:
    """(Service, port, workload) for every port of every Service with a selector."""
    for svc in docs:
        if svc["kind"] != "Service" or not svc["spec"].get("selector"):
            continue
        for workload in docs:
            if workload["kind"] in WORKLOAD_KINDS and svc["spec"]["selector"].items() <= pod_labels(workload).items():
                for port in svc["spec"]["ports"]:
                    yield svc, port, workload


# --- the helpers on bad samples -------------------------------------------------------------


def deployment_sample(env: list[Doc], labels: dict[str, str] | None = None) -> Doc:
    labels = labels or {"app": "x"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i", "env": env}]}},
        },
    }


def test_unknown_settings_flags_a_made_up_variable() -> None:
    sample = deployment_sample([{"name": "CASCADE_FOO", "value": "1"}, {"name": "CASCADE_PORT", "value": "8080"},
                                {"name": "cascade_triton_host", "value": "t"}, {"name": "OPENBLAS_NUM_THREADS", "value": "1"}])
    assert unknown_settings([sample]) == ["CASCADE_FOO"]


def test_literal_admin_token_is_flagged() -> None:
    literal = deployment_sample([{"name": ADMIN_TOKEN, "value": "x" * 64}])
    from_configmap = deployment_sample([{"name": ADMIN_TOKEN, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}])
    from_secret = deployment_sample([{"name": ADMIN_TOKEN, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    assert literal_admin_tokens([literal]) == ["x/c"]
    assert literal_admin_tokens([from_configmap]) == ["x/c"]
    assert literal_admin_tokens([from_secret]) == []


def test_unmatched_selectors_on_samples() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"selector": {"app": "y"}, "ports": [{"port": 80}]}}
    assert unmatched_selectors([deployment_sample([]), service]) == ["Service/s"]
    assert unmatched_selectors([deployment_sample([], {"app": "y"}), service]) == ["Deployment/x (its own template)"]
    assert unmatched_selectors([deployment_sample([], {"app": "x", "tier": "t"}), {**service, "spec": {"selector": {"app": "x"}}}]) == []


def test_cpu_hpa_targets_on_samples() -> None:
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                    "minReplicas": 2, "maxReplicas": 4,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}
    on_memory = copy.deepcopy(hpa)
    on_memory["spec"]["metrics"][0]["resource"]["name"] = "memory"
    assert cpu_hpa_targets([hpa]) == {("Deployment", "x")}
    assert cpu_hpa_targets([on_memory]) == set()


def test_strict_validation_rejects_a_misspelt_field() -> None:
    sample = deployment_sample([])
    assert schema_error(sample) is None
    sample["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert "imagePullPolcy" in (schema_error(sample) or "")


# --- the manifests -------------------------------------------------------------------------


def test_manifests_are_there() -> None:
    names = {p.name for p in MANIFESTS}
    assert {"orchestrator.yaml", "triton.yaml", "redis.yaml", "recall-configmap.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_document_validates(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name}: no documents"
    for doc in docs:
        assert schema_error(doc) is None, f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {schema_error(doc)}"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = documents(KUSTOMIZATION)[0]
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {p.name for p in MANIFESTS} - NOT_IN_KUSTOMIZATION
    named(applied_documents(), "Namespace", kustomization["namespace"])


def test_names_are_unique_per_kind() -> None:
    keys = [(d["kind"], d["metadata"]["name"]) for d in all_documents()]
    assert len(keys) == len(set(keys))


def test_containers_set_only_real_settings() -> None:
    assert unknown_settings(all_documents()) == []


def test_admin_token_comes_from_the_secret_template() -> None:
    docs = all_documents()
    assert literal_admin_tokens(docs) == []
    secret = named(docs, "Secret", "cascade-admin-token")
    refs = [env["valueFrom"]["secretKeyRef"] for d in docs for c in containers(d) for env in c.get("env", [])
            if env["name"] == ADMIN_TOKEN]
    assert refs, "no container gets CASCADE_ADMIN_TOKEN"
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert not ref.get("optional", False)
    # The template is not applied, and its placeholder is too short for the orchestrator to start with.
    assert "Secret" not in {d["kind"] for d in applied_documents()}
    assert all(len(v.encode()) < MIN_ADMIN_TOKEN_BYTES for v in secret["stringData"].values())


def test_recall_configmap_is_the_repository_file() -> None:
    configmap = named(all_documents(), "ConfigMap", "cascade-recall")
    assert configmap["data"]["recall.toml"] == (REPO / "config" / "recall.toml").read_text()


def test_every_selector_finds_its_pods() -> None:
    assert unmatched_selectors(applied_documents()) == []


def test_service_ports_reach_container_ports() -> None:
    seen = 0
    for svc, port, workload in iter_service_ports(applied_documents()):
        target = port.get("targetPort", port["port"])
        numbers = {p["containerPort"] for c in containers(workload) for p in c.get("ports", [])}
        names = {p.get("name") for c in containers(workload) for p in c.get("ports", [])}
        assert (target in names) if isinstance(target, str) else (target in numbers), f"Service/{svc['metadata']['name']}: {target}"
        seen += 1
    assert seen >= 5


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) not installed")
def test_kustomize_renders_valid_documents() -> None:
    """`kubectl kustomize` (what `kubectl apply -k` applies) renders, in the namespace, and validates."""
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc is not None]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in applied_documents()
    )
    for doc in docs:
        assert schema_error(doc) is None
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "cascade"


def test_image_pull_policies_are_valid() -> None:
    """The schemas take any string here; the API server does not."""
    for doc in all_documents():
        for c in containers(doc):
            assert c.get("imagePullPolicy", "IfNotPresent") in {"Always", "IfNotPresent", "Never"}, c["name"]


def test_pods_run_as_non_root() -> None:
    for doc in all_documents():
        spec = pod_spec(doc)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for c in containers(doc):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]


# --- orchestrator --------------------------------------------------------------------------


def orchestrator() -> tuple[Doc, Doc]:
    deployment = named(applied_documents(), "Deployment", "cascade-orchestrator")
    return deployment, container(deployment, "orchestrator")


def test_orchestrator_is_scaled_by_a_cpu_hpa() -> None:
    docs = applied_documents()
    deployment, _ = orchestrator()
    assert ("Deployment", "cascade-orchestrator") in cpu_hpa_targets(docs)
    hpa = named(docs, "HorizontalPodAutoscaler", "cascade-orchestrator")
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    pdb = named(docs, "PodDisruptionBudget", "cascade-orchestrator")
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain must be able to evict one"


def test_orchestrator_settings_resolve() -> None:
    """The env, with a real-length token in place of the Secret, is a valid Settings, wired to the
    Services and volumes of these manifests; the template's placeholder is refused."""
    docs = applied_documents()
    deployment, c = orchestrator()
    env = env_values(c)
    assert env["CASCADE_HOST"] == "0.0.0.0" and env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["CASCADE_WORKERS"] in ("1", "2")
    overrides = {k.removeprefix("CASCADE_").lower(): v for k, v in env.items() if k.startswith("CASCADE_")}
    settings = Settings(**overrides, admin_token="t" * MIN_ADMIN_TOKEN_BYTES)
    with pytest.raises(ValueError, match="CASCADE_ADMIN_TOKEN"):
        Settings(**overrides, admin_token="REPLACE-ME")

    assert port_number(c, "http") == settings.port
    triton = named(docs, "Service", settings.triton_host)
    assert {p["port"] for p in triton["spec"]["ports"]} >= {settings.triton_http_port, settings.triton_grpc_port}
    assert settings.redis_url == f"redis://cascade-redis:{settings.redis_port}/0"
    named(docs, "Service", "cascade-redis")

    mount, volume = mount_of(deployment, c, str(settings.recall_config))
    assert "subPath" not in mount, "a subPath mount never sees an edited ConfigMap"
    configmap = named(docs, "ConfigMap", volume["configMap"]["name"])
    assert settings.recall_config.relative_to(mount["mountPath"]).as_posix() in configmap["data"]

    _, artifacts = mount_of(deployment, c, str(settings.artifacts_dir))
    fillers = [i for i in pod_spec(deployment).get("initContainers", [])
               if any(m["name"] == artifacts["name"] for m in i.get("volumeMounts", []))]
    assert fillers, "nothing fills the artifacts volume"


def test_orchestrator_probes_and_filesystem() -> None:
    deployment, c = orchestrator()
    assert http_probe(c, "livenessProbe") == ("/healthz", "http")
    assert http_probe(c, "readinessProbe") == ("/readyz", "http")
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert port_number(c, c[probe]["httpGet"]["port"]) == int(env_values(c)["CASCADE_PORT"])
    if int(env_values(c)["CASCADE_WORKERS"]) > 1:  # prometheus_client's multiprocess files
        mount, volume = mount_of(deployment, c, env_values(c)["PROMETHEUS_MULTIPROC_DIR"])
        assert "emptyDir" in volume


# --- triton --------------------------------------------------------------------------------


def test_triton_gets_a_gpu_and_is_ready_on_health_ready() -> None:
    deployment = named(applied_documents(), "Deployment", "cascade-triton")
    c = container(deployment, "triton")
    assert str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert http_probe(c, "readinessProbe") == ("/v2/health/ready", "http")
    assert http_probe(c, "startupProbe") == ("/v2/health/ready", "http")
    assert http_probe(c, "livenessProbe") == ("/v2/health/live", "http")
    assert {p["containerPort"] for p in c["ports"]} == {8000, 8001, 8002}
    assert port_number(c, "http") == 8000
    assert "--strict-readiness=true" in c["args"] and "--model-control-mode=explicit" in c["args"]
    _, shm = mount_of(deployment, c, "/dev/shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    for repository in [a.partition("=")[2] for a in c["args"] if a.startswith("--model-repository=")]:
        _, volume = mount_of(deployment, c, repository)
        assert "persistentVolumeClaim" in volume
        named(applied_documents(), "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


def dockerfile_cmd(path: Path) -> list[str]:
    """The JSON-form CMD of a Dockerfile, continuation lines joined."""
    joined = path.read_text().replace("\\\n", " ")
    [cmd] = [line.removeprefix("CMD ") for line in joined.splitlines() if line.startswith("CMD ")]
    return json.loads(cmd)


def test_triton_args_are_the_image_cmd() -> None:
    """The server flags of docker/Dockerfile.triton's CMD (`args` replaces it)."""
    c = container(named(applied_documents(), "Deployment", "cascade-triton"), "triton")
    assert c["args"] == dockerfile_cmd(REPO / "docker" / "Dockerfile.triton")


# --- redis ---------------------------------------------------------------------------------


def test_redis_persists_like_compose() -> None:
    docs = applied_documents()
    statefulset = named(docs, "StatefulSet", "cascade-redis")
    c = container(statefulset, "redis")
    args = c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    assert args == compose["services"]["redis"]["command"], "docker/compose.yaml runs Redis with other flags"
    assert c["image"] == compose["services"]["redis"]["image"]
    [data] = [m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/data"]
    assert data in {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    headless = named(docs, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert "redis-cli ping" in " ".join(c["readinessProbe"]["exec"]["command"])
