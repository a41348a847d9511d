"""operator/deploy/crds: the CRDs and the loader agree on every kind's fields; examples validate against them offline."""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from metallb.allocator import get_plugin_manager, parse_config
from metallb.allocator.convert import config_to_resources
from metallb.allocator.resources import POOL_FIELDS, SPEC_FIELDS, config_kinds
from metallb.operator import announce_status

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "operator" / "deploy" / "crds"
#: The spec fields the loader reads, per kind and version (pool kinds: the shared fields and their own).
LOADER_FIELDS = {
    **{key: set(fields) for key, fields in SPEC_FIELDS.items()},
    ("IPAddressPool", "v1beta1"): {*POOL_FIELDS, "addresses"},
    ("AddressService", "v1alpha1"): {*POOL_FIELDS, "url", "cidrs", "authTokenSecret", "caSecret"},
}
#: Status kinds: no configuration, written by the speakers (MetalLB ships their CRDs too): kind -> (group, plural, version).
STATUS_KINDS = {
    announce_status.L2_KIND: (announce_status.GROUP, announce_status.L2_PLURAL, announce_status.VERSION),
    announce_status.BGP_KIND: (announce_status.GROUP, announce_status.BGP_PLURAL, announce_status.VERSION),
}


@functools.cache
def crds() -> dict[str, dict[str, Any]]:
    """Each CRD of operator/deploy/crds, by kind."""
    out = {}
    for path in sorted(CRDS.glob("metallb.io_*.yaml")):
        doc = yaml.safe_load(path.read_text())
        out[doc["spec"]["names"]["kind"]] = doc
    return out


def schema(kind: str, version: str) -> dict[str, Any]:
    (found,) = [v for v in crds()[kind]["spec"]["versions"] if v["name"] == version]
    return found["schema"]["openAPIV3Schema"]


@functools.cache
def builtin_kinds():
    eps = [ep for ep in importlib.metadata.distribution("metallb").entry_points if ep.group == "metallb"]
    return config_kinds(get_plugin_manager(entry_points=False, plugins=[ep.load() for ep in eps]))


class TestCrds:
    def test_one_crd_per_kind_with_the_loaders_versions(self):
        """Every configuration kind of metallb's plugins has a CRD with its plural, versions and storage version."""
        found = crds()
        for kind in builtin_kinds():
            spec = found[kind.kind]["spec"]
            assert (spec["group"], spec["names"]["plural"], spec["scope"]) == (kind.group, kind.plural, "Namespaced")
            assert [v["name"] for v in spec["versions"]] == list(kind.versions)
            assert [v["name"] for v in spec["versions"] if v["storage"]] == [kind.version]
            assert all("status" in v["subresources"] for v in spec["versions"])
        assert set(found) == {k.kind for k in builtin_kinds()} | set(STATUS_KINDS), "one CRD per kind, no other"

    def test_status_kinds_are_what_the_speaker_writes(self):
        """Each status kind's CRD has the group, plural and version the speaker writes, with a status subresource."""
        for kind, (group, plural, version) in STATUS_KINDS.items():
            spec = crds()[kind]["spec"]
            assert (spec["group"], spec["names"]["plural"], spec["scope"]) == (group, plural, "Namespaced")
            assert [v["name"] for v in spec["versions"] if v["storage"]] == [version]
            assert all("status" in v["subresources"] for v in spec["versions"])

    def test_status_objects_the_speaker_writes_validate(self):
        """A ServiceL2Status and a ServiceBGPStatus as the speaker writes them pass their CRD's schema; spec is empty."""
        for obj in (
            announce_status.l2_status("n1", "default/web", ["eth0"], namespace="metallb-system"),
            announce_status.bgp_status("n1", "default/web", ["peer1", "tor-a"], namespace="metallb-system"),
        ):
            validate(obj)
            assert schema(obj["kind"], announce_status.VERSION)["properties"]["spec"] == {"type": "object"}
        assert set(schema("ServiceBGPStatus", "v1beta1")["properties"]["status"]["properties"]) == {
            "node", "serviceName", "serviceNamespace", "peers",
        }  # fmt: skip

    @pytest.mark.parametrize(("kind", "version"), sorted(LOADER_FIELDS))
    def test_spec_fields_are_the_loaders(self, kind, version):
        """The CRD's spec properties are exactly the fields the loader reads (no silently dropped field)."""
        assert set(schema(kind, version)["properties"]["spec"]["properties"]) == LOADER_FIELDS[(kind, version)]

    def test_defaults_and_enums(self):
        """MetalLB's defaults and enums are in the schemas (the API server applies them)."""
        pool = schema("IPAddressPool", "v1beta1")["properties"]["spec"]["properties"]
        assert pool["autoAssign"]["default"] is True and pool["avoidBuggyIPs"]["default"] is False
        adv = schema("BGPAdvertisement", "v1beta1")["properties"]["spec"]["properties"]
        assert (adv["aggregationLength"]["default"], adv["aggregationLengthV6"]["default"]) == (32, 128)
        peer = schema("BGPPeer", "v1beta2")["properties"]["spec"]["properties"]
        assert peer["peerPort"]["default"] == 179 and peer["dynamicASN"]["enum"] == ["internal", "external"]
        assert schema("BGPPeer", "v1beta2")["properties"]["spec"]["required"] == ["myASN"]

    def test_status_has_conditions_and_pool_counters(self):
        """Every configuration kind's status has the controller's conditions; IPAddressPool has MetalLB's four counters."""
        for kind, crd in crds().items():
            if kind in STATUS_KINDS:
                continue
            for version in crd["spec"]["versions"]:
                assert "conditions" in version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"], kind
        counters = schema("IPAddressPool", "v1beta1")["properties"]["status"]["properties"]
        assert {"assignedIPv4", "assignedIPv6", "availableIPv4", "availableIPv6"} <= set(counters)


def validate(obj: dict[str, Any]) -> None:
    """*obj* against its CRD's schema, unknown fields refused (as the API server prunes, kubectl strict rejects)."""
    version = obj["apiVersion"].rpartition("/")[2]
    strict = _strict(schema(obj["kind"], version))
    jsonschema.validate(obj, strict)


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        if "format" in out and out.get("type") == "integer":
            out.pop("format")
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


class TestObjectsAgainstTheCrds:
    def test_example_resources_validate(self):
        """examples/resources.yaml's metallb objects validate against the CRDs, offline."""
        for doc in yaml.safe_load_all((ROOT / "examples" / "resources.yaml").read_text()):
            if doc["apiVersion"].startswith("metallb.io/"):
                validate(doc)

    def test_converted_example_validates(self):
        """convert-config's output for examples/config.yaml validates against the CRDs."""
        config = parse_config((ROOT / "examples" / "config.yaml").read_text())
        for obj in config_to_resources(config).objects:
            if obj["apiVersion"].startswith("metallb.io/"):
                validate(obj)

    def test_schema_catches_mistakes(self):
        """A wrong type, an unknown field and a value outside an enum are refused."""
        pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p"}}
        with pytest.raises(jsonschema.ValidationError):
            validate({**pool, "spec": {"addresses": ["10.0.0.0/24"], "autoAssign": "yes"}})
        with pytest.raises(jsonschema.ValidationError):
            validate({**pool, "spec": {"addresses": ["10.0.0.0/24"], "autoassign": True}})
        peer = {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": "r"}}
        with pytest.raises(jsonschema.ValidationError):
            validate({**peer, "spec": {"myASN": 1, "dynamicASN": "both"}})
