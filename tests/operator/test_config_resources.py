"""The controller and the speaker configured by MetalLB's resources, against the API emulator with metallb's CRDs."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netaddr
import pytest
import yaml
from kubernetes import client
from metallb.allocator.testing import wait_for
from metallb.operator import kube_status
from metallb.operator.controller import Controller
from metallb.operator.service import FINALIZER, POOL_ANNOTATION
from metallb.operator.speaker import Speaker
from metallb.plugins.address_service.http import make_http_server
from metallb.plugins.address_service.memory import MemoryBackend
from metallb.plugins.address_service.service import AddressService

NS = "metallb-system"
CRDS = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "crds"
LEASE_ANNOTATION = "metallb.io/address-service-lease"


def install_crds(kube: Any) -> None:
    """Apply every CRD of operator/deploy/crds, as `kubectl apply -k operator/deploy/crds` would."""
    for path in sorted(CRDS.glob("metallb.io_*.yaml")):
        kube.put_object(yaml.safe_load(path.read_text()))


def res(kind: str, name: str, spec: dict[str, Any], *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    version = {"BGPPeer": "v1beta2", "AddressService": "v1alpha1"}.get(kind, "v1beta1")
    meta: dict[str, Any] = {"name": name, "namespace": NS, **({"labels": labels} if labels else {})}
    return {"apiVersion": f"metallb.io/{version}", "kind": kind, "metadata": meta, "spec": spec}


@pytest.fixture(name="cluster")
def _cluster(kube):
    """The emulator with metallb's CRDs and namespace, and a CoreV1Api."""
    install_crds(kube)
    kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    api = kube.api_client()
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture(name="start")
def _start(kube) -> Iterator[Any]:
    controllers: list[Controller] = []

    def start(**options: Any) -> Controller:
        c = Controller(kube.api_client(), watch_timeout=5, **options)
        c.start()
        controllers.append(c)
        return c

    yield start
    for c in controllers:
        c.stop()


def make_service(core, name, *, namespace="default", labels=None, annotations=None):
    if namespace != "default" and core.api_client and not _exists(core, namespace):
        core.create_namespace({"metadata": {"name": namespace}})
    body = {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }
    return core.create_namespaced_service(namespace, body)


def _exists(core, namespace: str) -> bool:
    return any(n.metadata.name == namespace for n in core.list_namespace().items)


def ingress(kube, name, namespace="default"):
    obj = kube.get("services", namespace, name) or {}
    return [i.get("ip") for i in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()]


def condition(kube, kind: str, name: str, type_: str = "Valid") -> dict[str, Any]:
    obj = kube.get(kind, NS, name) or {}
    found = [c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == type_]
    return found[0] if found else {}


def events(kube, name: str) -> list[dict[str, Any]]:
    return [e for e in kube.objects("events", NS) if e["involvedObject"]["name"] == name]


