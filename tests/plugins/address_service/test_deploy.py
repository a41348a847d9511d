"""operator/deploy/address-service/address-service.yaml and the AddressLease CRD: replicas, RBAC derived from kube.py's calls."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes import client
from metallb.allocator import kube as shared_kube
from metallb.operator import cli
from metallb.plugins.address_service import kube

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "operator" / "deploy" / "address-service" / "address-service.yaml"
CRD = ROOT / "operator" / "deploy" / "address-service" / "metallb.io_addressleases.yaml"
_CALL_API = re.compile(r"call_api\(\s*'(?P<path>[^']+)',\s*'(?P<method>[A-Z]+)'")
_WRITE = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_APIS = [getattr(client, n) for n in dir(client) if n.endswith("Api") and n != "ApiClient"]


def docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def one(kind: str) -> dict:
    (found,) = [d for d in docs() if d["kind"] == kind]
    return found


def endpoint(method: str) -> tuple[str, str] | None:
    for cls in _APIS:
        impl = getattr(cls, f"{method}_with_http_info", None)
        if impl is not None:
            found = _CALL_API.search(inspect.getsource(impl))
            assert found is not None
            return found["path"], found["method"]
    return None


def needs() -> set[tuple[str, str, str]]:
    """(group, resource, verb) for every kubernetes call in kube.py and the shared leader Lease it uses; custom
    objects are its AddressLeases."""
    out = set()
    sources = [Path(inspect.getsourcefile(m) or "").read_text() for m in (kube, shared_kube)]
    for node in (n for source in sources for n in ast.walk(ast.parse(source))):
        if not isinstance(node, ast.Attribute) or (found := endpoint(node.attr)) is None:
            continue
        path, method = found
        parts = path.strip("/").split("/")
        group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
        rest = rest[2:] if rest[:2] == ["namespaces", "{namespace}"] else rest
        group = kube.GROUP if group == "{group}" else group
        resource = kube.PLURAL if rest[0] == "{plural}" else rest[0]
        verb = ("get" if len(rest) > 1 else "list") if method == "GET" else _WRITE[method]
        out.add((group, resource, verb))
    return out


class TestManifest:
    """The Deployment runs two replicas that elect a leader; the Role grants exactly what kube.py calls."""

    @pytest.mark.parametrize("version", ["1.30", "1.37"])
    def test_crd_validates(self, version) -> None:
        """The AddressLease CRD passes the strict Kubernetes schema."""
        assert kubernetes_validate.validate(yaml.safe_load(CRD.read_text()), version, strict=True) == version

    def test_replicas_elect_a_leader(self) -> None:
        """Two or more replicas, on different nodes, with --kube-leases and no state file; ready while leading."""
        deployment = one("Deployment")
        spec = deployment["spec"]["template"]["spec"]
        (ctr,) = spec["containers"]
        args = cli.build_parser().parse_args(ctr["args"])
        assert deployment["spec"]["replicas"] >= 2 and "strategy" not in deployment["spec"]
        assert args.command == "address-service" and args.kube_leases and not args.state_file
        assert args.lease_duration <= 5
        assert spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in ctr["env"]}
        assert env == {"METALLB_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
        assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert not any(v.get("persistentVolumeClaim") for v in spec["volumes"])

    def test_role_grants_exactly_what_kube_py_calls(self) -> None:
        """The Role, bound to the pods' ServiceAccount, grants every call of kube.py and nothing else."""
        granted = {
            (group, resource, verb)
            for rule in one("Role")["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
        assert needs() == granted
        account = one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        assert one("ServiceAccount")["metadata"]["name"] == account
        binding = one("RoleBinding")
        assert binding["roleRef"]["name"] == one("Role")["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "metallb-system"}]
