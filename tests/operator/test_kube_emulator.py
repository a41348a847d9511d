"""The Kubernetes API emulator (tests/kube_emulator.py), checked through the official kubernetes client.

Each test states the documented API server behaviour it checks; the emulator is only useful to
controller tests as long as these hold.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

NS = "default"


@pytest.fixture
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


def status_of(error: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    """The Status object the server sent with an error."""
    body: dict[str, Any] = json.loads(error.value.body)
    assert body["kind"] == "Status"
    assert body["code"] == error.value.status
    return body


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "labels": labels}}
    if data:
        body["data"] = data
    return body


def lb_service(name: str, *ports: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"type": "LoadBalancer", "ports": [{"port": p} for p in ports]}}


def collect(func: Any, *args: Any, count: int, timeout: int = 5, **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
    """Watch *func* until *count* events (type, raw object) arrived or *timeout* seconds passed."""
    stream, events = watch.Watch(), []
    for event in stream.stream(func, *args, timeout_seconds=timeout, **kwargs):
        events.append((event["type"], event["raw_object"]))
        if len(events) >= count:
            stream.stop()
    return events


def raw_patch(api: client.ApiClient, path: str, body: Any, content_type: str) -> dict[str, Any]:
    """PATCH with an explicit content type (the typed methods always pick strategic merge or JSON patch)."""
    result: dict[str, Any] = api.call_api(
        path,
        "PATCH",
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        response_type="object",
        _return_http_data_only=True,
    )
    return result


def list_rv(core: client.CoreV1Api) -> str:
    rv: str = core.list_namespaced_config_map(NS).metadata.resource_version
    return rv


class TestDiscovery:
    def test_version(self, kube_client):
        """/version answers a VersionInfo the client can decode."""
        assert client.VersionApi(kube_client).get_code().git_version.startswith("v1.")

    def test_core_versions(self, kube_client):
        """/api lists the core group's only version, v1."""
        assert client.CoreApi(kube_client).get_api_versions().versions == ["v1"]

    def test_groups(self, kube_client):
        """/apis lists the named groups with their preferred version."""
        groups = {
            g.name: g.preferred_version.group_version for g in client.ApisApi(kube_client).get_api_versions().groups
        }
        assert groups == {
            "events.k8s.io": "events.k8s.io/v1",
            "discovery.k8s.io": "discovery.k8s.io/v1",
            "coordination.k8s.io": "coordination.k8s.io/v1",
            "apiextensions.k8s.io": "apiextensions.k8s.io/v1",
        }

    def test_core_resources(self, core):
        """/api/v1 lists resources with scope and their status subresources."""
        resources = {r.name: r for r in core.get_api_resources().resources}
        assert resources["services"].namespaced and not resources["nodes"].namespaced
        assert "services/status" in resources and "configmaps/status" not in resources
        assert "watch" in resources["services"].verbs

    def test_group_resources(self, kube_client):
        """/apis/coordination.k8s.io/v1 lists leases."""
        listed = client.CoordinationV1Api(kube_client).get_api_resources()
        assert [r.kind for r in listed.resources] == ["Lease"]

    def test_dynamic_client(self, kube_client, tmp_path):
        """The discovery-driven DynamicClient finds and lists resources."""
        dyn = dynamic.DynamicClient(kube_client, cache_file=str(tmp_path / "discovery.json"))
        slices = dyn.resources.get(api_version="discovery.k8s.io/v1", kind="EndpointSlice")
        assert slices.namespaced
        namespaces = dyn.resources.get(api_version="v1", kind="Namespace").get()
        assert "default" in [ns.metadata.name for ns in namespaces.items]


