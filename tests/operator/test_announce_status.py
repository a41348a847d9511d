"""ServiceL2Status objects as the announcing speaker publishes them, against the API emulator."""

from __future__ import annotations

import pytest
from metallb.allocator.testing import wait_for
from metallb.operator.announce_status import AnnouncementStatus, l2_status, status_name

NS = "metallb-system"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(name="statuses")
def _statuses(kube):
    """Node n1's AnnouncementStatus, its informer listed."""
    kube.add_resource("metallb.io", "v1beta1", "servicel2statuses", "ServiceL2Status", status=True)
    kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    writes: list[tuple[str, str]] = []
    status = AnnouncementStatus(
        kube.api_client(), namespace=NS, node_name="n1", on_change=lambda kind, obj: None,
        wrote=lambda resource, verb: writes.append((resource, verb)), watch_timeout=5,
    )  # fmt: skip
    status.informer.start()
    wait_for(status.informer.synced.is_set)
    status.writes = writes  # type: ignore[attr-defined]
    yield status
    status.informer.stop()


def nodes_of(kube, service: str = "web") -> list[str]:
    """The nodes whose ServiceL2Status names default/*service*."""
    return sorted(
        o["status"]["node"]
        for o in kube.objects("servicel2statuses", NS)
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
