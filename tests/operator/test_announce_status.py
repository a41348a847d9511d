"""ServiceL2Status and ServiceBGPStatus objects as the announcing speaker publishes them, against the API emulator."""

from __future__ import annotations

import pytest
from metallb.allocator.testing import wait_for
from metallb.operator.announce_status import (
    BGP,
    L2,
    AnnouncementStatus,
    StatusKind,
    bgp_status,
    l2_status,
    status_name,
)

NS = "metallb-system"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def started(kube, kind: StatusKind = L2):
    """Node n1's AnnouncementStatus for *kind*, its informer listed; stop it after the test."""
    kube.add_resource("metallb.io", "v1beta1", kind.plural, kind.kind, status=True)
    kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    writes: list[tuple[str, str]] = []
    status = AnnouncementStatus(
        kube.api_client(), namespace=NS, node_name="n1", on_change=lambda kind, obj: None,
        wrote=lambda resource, verb: writes.append((resource, verb)), watch_timeout=5, kind=kind,
    )  # fmt: skip
    status.informer.start()
    wait_for(status.informer.synced.is_set)
    status.writes = writes  # type: ignore[attr-defined]
    yield status
    status.informer.stop()


@pytest.fixture(name="statuses")
def _statuses(kube):
    """Node n1's AnnouncementStatus for ServiceL2Status, its informer listed."""
    yield from started(kube, L2)


def nodes_of(kube, service: str = "web", kind: StatusKind = L2) -> list[str]:
    """The nodes whose status object of *kind* names default/*service*."""
    return sorted(
        o["status"]["node"]
        for o in kube.objects(kind.plural, NS)
        if o["metadata"]["labels"]["metallb.io/service-name"] == service
    )


class TestAnnouncementStatus:
    """publish() converges this node's objects on what it announces, writing only differences."""

    def test_object_has_metallb_labels_and_fields(self):
        """The object carries MetalLB's labels and status fields, named from node and Service."""
        obj = l2_status("n1", "default/web", ["eth1", "eth0"], namespace=NS)
        assert obj["apiVersion"] == "metallb.io/v1beta1" and obj["kind"] == "ServiceL2Status"
        assert obj["metadata"]["labels"] == {
            "metallb.io/node": "n1", "metallb.io/service-name": "web", "metallb.io/service-namespace": "default",
        }  # fmt: skip
        assert obj["status"] == {"node": "n1", "serviceName": "web", "serviceNamespace": "default",
                                 "interfaces": [{"name": "eth0"}, {"name": "eth1"}]}  # fmt: skip
        assert obj["metadata"]["name"] == status_name("n1", "default/web") != status_name("n2", "default/web")

    def test_written_on_change_only_and_deleted_when_withdrawn(self, kube, statuses):
        """A new announcement is written, the same one again writes nothing, an interface change rewrites it, a withdrawal deletes it."""
        statuses.publish({"default/web": ("eth0",)}, live=frozenset({"n1"}))
        stored = kube.get("servicel2statuses", NS, status_name("n1", "default/web"))
        assert stored["status"]["interfaces"] == [{"name": "eth0"}]
        before = sum(kube.request_count(m) for m in WRITES)
        for _ in range(5):
            statuses.publish({"default/web": ("eth0",)}, live=frozenset({"n1"}))
        assert sum(kube.request_count(m) for m in WRITES) == before
        statuses.publish({"default/web": ("eth0", "eth1")}, live=frozenset({"n1"}))
        stored = kube.get("servicel2statuses", NS, status_name("n1", "default/web"))
        assert stored["status"]["interfaces"] == [{"name": "eth0"}, {"name": "eth1"}]
        statuses.publish({}, live=frozenset({"n1"}))
        assert kube.objects("servicel2statuses", NS) == []
        assert ("servicel2statuses", "delete") in statuses.writes

    def test_new_owner_removes_dead_nodes_objects_only(self, kube, statuses):
        """Taking a Service over deletes the objects of nodes no longer alive, and keeps a live node's."""
        for node in ("n2", "n3"):
            kube.put_object(l2_status(node, "default/web", ["eth0"], namespace=NS))
        wait_for(lambda: len(statuses.informer.cache) == 2)
        assert statuses.announcers() == {"default/web": frozenset({"n2", "n3"})}
        statuses.publish({"default/web": ("eth0",)}, live=frozenset({"n1", "n3"}))
        assert nodes_of(kube) == ["n1", "n3"]

    def test_leftovers_of_a_previous_run_are_cleaned_up(self, kube, statuses):
        """Objects of this node that it no longer announces (a restart) are deleted at the first publish."""
        kube.put_object(l2_status("n1", "default/old", ["eth0"], namespace=NS))
        fresh = AnnouncementStatus(
            kube.api_client(), namespace=NS, node_name="n1", on_change=lambda kind, obj: None,
            wrote=lambda resource, verb: None, watch_timeout=5,
        )  # fmt: skip
        fresh.informer.start()
        try:
            wait_for(fresh.informer.synced.is_set)
            fresh.publish({"default/web": ("eth0",)}, live=frozenset({"n1"}))
            assert nodes_of(kube, "old") == [] and nodes_of(kube, "web") == ["n1"]
        finally:
            fresh.informer.stop()