class TestCreateAndRead:
    def test_server_sets_metadata(self, core):
        """Create fills uid, creationTimestamp, resourceVersion, generation 1 and the namespace."""
        made = core.create_namespaced_config_map(NS, cm("a"))
        assert len(made.metadata.uid) == 36
        assert made.metadata.generation == 1
        assert made.metadata.namespace == NS
        assert int(made.metadata.resource_version) > 0
        assert abs(made.metadata.creation_timestamp - datetime.now(UTC)) < timedelta(seconds=5)
        assert core.read_namespaced_config_map("a", NS).metadata.uid == made.metadata.uid

    def test_resource_version_is_global(self, core, kube):
        """resourceVersion is one counter over all kinds, increasing with every write."""
        first = core.create_namespaced_config_map(NS, cm("a")).metadata.resource_version
        second = core.create_namespaced_secret(NS, {"metadata": {"name": "s"}}).metadata.resource_version
        assert int(second) == int(first) + 1 == kube.resource_version

    def test_already_exists(self, core):
        """Creating an existing name is 409 AlreadyExists."""
        core.create_namespaced_config_map(NS, cm("a"))
        with pytest.raises(ApiException) as error:
            core.create_namespaced_config_map(NS, cm("a"))
        assert error.value.status == 409
        assert status_of(error)["reason"] == "AlreadyExists"

    def test_not_found(self, core):
        """Reading a missing object is 404 NotFound with name and kind in the details."""
        with pytest.raises(ApiException) as error:
            core.read_namespaced_service("nope", NS)
        body = status_of(error)
        assert (error.value.status, body["reason"]) == (404, "NotFound")
        assert body["details"] == {"name": "nope", "kind": "services"}

    def test_generate_name(self, core):
        """generateName gets a random five-character suffix."""
        made = [core.create_namespaced_config_map(NS, {"metadata": {"generateName": "x-"}}) for _ in range(3)]
        names = {m.metadata.name for m in made}
        assert len(names) == 3
        assert all(n.startswith("x-") and len(n) == 7 for n in names)

    def test_missing_namespace(self, core):
        """Creating in a namespace that does not exist is 404."""
        with pytest.raises(ApiException) as error:
            core.create_namespaced_config_map("nowhere", cm("a"))
        assert error.value.status == 404

    def test_resource_version_on_create(self, core):
        """A create that carries a resourceVersion is 400."""
        body = cm("a")
        body["metadata"]["resourceVersion"] = "5"
        with pytest.raises(ApiException) as error:
            core.create_namespaced_config_map(NS, body)
        assert error.value.status == 400

    def test_service_defaults(self, core):
        """A service is defaulted: protocol, targetPort, families, a cluster IP; status set on create is dropped."""
        body = lb_service("a", 80)
        body["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
        made = core.create_namespaced_service(NS, body)
        assert (made.spec.ports[0].protocol, made.spec.ports[0].target_port) == ("TCP", 80)
        assert made.spec.ip_families == ["IPv4"] and made.spec.cluster_ip.startswith("10.96.")
        assert made.status.load_balancer.ingress is None

    def test_cluster_scoped(self, core):
        """Nodes are cluster-scoped: no namespace, and status given on create is kept."""
        body = {"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}
        made = core.create_node(body)
        assert made.metadata.namespace is None
        assert core.read_node("n1").status.addresses[0].address == "10.0.0.1"


class TestList:
    @pytest.fixture
    def labelled(self, core):
        core.create_namespaced_config_map(NS, cm("a", {"app": "web", "tier": "front"}))
        core.create_namespaced_config_map(NS, cm("b", {"app": "web", "tier": "back"}))
        core.create_namespaced_config_map(NS, cm("c", {"app": "db"}))
        core.create_namespaced_config_map(NS, cm("d"))

    @pytest.mark.parametrize(
        ("selector", "names"),
        [
            ("app=web", "ab"),
            ("app==web", "ab"),
            ("app!=web", "cd"),
            ("tier in (front, back)", "ab"),
            ("tier notin (front)", "bcd"),
            ("tier", "ab"),
            ("!tier", "cd"),
            ("app=web,tier!=back", "a"),
            ("app in (web,db),!tier", "c"),
            ("", "abcd"),
        ],
    )
    def test_label_selector(self, core, labelled, selector, names):
        """Label selectors follow the documented operators; != and notin match objects without the key."""
        listed = core.list_namespaced_config_map(NS, label_selector=selector)
        assert "".join(i.metadata.name for i in listed.items) == names

    def test_bad_label_selector(self, core):
        """An unparseable label selector is 400."""
        with pytest.raises(ApiException) as error:
            core.list_namespaced_config_map(NS, label_selector="a in b")
        assert error.value.status == 400

    def test_field_selector(self, core, labelled):
        """Field selectors match metadata.name with = and !=."""
        assert [
            i.metadata.name for i in core.list_namespaced_config_map(NS, field_selector="metadata.name=b").items
        ] == ["b"]
        others = core.list_namespaced_config_map(NS, field_selector="metadata.name!=b")
        assert [i.metadata.name for i in others.items] == ["a", "c", "d"]

    def test_all_namespaces_and_namespace_field(self, core):
        """Listing across namespaces sees every namespace; metadata.namespace narrows it."""
        core.create_namespace({"metadata": {"name": "other"}})
        core.create_namespaced_config_map(NS, cm("a"))
        core.create_namespaced_config_map("other", cm("a"))
        assert len(core.list_config_map_for_all_namespaces().items) == 2
        only = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=other")
        assert [i.metadata.namespace for i in only.items] == ["other"]

    def test_spec_field_selector(self, core):
        """spec.nodeName selects the pods of one node."""
        for name, node in (("p1", "n1"), ("p2", "n2")):
            core.create_namespaced_pod(NS, {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": []}})
        listed = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n2")
        assert [p.metadata.name for p in listed.items] == ["p2"]

    def test_list_resource_version(self, core, kube):
        """A list carries the current resourceVersion, and its items carry no kind (as on a real server)."""
        core.create_namespaced_config_map(NS, cm("a"))
        listed = core.list_namespaced_config_map(NS)
        assert listed.metadata.resource_version == str(kube.resource_version)
        assert listed.items[0].kind is None

    def test_pagination(self, core):
        """limit and continue page through a list without loss or repetition."""
        for name in "abcde":
            core.create_namespaced_config_map(NS, cm(name))
        page = core.list_namespaced_config_map(NS, limit=2)
        names = [i.metadata.name for i in page.items]
        assert page.metadata.remaining_item_count == 3
        while page.metadata._continue:
            page = core.list_namespaced_config_map(NS, limit=2, _continue=page.metadata._continue)
            names += [i.metadata.name for i in page.items]
        assert names == list("abcde")


class TestUpdate:
    def test_stale_resource_version(self, core):
        """PUT with a stale resourceVersion is 409 Conflict; with the current one it succeeds."""
        made = core.create_namespaced_config_map(NS, cm("a"))
        core.replace_namespaced_config_map("a", NS, cm("a", x="1"))
        made.data = {"x": "2"}
        with pytest.raises(ApiException) as error:
            core.replace_namespaced_config_map("a", NS, made)
        assert (error.value.status, status_of(error)["reason"]) == (409, "Conflict")
        fresh = core.read_namespaced_config_map("a", NS)
        fresh.data = {"x": "2"}
        assert core.replace_namespaced_config_map("a", NS, fresh).data == {"x": "2"}

    def test_unconditional_put(self, core):
        """PUT without a resourceVersion is allowed and bumps it."""
        made = core.create_namespaced_config_map(NS, cm("a"))
        replaced = core.replace_namespaced_config_map("a", NS, cm("a", x="1"))
        assert int(replaced.metadata.resource_version) > int(made.metadata.resource_version)
        assert replaced.metadata.uid == made.metadata.uid

    def test_no_op_update(self, core, kube):
        """An update that changes nothing keeps the resourceVersion and emits no event."""
        made = core.create_namespaced_config_map(NS, cm("a", x="1"))
        again = core.replace_namespaced_config_map("a", NS, made)
        assert again.metadata.resource_version == made.metadata.resource_version
        assert kube.resource_version == int(made.metadata.resource_version)

    def test_generation(self, core):
        """generation counts spec changes only, not label or status changes."""
        core.create_namespaced_service(NS, lb_service("a", 80))
        labelled = core.patch_namespaced_service("a", NS, {"metadata": {"labels": {"x": "y"}}})
        status = core.patch_namespaced_service_status(
            "a", NS, {"status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}}
        )
        assert labelled.metadata.generation == status.metadata.generation == 1
        assert core.patch_namespaced_service("a", NS, {"spec": {"loadBalancerIP": "1.1.1.1"}}).metadata.generation == 2

    def test_uid_mismatch(self, core):
        """A PUT carrying another object's uid (the name was reused) is 409."""
        made = core.create_namespaced_config_map(NS, cm("a"))
        core.delete_namespaced_config_map("a", NS)
        core.create_namespaced_config_map(NS, cm("a"))
        made.metadata.resource_version = None
        with pytest.raises(ApiException) as error:
            core.replace_namespaced_config_map("a", NS, made)
        assert error.value.status == 409

    def test_name_mismatch(self, core):
        """A PUT whose body names another object is 400."""
        core.create_namespaced_config_map(NS, cm("a"))
        with pytest.raises(ApiException) as error:
            core.replace_namespaced_config_map("a", NS, cm("b"))
        assert error.value.status == 400


class TestStatusSubresource:
    def test_main_put_ignores_status(self, core):
        """PUT on the main resource changes spec but leaves status alone."""
        svc = core.create_namespaced_service(NS, lb_service("a", 80))
        svc.spec.load_balancer_ip = "10.0.0.9"
        svc.status = {"loadBalancer": {"ingress": [{"ip": "6.6.6.6"}]}}
        replaced = core.replace_namespaced_service("a", NS, svc)
        assert replaced.spec.load_balancer_ip == "10.0.0.9"
        assert replaced.status.load_balancer.ingress is None

    def test_status_put_ignores_spec(self, core):
        """PUT on /status changes status only, so generation stays."""
        svc = core.create_namespaced_service(NS, lb_service("a", 80))
        svc.spec.load_balancer_ip = "10.0.0.9"
        svc.status = {"loadBalancer": {"ingress": [{"ip": "6.6.6.6"}]}}
        replaced = core.replace_namespaced_service_status("a", NS, svc)
        assert replaced.status.load_balancer.ingress[0].ip == "6.6.6.6"
        assert replaced.spec.load_balancer_ip is None
        assert replaced.metadata.generation == 1

    def test_main_patch_ignores_status(self, core):
        """A main-resource PATCH of status only is a no-op: same resourceVersion."""
        made = core.create_namespaced_service(NS, lb_service("a", 80))
        patched = core.patch_namespaced_service("a", NS, {"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
        assert patched.status.load_balancer.ingress is None
        assert patched.metadata.resource_version == made.metadata.resource_version

    def test_status_patch_ignores_metadata(self, core):
        """A /status PATCH drops label and spec changes."""
        core.create_namespaced_service(NS, lb_service("a", 80))
        patch = {"metadata": {"labels": {"x": "y"}}, "spec": {"type": "ClusterIP"}, "status": {"conditions": []}}
        patched = core.patch_namespaced_service_status("a", NS, patch)
        assert patched.metadata.labels is None and patched.spec.type == "LoadBalancer"


class TestDeletion:
    def test_delete_without_finalizers(self, core, kube):
        """DELETE removes the object, answers a Success Status, and watchers get DELETED at a new version."""
        made = core.create_namespaced_config_map(NS, cm("a"))
        status = core.delete_namespaced_config_map("a", NS)
        assert status.status == "Success"
        assert kube.get("configmaps", NS, "a") is None
        events = collect(core.list_namespaced_config_map, NS, resource_version=made.metadata.resource_version, count=1)
        assert events[0][0] == "DELETED"
        assert int(events[0][1]["metadata"]["resourceVersion"]) > int(made.metadata.resource_version)

    def test_delete_with_finalizers(self, core):
        """DELETE of an object with finalizers only sets deletionTimestamp; a second DELETE changes nothing."""
        body = cm("a")
        body["metadata"]["finalizers"] = ["example.com/hold"]
        made = core.create_namespaced_config_map(NS, body)
        core.delete_namespaced_config_map("a", NS)
        marked = core.read_namespaced_config_map("a", NS)
        assert marked.metadata.deletion_timestamp is not None
        assert int(marked.metadata.resource_version) > int(made.metadata.resource_version)
        core.delete_namespaced_config_map("a", NS)
        assert core.read_namespaced_config_map("a", NS).metadata.resource_version == marked.metadata.resource_version

    def test_last_finalizer_removal_deletes(self, core):
        """Removing the last finalizer of a deleted object removes it, with a DELETED event."""
        body = cm("a")
        body["metadata"]["finalizers"] = ["example.com/one", "example.com/two"]
        core.create_namespaced_config_map(NS, body)
        core.delete_namespaced_config_map("a", NS)
        rv = list_rv(core)
        core.patch_namespaced_config_map("a", NS, [{"op": "remove", "path": "/metadata/finalizers/0"}])
        assert core.read_namespaced_config_map("a", NS).metadata.finalizers == ["example.com/two"]
        core.patch_namespaced_config_map("a", NS, [{"op": "remove", "path": "/metadata/finalizers/0"}])
        with pytest.raises(ApiException) as error:
            core.read_namespaced_config_map("a", NS)
        assert error.value.status == 404
        events = collect(core.list_namespaced_config_map, NS, resource_version=rv, count=2)
        assert [e[0] for e in events] == ["MODIFIED", "DELETED"]

    def test_no_new_finalizers_while_deleting(self, core):
        """A finalizer cannot be added once deletion started (422)."""
        body = cm("a")
        body["metadata"]["finalizers"] = ["example.com/one"]
        core.create_namespaced_config_map(NS, body)
        core.delete_namespaced_config_map("a", NS)
        with pytest.raises(ApiException) as error:
            core.patch_namespaced_config_map("a", NS, {"metadata": {"finalizers": ["example.com/late"]}})
        assert error.value.status == 422

    def test_preconditions(self, core):
        """DELETE with a stale resourceVersion precondition is 409 and deletes nothing."""
        made = core.create_namespaced_config_map(NS, cm("a"))
        core.patch_namespaced_config_map("a", NS, {"data": {"x": "1"}})
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=made.metadata.resource_version)
        )
        with pytest.raises(ApiException) as error:
            core.delete_namespaced_config_map("a", NS, body=options)
        assert error.value.status == 409
        assert core.read_namespaced_config_map("a", NS).data == {"x": "1"}

    def test_delete_collection(self, core, kube):
        """DELETE on a collection removes the objects its label selector matches."""
        core.create_namespaced_config_map(NS, cm("a", {"x": "1"}))
        core.create_namespaced_config_map(NS, cm("b", {"x": "2"}))
        core.delete_collection_namespaced_config_map(NS, label_selector="x=1")
        assert [o["metadata"]["name"] for o in kube.objects("configmaps")] == ["b"]


class TestPatch:
    def test_merge_patch(self, core, kube_client):
        """Merge patch adds keys, deletes keys set to null, and replaces lists wholesale."""
        core.create_namespaced_service(NS, lb_service("a", 80, 81))
        patch = {"metadata": {"annotations": {"x": "1"}}, "spec": {"ports": [{"port": 443}]}}
        raw_patch(kube_client, f"/api/v1/namespaces/{NS}/services/a", patch, "application/merge-patch+json")
        patch = {"metadata": {"annotations": {"x": None, "y": "2"}}}
        patched = raw_patch(kube_client, f"/api/v1/namespaces/{NS}/services/a", patch, "application/merge-patch+json")
        assert patched["metadata"]["annotations"] == {"y": "2"}
        assert [p["port"] for p in patched["spec"]["ports"]] == [443]

    def test_strategic_ports(self, core):
        """Strategic merge merges service ports by port and protocol, and $patch: delete removes one."""
        core.create_namespaced_service(NS, lb_service("a", 80))
        core.patch_namespaced_service("a", NS, {"spec": {"ports": [{"port": 443}, {"port": 53, "protocol": "UDP"}]}})
        patched = core.patch_namespaced_service("a", NS, {"spec": {"ports": [{"port": 80, "name": "http"}]}})
        assert [(p.port, p.protocol, p.name) for p in patched.spec.ports] == [
            (80, "TCP", "http"),
            (443, "TCP", None),
            (53, "UDP", None),
        ]
        patched = core.patch_namespaced_service("a", NS, {"spec": {"ports": [{"port": 443, "$patch": "delete"}]}})
        assert [p.port for p in patched.spec.ports] == [80, 53]

    def test_strategic_finalizers(self, core):
        """Strategic merge treats finalizers as a set; $deleteFromPrimitiveList removes members."""
        core.create_namespaced_config_map(NS, {"metadata": {"name": "a", "finalizers": ["x/a"]}})
        patched = core.patch_namespaced_config_map("a", NS, {"metadata": {"finalizers": ["x/b", "x/a"]}})
        assert patched.metadata.finalizers == ["x/a", "x/b"]
        patched = core.patch_namespaced_config_map(
            "a", NS, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/a"]}}
        )
        assert patched.metadata.finalizers == ["x/b"]

    def test_strategic_ingress_replaced(self, core):
        """status.loadBalancer.ingress has no merge key, so a patch replaces it."""
        core.create_namespaced_service(NS, lb_service("a", 80))
        ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}]}}}
        core.patch_namespaced_service_status("a", NS, ingress)
        patched = core.patch_namespaced_service_status(
            "a", NS, {"status": {"loadBalancer": {"ingress": [{"ip": "3.3.3.3"}]}}}
        )
        assert [i.ip for i in patched.status.load_balancer.ingress] == ["3.3.3.3"]

    def test_strategic_conditions(self, core):
        """Node status conditions merge by type."""
        conditions = [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]
        core.create_node({"metadata": {"name": "n1"}, "status": {"conditions": conditions}})
        patched = core.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        assert [(c.type, c.status) for c in patched.status.conditions] == [
            ("Ready", "False"),
            ("DiskPressure", "False"),
        ]

    def test_strategic_containers(self, core):
        """Pod containers merge by name."""
        containers = [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]
        core.create_namespaced_pod(NS, {"metadata": {"name": "p"}, "spec": {"containers": containers}})
        patched = core.patch_namespaced_pod("p", NS, {"spec": {"containers": [{"name": "b", "image": "b:2"}]}})
        assert [(c.name, c.image) for c in patched.spec.containers] == [("a", "a:1"), ("b", "b:2")]

    def test_json_patch(self, core):
        """JSON patch applies add (incl. "-"), replace and remove after a passing test."""
        core.create_namespaced_config_map(NS, {"metadata": {"name": "a", "finalizers": ["x/a"]}, "data": {"k": "v"}})
        ops = [
            {"op": "test", "path": "/data/k", "value": "v"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "x/b"},
            {"op": "replace", "path": "/data/k", "value": "w"},
            {"op": "add", "path": "/metadata/labels", "value": {"a~b/c": "1"}},
            {"op": "remove", "path": "/metadata/labels/a~0b~1c"},
        ]
        patched = core.patch_namespaced_config_map("a", NS, ops)
        assert patched.metadata.finalizers == ["x/a", "x/b"]
        assert patched.data == {"k": "w"} and patched.metadata.labels is None

    def test_strategic_replace_directive(self, core):
        """$patch: replace in a map replaces it instead of merging."""
        core.create_namespaced_config_map(NS, cm("a", {"x": "1", "y": "2"}))
        patch = {"metadata": {"labels": {"$patch": "replace", "z": "3"}}}
        assert core.patch_namespaced_config_map("a", NS, patch).metadata.labels == {"z": "3"}

    def test_json_patch_move_copy(self, core):
        """JSON patch move and copy work on paths with keys and list indexes."""
        core.create_namespaced_config_map(NS, cm("a", k="v"))
        ops = [
            {"op": "copy", "from": "/data/k", "path": "/data/c"},
            {"op": "move", "from": "/data/k", "path": "/data/m"},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x/1", "x/2"]},
            {"op": "move", "from": "/metadata/finalizers/1", "path": "/metadata/finalizers/0"},
        ]
        patched = core.patch_namespaced_config_map("a", NS, ops)
        assert patched.data == {"c": "v", "m": "v"}
        assert patched.metadata.finalizers == ["x/2", "x/1"]

    def test_json_patch_test_failure(self, core):
        """A failing JSON patch test operation is 422 and applies nothing."""
        made = core.create_namespaced_config_map(NS, cm("a", k="v"))
        ops = [{"op": "replace", "path": "/data/k", "value": "w"}, {"op": "test", "path": "/data/k", "value": "v"}]
        with pytest.raises(ApiException) as error:
            core.patch_namespaced_config_map("a", NS, ops)
        assert error.value.status == 422
        assert core.read_namespaced_config_map("a", NS).metadata.resource_version == made.metadata.resource_version

    def test_patch_precondition(self, core):
        """A patch carrying a stale metadata.resourceVersion is 409."""
        made = core.create_namespaced_config_map(NS, cm("a"))
        core.patch_namespaced_config_map("a", NS, {"data": {"x": "1"}})
        with pytest.raises(ApiException) as error:
            core.patch_namespaced_config_map("a", NS, {"metadata": {"resourceVersion": made.metadata.resource_version}})
        assert error.value.status == 409

    def test_unsupported_patch_types(self, core, kube, kube_client):
        """Server-side apply and strategic merge on a custom resource are 415."""
        core.create_namespaced_config_map(NS, cm("a"))
        with pytest.raises(ApiException) as error:
            raw_patch(kube_client, f"/api/v1/namespaces/{NS}/configmaps/a", {}, "application/apply-patch+yaml")
        assert error.value.status == 415
        kube.add_resource("metallb.io", "v1beta1", "ipaddresspools", "IPAddressPool")
        custom = client.CustomObjectsApi(kube_client)
        custom.create_namespaced_custom_object(
            "metallb.io", "v1beta1", NS, "ipaddresspools", {"metadata": {"name": "p"}}
        )
        with pytest.raises(ApiException) as error:
            raw_patch(
                kube_client,
                f"/apis/metallb.io/v1beta1/namespaces/{NS}/ipaddresspools/p",
                {},
                "application/strategic-merge-patch+json",
            )
        assert error.value.status == 415