class TestResourcesConfigureTheController:
    """The controller loads MetalLB's resources, allocates from them and reports on them."""

    def test_allocates_and_reports_status(self, kube, cluster, start):
        """A pool and an advertisement: Services get addresses; the pool gets Valid, Announced and counters."""
        kube.put_object(res("IPAddressPool", "main", {"addresses": ["192.0.2.10-192.0.2.13", "2001:db8::/126"]}))
        kube.put_object(res("L2Advertisement", "l2", {}))
        make_service(cluster, "a")
        start()
        assert wait_for(lambda: ingress(kube, "a")) == ["192.0.2.10"]
        assert kube.get("services", "default", "a")["metadata"]["annotations"][POOL_ANNOTATION] == "main"
        valid = wait_for(lambda: condition(kube, "ipaddresspools", "main"))
        assert (valid["status"], valid["reason"], valid["message"]) == ("True", "Valid", "valid")
        assert condition(kube, "ipaddresspools", "main", "Announced")["message"] == "announced by layer2"
        status = wait_for(
            lambda: (
                (kube.get("ipaddresspools", NS, "main") or {}).get("status", {}).get("assignedIPv4") == 1
                and kube.get("ipaddresspools", NS, "main")["status"]
            )
        )
        assert {k: status[k] for k in ("assignedIPv4", "availableIPv4", "assignedIPv6", "availableIPv6")} == {
            "assignedIPv4": 1,
            "availableIPv4": 3,
            "assignedIPv6": 0,
            "availableIPv6": 4,
        }
        assert wait_for(lambda: condition(kube, "l2advertisements", "l2").get("status")) == "True"
        assert [e["reason"] for e in wait_for(lambda: events(kube, "main"))] == ["ConfigurationValid"]

    def test_pool_selection_by_namespace_and_labels(self, kube, cluster, start):
        """serviceAllocation picks the pool of a Service by its namespace's labels and its own labels."""
        kube.put_object(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "blue"}}}
        )
        kube.put_object(res("IPAddressPool", "a-plain", {"addresses": ["192.0.2.0/30"]}))
        kube.put_object(
            res(
                "IPAddressPool",
                "b-team",
                {
                    "addresses": ["198.51.100.0/30"],
                    "serviceAllocation": {"priority": 1, "namespaceSelectors": [{"matchLabels": {"team": "blue"}}]},
                },
            )
        )
        kube.put_object(
            res(
                "IPAddressPool",
                "c-edge",
                {
                    "addresses": ["203.0.113.0/30"],
                    "serviceAllocation": {"serviceSelectors": [{"matchLabels": {"tier": "edge"}}]},
                },
            )
        )
        start()
        make_service(cluster, "web", namespace="shop")
        make_service(cluster, "proxy", labels={"tier": "edge"})
        make_service(cluster, "other")
        assert wait_for(lambda: ingress(kube, "web", "shop")) == ["198.51.100.0"]
        assert wait_for(lambda: ingress(kube, "proxy")) == ["203.0.113.0"]
        assert wait_for(lambda: ingress(kube, "other")) == ["192.0.2.0"]

    def test_changes_converge_without_a_restart(self, kube, cluster, start):
        """A Service waiting for a pool gets an address as soon as a pool resource is created."""
        controller = start()
        make_service(cluster, "late")
        wait_for(
            lambda: controller.state is not None and controller.state.source == "none", what="an empty configuration"
        )
        kube.put_object(res("IPAddressPool", "new", {"addresses": ["192.0.2.100/32"]}))
        assert wait_for(lambda: ingress(kube, "late"), timeout=15) == ["192.0.2.100"]

    def test_invalid_resource_keeps_the_last_good_config(self, kube, cluster, start):
        """A pool made invalid gets Valid=False naming field, value and rule, a Warning Event, and changes nothing."""
        kube.put_object(res("IPAddressPool", "main", {"addresses": ["192.0.2.10/31"]}))
        kube.put_object(res("L2Advertisement", "l2", {}))
        controller = start()
        make_service(cluster, "a")
        assert wait_for(lambda: ingress(kube, "a")) == ["192.0.2.10"]
        kube.put_object(res("IPAddressPool", "main", {"addresses": ["192.0.2.10/33"]}))
        bad = wait_for(
            lambda: (
                condition(kube, "ipaddresspools", "main").get("status") == "False"
                and condition(kube, "ipaddresspools", "main")
            )
        )
        assert bad["reason"] == "InvalidField"
        assert (
            bad["message"]
            == 'IPAddressPool "main": field "spec.addresses[0]": value "192.0.2.10/33": invalid CIDR (write a prefix length, /32 for one address, or a range a-b)'
        )
        (warning,) = wait_for(lambda: [e for e in events(kube, "main") if e["type"] == "Warning"])
        assert warning["reason"] == "InvalidField" and warning["message"] == bad["message"]
        # Each object's status is its own write, after the pool's: wait for the advertisement's too.
        wait_for(
            lambda: (
                condition(kube, "l2advertisements", "l2")
                .get("message", "")
                .startswith("valid; the configuration is not applied:")
            ),
            what="the L2Advertisement's condition",
        )
        assert controller.registry.get_sample_value("metallb_k8s_client_config_stale_bool") == 1
        assert list(controller.config.pools["main"].cidrs) == [netaddr.IPNetwork("192.0.2.10/31")]
        make_service(cluster, "b")  # still served from the last good pool
        assert wait_for(lambda: ingress(kube, "b")) == ["192.0.2.11"]
        kube.put_object(res("IPAddressPool", "main", {"addresses": ["192.0.2.10/31"]}))
        wait_for(lambda: condition(kube, "ipaddresspools", "main").get("status") == "True", what="Valid again")
        assert controller.registry.get_sample_value("metallb_k8s_client_config_stale_bool") == 0

    def test_missing_secret_waits_then_applies(self, kube, cluster, start):
        """A peer whose password Secret does not exist yet waits (reason Waiting); the Secret makes it apply."""
        kube.put_object(res("IPAddressPool", "main", {"addresses": ["192.0.2.10/31"]}))
        kube.put_object(
            res(
                "BGPPeer",
                "tor",
                {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "passwordSecret": {"name": "pw"}},
            )
        )
        controller = start()
        waiting = wait_for(
            lambda: condition(kube, "bgppeers", "tor").get("reason") == "Waiting" and condition(kube, "bgppeers", "tor")
        )
        assert 'waiting for the Secret "pw"' in waiting["message"] and waiting["status"] == "False"
        assert controller.config is None
        password = base64.b64encode(b"s3cret").decode()
        kube.put_object(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "pw", "namespace": NS},
                "type": "kubernetes.io/basic-auth",
                "data": {"password": password},
            }
        )
        wait_for(lambda: controller.config is not None, what="the configuration, once the Secret exists")
        assert controller.config.peers[0].password == "s3cret"
        assert wait_for(lambda: condition(kube, "bgppeers", "tor").get("status") == "True")

    def test_fields_not_applied_and_pools_not_announced(self, kube, cluster, start, tmp_path):
        """A vrf is accepted with NotApplied; a pool no advertisement selects is Announced=False, and said so."""
        kube.put_object(res("IPAddressPool", "quiet", {"addresses": ["192.0.2.10/31"]}))
        kube.put_object(
            res("BGPPeer", "far", {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "vrf": "red"})
        )
        start()
        make_service(cluster, "a")
        wait_for(lambda: ingress(kube, "a"))
        not_applied = wait_for(lambda: condition(kube, "bgppeers", "far", "NotApplied"))
        assert not_applied["status"] == "True" and not_applied["message"].startswith("spec.vrf: accepted, not applied")
        silent = wait_for(lambda: condition(kube, "ipaddresspools", "quiet", "Announced"))
        assert (silent["status"], silent["reason"]) == ("False", "NoAdvertisement")
        config = kube.write_kubeconfig(tmp_path / "kubeconfig")
        rows = kube_status.cluster_status(str(config))
        assert rows["default/a"]["announced"].startswith(
            'not announced: pool "quiet": no L2Advertisement or BGPAdvertisement'
        )

    def test_address_service_pool_end_to_end(self, kube, cluster, start):
        """An AddressService pool leases from the bundled address service, with its token from a Secret."""
        service = AddressService(backend=MemoryBackend(cidrs=["192.0.2.64/28"]))
        service.start()
        httpd = make_http_server(service, auth_token="t0ken")
        httpd.start_thread()
        try:
            token = base64.b64encode(b"t0ken").decode()
            kube.put_object(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "as-token", "namespace": NS},
                    "data": {"token": token},
                }
            )
            kube.put_object(
                res(
                    "AddressService",
                    "leased",
                    {"url": httpd.url, "cidrs": ["192.0.2.64/28"], "authTokenSecret": {"name": "as-token"}},
                )
            )
            kube.put_object(res("L2Advertisement", "l2", {"ipAddressPools": ["leased"]}))
            start()
            make_service(cluster, "a")
            (ip,) = wait_for(lambda: ingress(kube, "a"), timeout=15)
            meta = kube.get("services", "default", "a")["metadata"]
            assert meta["annotations"][POOL_ANNOTATION] == "leased" and meta["annotations"][LEASE_ANNOTATION]
            assert FINALIZER in meta["finalizers"]
            assert [lease.ip for lease in service.leases()] == [ip]
            status = wait_for(
                lambda: (kube.get("addressservices", NS, "leased") or {}).get("status", {}).get("assignedIPv4") == 1
            )
            assert status and condition(kube, "addressservices", "leased")["status"] == "True"
            cluster.delete_namespaced_service("a", "default")
            wait_for(lambda: kube.get("services", "default", "a") is None, what="the Service gone, its lease released")
            assert service.leases() == []
        finally:
            httpd.shutdown()
            httpd.server_close()
            service.close()


