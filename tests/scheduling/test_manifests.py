"""deploy/kubernetes/ manifests: every object validates against the Kubernetes client's (pydantic, extra keys
forbidden) models of its kind; example and operator-test custom resources validate against the CRD schemas;
RBAC grants every API call the operator makes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

client = pytest.importorskip("kubernetes.client")
jsonschema = pytest.importorskip("jsonschema")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MODELS = {
    "CustomResourceDefinition": "V1CustomResourceDefinition", "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole", "ClusterRoleBinding": "V1ClusterRoleBinding", "PriorityClass": "V1PriorityClass",
    "Deployment": "V1Deployment", "Namespace": "V1Namespace",
}


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _crd_schemas() -> dict[str, dict]:
    crds = _docs("crds.yaml")
    return {d["spec"]["names"]["kind"]: d["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for d in crds}


@pytest.mark.parametrize("name", ["crds.yaml", "rbac.yaml", "priorityclasses.yaml", "operator.yaml"])
def test_objects_validate_against_kubernetes_models(name: str) -> None:
    docs = _docs(name)
    assert docs
    for d in docs:
        getattr(client, MODELS[d["kind"]]).model_validate(d)


def test_model_validation_catches_a_misspelled_field() -> None:
    dep = next(d for d in _docs("operator.yaml") if d["kind"] == "Deployment")
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


def test_rbac_grants_what_the_operator_calls() -> None:
    role = next(d for d in _docs("rbac.yaml") if d["kind"] == "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    needed = {("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "list"), ("", "pods/eviction", "create"),
              ("", "nodes", "list"), ("blacksoil.dev", "learningjobs", "patch"),
              ("blacksoil.dev", "learningjobs", "watch"),
              ("blacksoil.dev", "servingdeployments", "watch"), ("blacksoil.dev", "agentgroups", "watch"),
              ("blacksoil.dev", "learningjobs/status", "patch")}
    assert needed <= granted
    sa = next(d for d in _docs("rbac.yaml") if d["kind"] == "ServiceAccount")
    dep = next(d for d in _docs("operator.yaml") if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert "blacksoil.scheduling.backends.k8s_operator" in dep["spec"]["template"]["spec"]["containers"][0]["command"]