@pytest.fixture(name="bgp_statuses")
def _bgp_statuses(kube):
    """Node n1's AnnouncementStatus for ServiceBGPStatus, its informer listed."""
    yield from started(kube, BGP)


def bgp_nodes_of(kube, service: str = "web") -> list[str]:
    """The nodes whose ServiceBGPStatus names default/*service*."""
    return nodes_of(kube, service, BGP)


class TestBgpStatus:
    """ServiceBGPStatus: the same mechanism, with peers instead of interfaces."""

    def test_object_has_metallb_labels_and_fields(self):
        """MetalLB 0.15's kind, labels and status fields; peers sorted; named bgp- and apart from the L2 object."""
        obj = bgp_status("n1", "default/web", ["tor-b", "tor-a"], namespace=NS)
        assert obj["apiVersion"] == "metallb.io/v1beta1" and obj["kind"] == "ServiceBGPStatus"
        assert obj["metadata"]["labels"] == {
            "metallb.io/node": "n1", "metallb.io/service-name": "web", "metallb.io/service-namespace": "default",
        }  # fmt: skip
        assert obj["status"] == {"node": "n1", "serviceName": "web", "serviceNamespace": "default",
                                 "peers": ["tor-a", "tor-b"]}  # fmt: skip
        name = obj["metadata"]["name"]
        assert name == status_name("n1", "default/web", BGP) and name.startswith("bgp-")
        assert name[4:] == status_name("n1", "default/web")[3:]  # the same hash as the ServiceL2Status's

    def test_written_when_peers_change_and_deleted_when_withdrawn(self, kube, bgp_statuses):
        """New peers are written, the same again writes nothing, a peer lost rewrites them, a withdrawal deletes."""
        bgp_statuses.publish({"default/web": ("tor-a", "tor-b")}, live=frozenset({"n1"}))
        name = status_name("n1", "default/web", BGP)
        assert kube.get("servicebgpstatuses", NS, name)["status"]["peers"] == ["tor-a", "tor-b"]
        before = sum(kube.request_count(m) for m in WRITES)
        for _ in range(5):
            bgp_statuses.publish({"default/web": ("tor-b", "tor-a")}, live=frozenset({"n1"}))
        assert sum(kube.request_count(m) for m in WRITES) == before
        bgp_statuses.publish({"default/web": ("tor-b",)}, live=frozenset({"n1"}))
        assert kube.get("servicebgpstatuses", NS, name)["status"]["peers"] == ["tor-b"]
        wait_for(lambda: bgp_statuses.announcers() == {"default/web": frozenset({"n1"})})
        bgp_statuses.publish({}, live=frozenset({"n1"}))
        assert kube.objects("servicebgpstatuses", NS) == []
        assert ("servicebgpstatuses", "delete") in bgp_statuses.writes
        assert ("servicebgpstatuses/status", "patch") in bgp_statuses.writes

    def test_announcers_count_only_objects_naming_a_peer(self, kube, bgp_statuses):
        """A node's object without peers (none established) does not make it an announcer."""
        kube.put_object(bgp_status("n2", "default/web", [], namespace=NS))
        kube.put_object(bgp_status("n3", "default/web", ["tor-a"], namespace=NS))
        wait_for(lambda: len(bgp_statuses.informer.cache) == 2)
        assert bgp_statuses.announcers() == {"default/web": frozenset({"n3"})}

    def test_writer_removes_dead_nodes_objects_unless_it_is_cut_off(self, kube, bgp_statuses):
        """Writing a Service's status deletes dead nodes' objects of it; a node not live itself deletes none."""
        for node in ("n2", "n3"):
            kube.put_object(bgp_status(node, "default/web", ["tor-a"], namespace=NS))
        wait_for(lambda: len(bgp_statuses.informer.cache) == 2)
        bgp_statuses.publish({"default/web": ("tor-a",)}, live=frozenset({"n2"}))  # n1 cut off: sees n3 dead
        assert bgp_nodes_of(kube) == ["n1", "n2", "n3"]
        bgp_statuses.publish({"default/web": ("tor-a", "tor-b")}, live=frozenset({"n1", "n2"}))
        assert bgp_nodes_of(kube) == ["n1", "n2"]

    def test_optional_kind_without_its_crd_writes_nothing(self, kube):
        """Without the ServiceBGPStatus CRD an optional status lists as empty, is ready, and publishes nothing."""
        status = AnnouncementStatus(
            kube.api_client(), namespace=NS, node_name="n1", on_change=lambda kind, obj: None,
            wrote=lambda resource, verb: None, watch_timeout=5, kind=BGP, optional=True,
        )  # fmt: skip
        status.informer.start()
        try:
            wait_for(status.informer.synced.is_set)
            before = sum(kube.request_count(m) for m in WRITES)
            status.publish({"default/web": ("tor-a",)}, live=frozenset({"n1"}))
            assert sum(kube.request_count(m) for m in WRITES) == before
        finally:
            status.informer.stop()

    def test_first_live_node_deletes_objects_of_nodes_that_died(self, kube, bgp_statuses):
        """A node leaving the live set loses every object, deleted by the first live node by name only."""
        kube.put_object(bgp_status("n2", "default/other", ["tor-a"], namespace=NS))
        kube.put_object(bgp_status("a0", "default/web", ["tor-a"], namespace=NS))
        wait_for(lambda: len(bgp_statuses.informer.cache) == 2)
        bgp_statuses.publish({}, live=frozenset({"a0", "n1", "n2"}))
        bgp_statuses.publish({}, live=frozenset({"a0", "n1"}))  # n2 died, but a0 comes first: a0 cleans up
        assert bgp_nodes_of(kube, "other") == ["n2"]
        bgp_statuses.publish({}, live=frozenset({"n1"}))  # a0 died too: n1 is first now
        assert bgp_nodes_of(kube, "other") == [] and bgp_nodes_of(kube, "web") == []

    def test_own_object_deleted_by_another_node_is_written_again(self, kube, bgp_statuses):
        """An object of ours another node deleted (it took us for dead) is written again at the next publish."""
        bgp_statuses.publish({"default/web": ("tor-a",)}, live=frozenset({"n1"}))
        name = status_name("n1", "default/web", BGP)
        wait_for(lambda: f"{NS}/{name}" in bgp_statuses.informer.cache)
        bgp_statuses.publish({"default/web": ("tor-a",)}, live=frozenset({"n1"}))
        kube.delete_object("servicebgpstatuses", NS, name)
        wait_for(lambda: f"{NS}/{name}" not in bgp_statuses.informer.cache)
        bgp_statuses.publish({"default/web": ("tor-a",)}, live=frozenset({"n1"}))
        assert bgp_nodes_of(kube) == ["n1"]
        wait_for(lambda: f"{NS}/{name}" in bgp_statuses.informer.cache)
        before = sum(kube.request_count(m) for m in WRITES)
        for _ in range(3):
            bgp_statuses.publish({"default/web": ("tor-a",)}, live=frozenset({"n1"}))
        assert sum(kube.request_count(m) for m in WRITES) == before