class TestWatch:
    def test_live_events(self, core):
        """A watch from a list's resourceVersion streams ADDED, MODIFIED and DELETED in order."""
        rv = list_rv(core)
        core.create_namespaced_config_map(NS, cm("a"))
        core.patch_namespaced_config_map("a", NS, {"data": {"x": "1"}})
        core.delete_namespaced_config_map("a", NS)
        events = collect(core.list_namespaced_config_map, NS, resource_version=rv, count=3)
        assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
        versions = [int(e[1]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions) and versions[0] > int(rv)
        assert events[0][1]["kind"] == "ConfigMap"

    def test_initial_state(self, core):
        """A watch without resourceVersion first lists current objects as ADDED, then streams changes."""
        core.create_namespaced_config_map(NS, cm("a"))
        stream, seen = watch.Watch(), []
        for event in stream.stream(core.list_namespaced_config_map, NS, timeout_seconds=5):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 1:
                core.create_namespaced_config_map(NS, cm("b"))
            else:
                stream.stop()
        assert seen == [("ADDED", "a"), ("ADDED", "b")]

    def test_resume(self, core):
        """Resuming from an event's resourceVersion yields only later events."""
        core.create_namespaced_config_map(NS, cm("a"))
        rv = core.patch_namespaced_config_map("a", NS, {"data": {"x": "1"}}).metadata.resource_version
        core.patch_namespaced_config_map("a", NS, {"data": {"x": "2"}})
        events = collect(core.list_namespaced_config_map, NS, resource_version=rv, count=1)
        assert [(t, o["data"]) for t, o in events] == [("MODIFIED", {"x": "2"})]

    def test_selector_transitions(self, core):
        """A filtered watch sees an object leaving the selection as DELETED and entering as ADDED."""
        core.create_namespaced_config_map(NS, cm("a", {"pick": "yes"}))
        rv = list_rv(core)
        core.patch_namespaced_config_map("a", NS, {"metadata": {"labels": {"pick": "no"}}})
        core.patch_namespaced_config_map("a", NS, {"metadata": {"labels": {"pick": "yes"}}})
        events = collect(core.list_namespaced_config_map, NS, resource_version=rv, label_selector="pick=yes", count=2)
        assert [(t, o["metadata"]["labels"]["pick"]) for t, o in events] == [("DELETED", "yes"), ("ADDED", "yes")]

    def test_namespace_scope(self, core):
        """A namespaced watch does not see other namespaces."""
        core.create_namespace({"metadata": {"name": "other"}})
        rv = list_rv(core)
        core.create_namespaced_config_map("other", cm("x"))
        core.create_namespaced_config_map(NS, cm("a"))
        events = collect(core.list_namespaced_config_map, NS, resource_version=rv, count=1)
        assert events[0][1]["metadata"]["name"] == "a"

    def test_compacted_expired(self, core, kube):
        """Resuming below compaction gets an ERROR event with a 410 Expired Status; the client raises 410."""
        rv = list_rv(core)
        core.create_namespaced_config_map(NS, cm("a"))
        kube.compact()
        response = core.list_namespaced_config_map(NS, watch=True, resource_version=rv, _preload_content=False)
        lines = response.data.decode().splitlines()
        event = json.loads(lines[0])
        assert (event["type"], event["object"]["code"], event["object"]["reason"]) == ("ERROR", 410, "Expired")
        with pytest.raises(ApiException) as error:
            collect(core.list_namespaced_config_map, NS, resource_version=rv, count=1)
        assert error.value.status == 410

    def test_bounded_history(self, make_kube):
        """Only the last `history` events are kept per resource: older versions expire, newer resume."""
        small = make_kube(history=3)
        api = small.api_client()
        core = client.CoreV1Api(api)
        old = list_rv(core)
        for name in "abcd":
            core.create_namespaced_config_map(NS, cm(name))
        with pytest.raises(ApiException) as error:
            collect(core.list_namespaced_config_map, NS, resource_version=old, count=1)
        assert error.value.status == 410
        events = collect(core.list_namespaced_config_map, NS, resource_version=str(int(old) + 1), count=3)
        assert [o["metadata"]["name"] for _, o in events] == ["b", "c", "d"]
        api.close()

    def test_bookmarks(self, core, kube):
        """With allowWatchBookmarks, idle watches get BOOKMARK events carrying the current resourceVersion."""
        kube.bookmark_interval = 0.1
        core.create_namespaced_config_map(NS, cm("a"))
        events = collect(
            core.list_namespaced_config_map, NS, resource_version=list_rv(core), allow_watch_bookmarks=True, count=1
        )
        assert events[0][0] == "BOOKMARK"
        assert events[0][1]["metadata"]["resourceVersion"] == str(kube.resource_version)

    def test_no_bookmarks_unless_asked(self, core, kube):
        """Without allowWatchBookmarks no BOOKMARK is sent."""
        kube.bookmark_interval = 0.1
        events = collect(core.list_namespaced_config_map, NS, resource_version=list_rv(core), count=1, timeout=1)
        assert events == []

    def test_timeout_seconds(self, core):
        """timeoutSeconds ends the stream cleanly after that long."""
        started = time.monotonic()
        events = collect(core.list_namespaced_config_map, NS, resource_version=list_rv(core), count=1, timeout=1)
        assert events == []
        assert 0.9 < time.monotonic() - started < 3

    def test_close_all_watches(self, core, kube):
        """close_all_watches ends open streams cleanly, and open_watches counts them."""
        kube.bookmark_interval = 0.1
        stream = watch.Watch()
        seen = []
        for event in stream.stream(core.list_namespaced_config_map, NS, timeout_seconds=10, allow_watch_bookmarks=True):
            seen.append(event["type"])
            assert kube.open_watches == 1
            kube.close_all_watches()
        assert seen == ["BOOKMARK"]
        deadline = time.monotonic() + 2
        while kube.open_watches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert kube.open_watches == 0


class TestFaults:
    def test_fail_next(self, core, kube):
        """fail_next answers matching requests with the status, then the server behaves again."""
        core.create_namespaced_config_map(NS, cm("a"))
        kube.faults.fail_next("GET", r"/configmaps/a$", 503, count=2)
        for _ in range(2):
            with pytest.raises(ApiException) as error:
                core.read_namespaced_config_map("a", NS)
            assert (error.value.status, status_of(error)["reason"]) == (503, "ServiceUnavailable")
        assert core.list_namespaced_config_map(NS).items  # other paths unaffected
        assert core.read_namespaced_config_map("a", NS).metadata.name == "a"
        assert kube.faults.injected == 2 and kube.faults.pending() == 0

    def test_throttling(self, core, kube):
        """A 429 is TooManyRequests with its Retry-After header when one is asked for."""
        kube.faults.fail_next("POST", r"/configmaps", 429, retry_after=7)  # POST: urllib3 does not retry it
        with pytest.raises(ApiException) as error:
            core.create_namespaced_config_map(NS, cm("a"))
        assert error.value.status == 429
        assert error.value.headers["Retry-After"] == "7"
        assert status_of(error)["reason"] == "TooManyRequests"

    def test_retry_after_absorbed_by_client(self, core, kube):
        """The client's urllib3 retries a GET answered 429 with Retry-After, so the caller never sees it."""
        kube.faults.fail_next("GET", r"/configmaps", 429, retry_after=0)
        assert core.list_namespaced_config_map(NS).items == []
        assert kube.request_count("GET", "/configmaps") == 2

    def test_method_filter(self, core, kube):
        """A fault for one method leaves other methods alone."""
        kube.faults.fail_next("POST", r"/configmaps", 500)
        core.list_namespaced_config_map(NS)
        with pytest.raises(ApiException) as error:
            core.create_namespaced_config_map(NS, cm("a"))
        assert error.value.status == 500
        assert kube.get("configmaps", NS, "a") is None

    def test_conflict_next_writes(self, core, kube):
        """conflict_next_writes answers updates with 409 Conflict without changing the object."""
        core.create_namespaced_config_map(NS, cm("a"))
        kube.faults.conflict_next_writes(1)
        with pytest.raises(ApiException) as error:
            core.patch_namespaced_config_map("a", NS, {"data": {"x": "1"}})
        assert (error.value.status, status_of(error)["reason"]) == (409, "Conflict")
        assert core.read_namespaced_config_map("a", NS).data is None
        assert core.patch_namespaced_config_map("a", NS, {"data": {"x": "1"}}).data == {"x": "1"}

    def test_abrupt_watch_drop(self, core, kube):
        """drop_watches_after cuts the stream mid-way: the client sees a protocol error after n events."""
        rv = list_rv(core)
        for name in "abc":
            core.create_namespaced_config_map(NS, cm(name))
        kube.faults.drop_watches_after(2)
        seen = []
        with pytest.raises(urllib3.exceptions.ProtocolError):
            for event in watch.Watch().stream(
                core.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=5
            ):
                seen.append(event["object"].metadata.name)
        assert seen == ["a", "b"]

    def test_clean_drop_resumes(self, core, kube):
        """A cleanly ended stream is resumed by the client from its last resourceVersion, without duplicates."""
        rv = list_rv(core)
        for name in "abc":
            core.create_namespaced_config_map(NS, cm(name))
        kube.faults.drop_watches_after(1, abrupt=False)
        stream, seen = watch.Watch(), []
        for event in stream.stream(core.list_namespaced_config_map, NS, resource_version=rv, _request_timeout=5):
            seen.append(event["object"].metadata.name)
            if len(seen) == 3:
                stream.stop()
        assert seen == ["a", "b", "c"]
        assert kube.request_count("GET", "watch=True") == 3

    def test_expire_resume(self, core, kube):
        """expire_resume answers resumes with 410 (the client retries once, then raises); fresh watches work."""
        core.create_namespaced_config_map(NS, cm("a"))
        rv = list_rv(core)
        kube.faults.expire_resume(True)
        with pytest.raises(ApiException) as error:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, NS, resource_version=rv, _request_timeout=5):
                pass
        assert error.value.status == 410
        assert kube.request_count("GET", "watch=True") == 2
        assert collect(core.list_namespaced_config_map, NS, count=1)[0][0] == "ADDED"

    def test_end_watches_at_once(self, core, kube):
        """end_watches_at_once answers each watch with an empty 200 at once (events never arrive) until turned off."""
        rv = list_rv(core)
        core.create_namespaced_config_map(NS, cm("a"))
        kube.faults.end_watches_at_once(True)
        for _ in range(3):
            started = time.monotonic()
            assert collect(core.list_namespaced_config_map, NS, resource_version=rv, count=1, timeout=5) == []
            assert time.monotonic() - started < 1
        assert kube.request_count("GET", "watch=True") == 3
        assert kube.faults.injected == 3
        kube.faults.end_watches_at_once(False)
        assert collect(core.list_namespaced_config_map, NS, resource_version=rv, count=1)[0][0] == "ADDED"

    def test_end_watches_at_once_abrupt(self, core, kube):
        """With abrupt=True the connection is cut right after the headers: the client sees a protocol error."""
        kube.faults.end_watches_at_once(True, abrupt=True)
        started = time.monotonic()
        with pytest.raises(urllib3.exceptions.ProtocolError):
            collect(core.list_namespaced_config_map, NS, resource_version=list_rv(core), count=1, timeout=5)
        assert time.monotonic() - started < 1
        kube.faults.clear()
        core.create_namespaced_config_map(NS, cm("a"))
        assert collect(core.list_namespaced_config_map, NS, count=1)[0][0] == "ADDED"

    def test_clear(self, core, kube):
        """clear removes pending faults."""
        kube.faults.fail_next("*", ".", 500, count=5)
        kube.faults.conflict_next_writes(3)
        kube.faults.drop_watches_after(0)
        kube.faults.end_watches_at_once(True)
        kube.faults.clear()
        assert kube.faults.pending() == 0
        core.create_namespaced_config_map(NS, cm("a"))
        assert core.patch_namespaced_config_map("a", NS, {"data": {"x": "1"}}).data == {"x": "1"}
        assert collect(core.list_namespaced_config_map, NS, count=1)[0][0] == "ADDED"