class TestSpeakerReadsResources:
    """The speaker loads the same resources and writes nothing on them."""

    def test_speaker_config_from_resources_without_status_writes(self, kube, cluster):
        """The speaker's configuration follows the resources; it never patches their status."""
        kube.put_object(res("IPAddressPool", "main", {"addresses": ["192.0.2.10/31"]}))
        kube.put_object(res("L2Advertisement", "l2", {"interfaces": ["eth1"]}))
        speaker = Speaker(kube.api_client(), node_name="n1", namespace=NS, watch_timeout=5)
        speaker.start()
        try:
            wait_for(lambda: speaker.config is not None)
            assert speaker.config.pools["main"].l2_advertisements[0].interfaces == ("eth1",)
            kube.put_object(res("L2Advertisement", "l2", {"interfaces": ["eth2"]}))
            wait_for(lambda: speaker.config.pools["main"].l2_advertisements[0].interfaces == ("eth2",))
        finally:
            speaker.stop()
        assert kube.request_count("PATCH", r"/status") == 0


class TestConfigWatchOnAnyObject:
    """ConfigWatch.load turns whatever the caches hold into a ConfigState: a Config or one error line, never a raise."""

    @staticmethod
    def watch(kube: Any, plugin_manager: Any = None) -> Any:
        from metallb.allocator import default_plugin_manager
        from metallb.operator.config_watch import ConfigWatch

        return ConfigWatch(
            kube.api_client(),
            namespace=NS,
            config_name="config",
            plugin_manager=plugin_manager or default_plugin_manager(),
            on_change=lambda state: None,
        )

    @pytest.mark.parametrize(
        "data",
        [{"config": 42}, {"config": ["a"]}, "text", None, {"config": "peers: [1]\n"}, {"config": "a: &a [*a]\n"}],
    )
    def test_bad_configmaps(self, kube: Any, data: object) -> None:
        """A ConfigMap whose data or config text is anything at all gives an error state on one line."""
        watch = self.watch(kube)
        watch.configmaps.cache["metallb-system/config"] = {"metadata": {"name": "config"}, "data": data}
        state = watch.load()
        assert state.config is None and state.error is not None
        assert str(state.error).splitlines() == [str(state.error)]

    @pytest.mark.parametrize(
        "obj",
        [
            {"metadata": "x", "spec": {"addresses": ["10.0.0.0/24"]}},
            {"metadata": {"name": "a\nb", "labels": ["x"]}, "spec": {"addresses": ["10.0.0.0/24"]}},
            {"metadata": {"name": "p"}, "spec": {"addresses": [{"a": 1}], "serviceAllocation": 7}},
            {"metadata": {"name": "p"}, "spec": [1, 2]},
        ],
    )
    def test_bad_resources(self, kube: Any, obj: dict[str, Any]) -> None:
        """A resource of any shape gives an error state on one line, never an exception."""
        watch = self.watch(kube)
        watch.resources["IPAddressPool"].cache["metallb-system/p"] = obj
        state = watch.load()
        assert state.config is None and state.error is not None
        assert str(state.error).splitlines() == [str(state.error)]

    def test_a_plugin_bug_is_an_error_state(self, kube: Any) -> None:
        """A pool plugin that raises while parsing leaves an error state naming the exception, on one line."""
        from metallb.allocator import get_plugin_manager, hookimpl

        class Broken:
            @hookimpl(tryfirst=True)
            def metallb_parse_pool_resource(self, resource: Any) -> Any:
                raise RuntimeError("plugin bug\nsecond line")

        pm = get_plugin_manager(plugins=[Broken()])
        watch = self.watch(kube, pm)
        watch.resources["IPAddressPool"].cache["metallb-system/p"] = res(
            "IPAddressPool", "p", {"addresses": ["10.0.0.0/24"]}
        )
        state = watch.load()
        assert state.config is None and state.error is not None
        assert str(state.error).startswith("RuntimeError: plugin bug"), state.error
        assert str(state.error).splitlines() == [str(state.error)]