class TestEventsLeasesEndpoints:
    def test_core_events(self, core):
        """core/v1 Events are stored and selectable by involvedObject fields."""
        for name in ("a", "b"):
            event = {
                "metadata": {"generateName": f"{name}."},
                "involvedObject": {"kind": "Service", "name": name, "namespace": NS},
                "reason": "IPAllocated",
                "message": "assigned",
                "type": "Normal",
            }
            core.create_namespaced_event(NS, event)
        listed = core.list_namespaced_event(NS, field_selector="involvedObject.name=b,reason=IPAllocated")
        assert [e.involved_object.name for e in listed.items] == ["b"]

    def test_events_v1(self, kube_client):
        """events.k8s.io/v1 Events are served under their own group."""
        api = client.EventsV1Api(kube_client)
        body = {
            "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "metallb.io/controller",
            "reportingInstance": "c1",
            "action": "Allocate",
            "reason": "IPAllocated",
            "regarding": {"kind": "Service", "name": "a"},
        }
        api.create_namespaced_event(NS, body)
        assert api.read_namespaced_event("e1", NS).regarding.name == "a"

    def test_lease_election(self, kube_client, kube):
        """Two candidates racing on one Lease: the stale update is 409; renewTime round-trips."""
        leases = client.CoordinationV1Api(kube_client)
        now = kube.now()
        spec = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": now.isoformat()}
        made = leases.create_namespaced_lease("kube-system", {"metadata": {"name": "metallb"}, "spec": spec})
        mine, theirs = leases.read_namespaced_lease("metallb", "kube-system"), made
        mine.spec.renew_time = now + timedelta(seconds=2)
        leases.replace_namespaced_lease("metallb", "kube-system", mine)
        theirs.spec.holder_identity = "b"
        with pytest.raises(ApiException) as error:
            leases.replace_namespaced_lease("metallb", "kube-system", theirs)
        assert error.value.status == 409
        stored = leases.read_namespaced_lease("metallb", "kube-system")
        assert stored.spec.holder_identity == "a" and stored.spec.renew_time == now + timedelta(seconds=2)

    def test_endpoint_slices(self, kube_client):
        """EndpointSlices of one service are found by the kubernetes.io/service-name label."""
        api = client.DiscoveryV1Api(kube_client)
        for name, svc in (("a-1", "a"), ("b-1", "b")):
            labels = {"kubernetes.io/service-name": svc}
            endpoints = [{"addresses": ["10.1.0.1"], "nodeName": "n1", "conditions": {"ready": True}}]
            body = {"metadata": {"name": name, "labels": labels}, "addressType": "IPv4", "endpoints": endpoints}
            api.create_namespaced_endpoint_slice(NS, body)
        found = api.list_namespaced_endpoint_slice(NS, label_selector="kubernetes.io/service-name=a")
        assert [s.metadata.name for s in found.items] == ["a-1"]
        assert found.items[0].endpoints[0].node_name == "n1"

    def test_endpoints(self, core):
        """core/v1 Endpoints are served."""
        subsets = [{"addresses": [{"ip": "10.1.0.1", "nodeName": "n1"}], "ports": [{"port": 80}]}]
        core.create_namespaced_endpoints(NS, {"metadata": {"name": "a"}, "subsets": subsets})
        assert core.read_namespaced_endpoints("a", NS).subsets[0].addresses[0].node_name == "n1"


class TestClockAndAccessors:
    def test_clock_advance(self, core, kube):
        """Advancing the server clock moves timestamps and the Date header."""
        kube.clock.advance(3600)
        made = core.create_namespaced_config_map(NS, cm("a"))
        assert made.metadata.creation_timestamp - datetime.now(UTC) > timedelta(minutes=59)
        assert abs(kube.now() - made.metadata.creation_timestamp) < timedelta(seconds=5)
        _, _, headers = core.read_namespaced_config_map_with_http_info("a", NS)
        assert parsedate_to_datetime(headers["Date"]) - datetime.now(UTC) > timedelta(minutes=59)

    def test_put_object(self, core, kube):
        """put_object stores status as given, creates the namespace, and notifies watchers."""
        rv = list_rv(core)
        kube.put_object(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "a", "namespace": "fresh"},
                "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
            }
        )
        assert core.read_namespaced_service("a", "fresh").status.load_balancer.ingress[0].ip == "1.2.3.4"
        assert core.read_namespace("fresh").status.phase == "Active"
        events = collect(core.list_service_for_all_namespaces, resource_version=rv, count=1)
        assert events[0][0] == "ADDED"

    def test_get_returns_copies(self, core, kube):
        """get and objects return copies: changing them changes nothing on the server."""
        core.create_namespaced_config_map(NS, cm("a", x="1"))
        kube.get("ConfigMap", NS, "a")["data"]["x"] = "2"
        kube.objects("configmaps")[0]["data"]["x"] = "3"
        assert core.read_namespaced_config_map("a", NS).data == {"x": "1"}
        assert kube.get("events.events.k8s.io", NS, "a") is None

    def test_delete_object_force(self, core, kube):
        """delete_object with force removes an object despite its finalizers."""
        core.create_namespaced_config_map(NS, {"metadata": {"name": "a", "finalizers": ["x/a"]}})
        kube.delete_object("configmaps", NS, "a")
        assert kube.get("configmaps", NS, "a")["metadata"]["deletionTimestamp"]
        kube.delete_object("configmaps", NS, "a", force=True)
        assert kube.get("configmaps", NS, "a") is None

    def test_custom_resource(self, kube, kube_client):
        """add_resource serves a custom resource through CustomObjectsApi, including /status."""
        kube.add_resource("metallb.io", "v1beta1", "ipaddresspools", "IPAddressPool", status=True)
        custom = client.CustomObjectsApi(kube_client)
        args = ("metallb.io", "v1beta1", NS, "ipaddresspools")
        custom.create_namespaced_custom_object(
            *args, {"metadata": {"name": "p"}, "spec": {"addresses": ["10.0.0.0/24"]}}
        )
        custom.patch_namespaced_custom_object_status(*args, "p", {"status": {"assigned": 1}})
        pool = custom.get_namespaced_custom_object(*args, "p")
        assert pool["status"] == {"assigned": 1} and pool["kind"] == "IPAddressPool"


CRDS = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "crds"


def crd(name: str) -> dict[str, Any]:
    """One of metallb's CRDs, as shipped in operator/deploy/crds."""
    import yaml

    return yaml.safe_load((CRDS / f"metallb.io_{name}.yaml").read_text())


class TestCustomResourceDefinitions:
    """A created CRD is served like an established one: versions, scope, status subresource, watch."""

    def test_created_crd_is_served_and_established(self, kube_client):
        """Creating a CRD serves its kind (discovery lists it and its /status) and marks it Established."""
        ext = client.ApiextensionsV1Api(kube_client)
        ext.create_custom_resource_definition(crd("ipaddresspools"))
        found = ext.read_custom_resource_definition("ipaddresspools.metallb.io")
        assert {c.type: c.status for c in found.status.conditions}["Established"] == "True"
        resources = client.CustomObjectsApi(kube_client).get_api_resources("metallb.io", "v1beta1").resources
        assert {"ipaddresspools", "ipaddresspools/status"} <= {r.name for r in resources}

    def test_status_subresource_and_watch(self, kube, kube_client):
        """Objects of a CRD version with a status subresource keep spec and status apart, and are watched."""
        kube.put_object(crd("ipaddresspools"))
        custom = client.CustomObjectsApi(kube_client)
        args = ("metallb.io", "v1beta1", NS, "ipaddresspools")
        custom.create_namespaced_custom_object(
            *args, {"metadata": {"name": "p"}, "spec": {"addresses": ["10.0.0.0/24"]}, "status": {"x": 1}}
        )
        assert "status" not in custom.get_namespaced_custom_object(*args, "p")  # create ignores it
        custom.patch_namespaced_custom_object_status(
            *args, "p", {"status": {"assignedIPv4": 2}, "spec": {"addresses": []}}
        )
        pool = custom.get_namespaced_custom_object(*args, "p")
        assert pool["status"] == {"assignedIPv4": 2} and pool["spec"]["addresses"] == ["10.0.0.0/24"]
        assert pool["metadata"]["generation"] == 1  # a status write is no spec change
        threading.Timer(
            0.2,
            lambda: kube.put_object(
                {
                    "apiVersion": "metallb.io/v1beta1",
                    "kind": "IPAddressPool",
                    "metadata": {"name": "q", "namespace": NS},
                    "spec": {"addresses": ["10.1.0.0/24"]},
                }
            ),
        ).start()
        events = collect(custom.list_namespaced_custom_object, *args, count=2)
        assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "p"), ("ADDED", "q")]

    def test_versions_share_storage(self, kube, kube_client):
        """A v1beta1 BGPPeer reads back as v1beta2 (conversion strategy None: the same object, its version asked for)."""
        kube.put_object(crd("bgppeers"))
        custom = client.CustomObjectsApi(kube_client)
        body = {"metadata": {"name": "r"}, "spec": {"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1"}}
        custom.create_namespaced_custom_object("metallb.io", "v1beta1", NS, "bgppeers", body)
        peer = custom.get_namespaced_custom_object("metallb.io", "v1beta2", NS, "bgppeers", "r")
        assert peer["apiVersion"] == "metallb.io/v1beta2" and peer["spec"]["peerASN"] == 2
        listed = custom.list_namespaced_custom_object("metallb.io", "v1beta2", NS, "bgppeers")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["r"]

    def test_deleted_crd_is_no_longer_served(self, kube, kube_client):
        """Deleting a CRD stops serving its kind (404) and drops its objects."""
        kube.put_object(crd("communities"))
        custom = client.CustomObjectsApi(kube_client)
        args = ("metallb.io", "v1beta1", NS, "communities")
        custom.create_namespaced_custom_object(*args, {"metadata": {"name": "c"}, "spec": {}})
        client.ApiextensionsV1Api(kube_client).delete_custom_resource_definition("communities.metallb.io")
        with pytest.raises(ApiException) as info:
            custom.list_namespaced_custom_object(*args)
        assert info.value.status == 404


class TestServer:
    def test_latency_and_keep_alive(self, core, kube):
        """Requests are fast (Nagle is off) and share one kept-alive connection."""
        core.create_namespaced_config_map(NS, cm("a"))
        started = time.perf_counter()
        for _ in range(100):
            core.read_namespaced_config_map("a", NS)
        assert (time.perf_counter() - started) / 100 < 0.01
        assert kube.connections_accepted == 1

    @pytest.mark.parametrize(
        ("method", "path", "query", "body", "code"),
        [
            ("GET", "/api/v1/namespaces/default/widgets", [], None, 404),
            ("GET", "/api/v1/namespaces/default/configmaps/a/status", [], None, 404),  # configmaps have no status
            ("GET", "/apis/discovery.k8s.io/v2/endpointslices", [], None, 404),
            ("POST", "/api/v1/namespaces/default/configmaps/a", [], {"metadata": {"name": "a"}}, 405),
            ("POST", "/api/v1/namespaces/default/configmaps", [], {"metadata": {"name": "a", "namespace": "x"}}, 400),
            ("POST", "/api/v1/namespaces/default/configmaps", [], {"metadata": {}}, 422),
            ("POST", "/api/v1/namespaces/default/configmaps", [], ["not", "an", "object"], 400),
            ("GET", "/api/v1/namespaces/default/configmaps", [("watch", "true"), ("resourceVersion", "x")], None, 400),
            ("GET", "/api/v1/namespaces/default/configmaps", [("labelSelector", "a in b")], None, 400),
        ],
    )
    def test_bad_requests(self, kube_client, method, path, query, body, code):
        """Bad paths, verbs and bodies get the real server's error code with a Status."""
        with pytest.raises(ApiException) as error:
            kube_client.call_api(path, method, query_params=query, body=body, response_type="object")
        assert error.value.status == code
        status_of(error)

    def test_client_gone(self, core, kube):
        """A watch whose client went away stops being served."""
        kube.bookmark_interval = 0.05
        collect(core.list_namespaced_config_map, NS, allow_watch_bookmarks=True, count=1)
        deadline = time.monotonic() + 2
        while kube.open_watches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert kube.open_watches == 0

    def test_concurrent_writers(self, core, kube):
        """Concurrent writes all reach a watcher, in resourceVersion order, each exactly once."""
        rv = list_rv(core)

        def write(prefix: str) -> None:
            for n in range(25):
                core.create_namespaced_config_map(NS, cm(f"{prefix}{n}"))

        threads = [threading.Thread(target=write, args=(p,)) for p in "abcd"]
        for thread in threads:
            thread.start()
        events = collect(core.list_namespaced_config_map, NS, resource_version=rv, count=100)
        for thread in threads:
            thread.join()
        versions = [int(o["metadata"]["resourceVersion"]) for _, o in events]
        assert versions == sorted(set(versions)) and len(versions) == 100

    def test_kubeconfig(self, kube, tmp_path):
        """write_kubeconfig writes a file the client's config loader accepts."""
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        api = config.new_client_from_config(config_file=str(path))
        assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"
        api.close()

    def test_restart_keeps_state(self, core, kube):
        """stop() refuses connections; start() serves the same objects on the same port again."""
        core.create_namespaced_config_map(NS, cm("a"))
        port = kube.port
        kube.stop()
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            core.read_namespaced_config_map("a", NS, _request_timeout=1)
        kube.start()
        assert kube.port == port
        assert core.read_namespaced_config_map("a", NS).metadata.name == "a"

    def test_stop_ends_watches(self, core, kube):
        """stop() ends open watch streams instead of leaving clients hanging."""
        kube.bookmark_interval = 0.1
        stream = watch.Watch()
        started = time.monotonic()
        # The stream ends cleanly, unless the connection is shut before the last chunk left.
        with contextlib.suppress(urllib3.exceptions.ProtocolError):
            for event in stream.stream(
                core.list_namespaced_config_map, NS, timeout_seconds=10, allow_watch_bookmarks=True
            ):
                assert event["type"] == "BOOKMARK"
                kube.stop()
        assert time.monotonic() - started < 5
        assert kube.open_watches == 0

    def test_script(self, tmp_path):
        """Run as a script, it serves on the given port and writes a kubeconfig."""
        script = Path(__file__).resolve().parents[1] / "kube_emulator.py"
        kubeconfig = tmp_path / "kubeconfig"
        argv = [sys.executable, str(script), "--port", "0", "--kubeconfig", str(kubeconfig)]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as process:
            try:
                assert process.stdout is not None
                url = process.stdout.readline().strip()
                assert url.startswith("http://127.0.0.1:")
                api = config.new_client_from_config(config_file=str(kubeconfig))
                assert client.VersionApi(api).get_code().major == "1"
                api.close()
            finally:
                process.terminate()
