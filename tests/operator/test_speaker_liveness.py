"""The speaker's liveness modes against the API emulator: memberlist, its fallback to Node conditions, the Lease."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from metallb.allocator.testing import wait_for
from metallb.operator import cli
from metallb.operator.kube import now_rfc3339
from metallb.operator.liveness import (
    MACS_ANNOTATION,
    MAX_MACS,
    NODE_LEASE_NAMESPACE,
    SECRET_COMMAND,
    ApiLoad,
    LeaseLiveness,
    MemberlistLiveness,
    MemberlistOptions,
    NodeLiveness,
    annotation_macs,
    macs_meta,
    meta_macs,
)
from metallb.operator.membership.crypto import Keyring
from metallb.operator.speaker import Speaker
from prometheus_client import CollectorRegistry

NS = "metallb-system"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
LABELS = {"app.kubernetes.io/component": "speaker"}


def node(name: str, *, ready: bool = True, address: str = "") -> dict:
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if address:
        status["addresses"] = [{"type": "InternalIP", "address": address}]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status}


def kubelet_lease(name: str, *, duration: int = 40) -> dict:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration, "renewTime": now_rfc3339()},
    }


def pod(name: str, node_name: str, ip: str | None, *, phase: str = "Running", deleting: bool = False) -> dict:
    meta = {"name": name, "namespace": NS, "labels": LABELS, "creationTimestamp": "2025-01-01T00:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-02T00:00:00Z"
    status = {"phase": phase} | ({"podIP": ip} if ip else {})
    spec = {"nodeName": node_name, "containers": [{"name": "speaker", "image": "metallb"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def fallback_warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "metallb.operator.liveness" and r.levelno >= logging.WARNING
    ]


@pytest.fixture(name="key")
def _key(tmp_path):
    (tmp_path / "secretkey").write_text("a secret key for the liveness tests\n")
    return tmp_path


class TestFallback:
    def test_no_key_means_node_liveness_and_one_log_line(self, kube, tmp_path, caplog):
        """Without a key the speaker does not gossip: Node conditions instead, said in one warning with the fix."""
        caplog.set_level(logging.INFO)
        registry = CollectorRegistry()
        options = MemberlistOptions(secret_key_path=str(tmp_path / "missing"))
        speaker = Speaker(kube.api_client(), node_name="n1", memberlist=options, registry=registry)
        assert speaker.liveness.mode == "node"
        (warning,) = fallback_warnings(caplog)
        assert "\n" not in warning and "falls back to Node conditions" in warning
        assert str(tmp_path / "missing") in warning and SECRET_COMMAND in warning
        assert registry.get_sample_value("metallb_speaker_liveness", {"mode": "node"}) == 1

    def test_a_taken_port_means_node_liveness_too(self, kube, key, caplog):
        """Gossip that cannot listen on its port falls back the same way, naming the address and port."""
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        try:
            options = MemberlistOptions(bind_addr="127.0.0.1", bind_port=port, secret_key_path=str(key))
            speaker = Speaker(kube.api_client(), node_name="n1", memberlist=options)
        finally:
            taken.close()
        assert speaker.liveness.mode == "node"
        (warning,) = fallback_warnings(caplog)
        assert f"cannot listen on 127.0.0.1:{port}" in warning

    def test_options_and_environment_are_metallbs(self, monkeypatch):
        """--ml-* default from METALLB_ML_*; the liveness is memberlist unless told; a bad port is one line."""
        monkeypatch.setenv("METALLB_ML_BIND_ADDR", "192.0.2.7")
        monkeypatch.setenv("METALLB_ML_BIND_PORT", "7947")
        monkeypatch.setenv("METALLB_ML_LABELS", "app=metallb,component=speaker")
        monkeypatch.setenv("METALLB_ML_NAMESPACE", "lb")
        monkeypatch.setenv("METALLB_ML_SECRET_KEY_PATH", "/run/key")
        args = cli.build_parser().parse_args(["speaker"])
        assert (args.liveness, args.ml_bindaddr, args.ml_bindport) == ("memberlist", "192.0.2.7", 7947)
        assert (args.ml_labels, args.ml_namespace, args.ml_secret_key_path) == (
            "app=metallb,component=speaker", "lb", "/run/key",
        )  # fmt: skip
        monkeypatch.delenv("METALLB_ML_SECRET_KEY_PATH")
        assert cli.build_parser().parse_args(["speaker"]).ml_secret_key_path == "/etc/ml_secret_key"
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args(["speaker", "--ml-bindport", "70000"])
        assert exc.value.code == 2


class TestMemberlistMembers:
    def make(self, kube, key, **options) -> MemberlistLiveness:
        return MemberlistLiveness(
            kube.api_client(),
            node_name="n1",
            namespace=NS,
            options=MemberlistOptions(bind_addr="127.0.0.1", bind_port=0, secret_key_path=str(key), **options),
            keyring=Keyring([b"a secret key for the liveness tests"]),
            wake=lambda: None,
            load=ApiLoad(CollectorRegistry()),
            registry=CollectorRegistry(),
        )

    def test_the_speaker_pods_are_the_members(self, kube, key):
        """One member per node with a running speaker pod at its pod IP; a terminating pod loses to a running one."""
        kube.put_object(pod("s1", "n1", "192.0.2.1"))
        kube.put_object(pod("s2-old", "n2", "192.0.2.2", deleting=True))
        kube.put_object(pod("s2", "n2", "192.0.2.12"))
        kube.put_object(pod("s3", "n3", None, phase="Pending"))
        kube.put_object({**pod("other", "n4", "192.0.2.4"), "metadata": {"name": "other", "namespace": NS}})
        liveness = self.make(kube, key, labels="app.kubernetes.io/component=speaker")
        (informer,) = liveness.informers()
        informer.start()
        try:
            wait_for(lambda: liveness.gossip.addresses, what="the members")
            assert liveness.gossip.addresses == {"n1": "192.0.2.1", "n2": "192.0.2.12"}
            kube.delete_object("pods", NS, "s2", force=True)
            wait_for(lambda: liveness.gossip.addresses == {"n1": "192.0.2.1", "n2": "192.0.2.2"}, what="the old pod")
        finally:
            informer.stop()
            liveness.gossip.stop(leave=False)

    def test_without_labels_every_node_is_a_member_at_its_internal_ip(self, kube, key):
        """Nodes' InternalIPs, applied once the Node list is complete; a Node without one is no member."""
        liveness = self.make(kube, key)
        try:
            assert liveness.informers() == ()
            liveness.on_node("ADDED", node("n1", address="192.0.2.1"))
            liveness.on_node("ADDED", node("n2", address="192.0.2.2"))
            liveness.on_node("ADDED", node("n3"))
            assert liveness.gossip.addresses == {} and not liveness.ready()
            liveness.on_node("SYNCED", None)
            assert liveness.gossip.addresses == {"n1": "192.0.2.1", "n2": "192.0.2.2"}
            liveness.on_node("DELETED", node("n2", address="192.0.2.2"))
            assert liveness.gossip.addresses == {"n1": "192.0.2.1"}
            assert liveness.ready(), "alone in the group: nothing to wait for"
        finally:
            liveness.gossip.stop(leave=False)


class TestNodeLiveness:
    def test_ready_nodes_with_fresh_kubelet_leases_are_live(self, kube):
        """Ready and a kubelet Lease renewed within its duration; NotReady or an expired Lease is dead."""
        api = kube.api_client()
        for name in ("n1", "n2", "n3"):
            kube.put_object(kubelet_lease(name, duration=1 if name == "n3" else 40))
        liveness = NodeLiveness(api, node_name="n1", wake=lambda: None, load=ApiLoad(CollectorRegistry()))
        for obj in (node("n1"), node("n2"), node("n3"), node("n4", ready=False)):
            liveness.on_node("ADDED", obj)
        before = sum(kube.request_count(m) for m in WRITES)
        informer = liveness.node_leases
        informer.start()
        try:
            wait_for(liveness.ready, what="the kubelet Leases listed")
            assert liveness.live() == {"n1", "n2", "n3"}
            assert liveness.next_check() <= 1.0, "woken when n3's Lease expires"
            wait_for(lambda: liveness.live() == {"n1", "n2"}, timeout=3, what="n3's Lease expired")
            liveness.on_node("MODIFIED", node("n2", ready=False))
            assert liveness.live() == {"n1"}
        finally:
            informer.stop()
        assert sum(kube.request_count(m) for m in WRITES) == before, "node liveness writes nothing"

    def test_a_node_that_comes_back_is_held_down(self, kube):
        """A node Ready again counts only after the hold-down; one seen for the first time counts at once."""
        liveness = NodeLiveness(
            kube.api_client(), node_name="n1", wake=lambda: None, load=ApiLoad(CollectorRegistry()), hold_down=0.3
        )
        liveness.on_node("ADDED", node("n2"))
        assert "n2" in liveness.live()
        liveness.on_node("MODIFIED", node("n2", ready=False))
        assert "n2" not in liveness.live()
        liveness.on_node("MODIFIED", node("n2"))
        assert "n2" not in liveness.live()
        time.sleep(0.3)
        assert "n2" in liveness.live()

    def test_a_node_going_not_ready_is_one_suspicion_a_deleted_one_none(self, kube):
        """NotReady after being live reports one suspicion of that node; a Node deleted is no suspicion."""
        liveness = NodeLiveness(kube.api_client(), node_name="n1", wake=lambda: None, load=ApiLoad(CollectorRegistry()))
        suspected: list[str] = []
        liveness.suspect = suspected.append
        for name in ("n2", "n3"):
            liveness.on_node("ADDED", node(name))
        assert liveness.live() == {"n1", "n2", "n3"}
        liveness.on_node("MODIFIED", node("n2", ready=False))
        liveness.on_node("DELETED", node("n3"))
        assert liveness.live() == liveness.live() == {"n1"}
        assert suspected == ["n2"]


class TestLeaseLiveness:
    def test_renews_its_lease_sees_others_and_deletes_it_on_stop(self, kube):
        """The --liveness lease mode: its own Lease renewed (counted as writes), others' seen, its own deleted at stop."""
        kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        load = ApiLoad(CollectorRegistry())
        liveness = LeaseLiveness(kube.api_client(), node_name="n1", namespace=NS, wake=lambda: None, load=load)
        (informer,) = liveness.informers()
        informer.start()
        liveness.start()
        try:
            wait_for(lambda: kube.get("leases", NS, "metallb-speaker-n1"), what="its own Lease")
            other = kube.get("leases", NS, "metallb-speaker-n1")
            other["metadata"] = {"name": "metallb-speaker-n2", "namespace": NS, "labels": other["metadata"]["labels"]}
            other["spec"]["holderIdentity"] = "n2"
            kube.put_object(other)
            wait_for(lambda: liveness.live() == {"n1", "n2"}, what="n2 live")
            wait_for(lambda: liveness.live() == {"n1"}, timeout=3, what="n2 expired")
        finally:
            liveness.stop()
            informer.stop()
        assert kube.get("leases", NS, "metallb-speaker-n1") is None
        assert load.writes >= 3 and load.rates()["writes_per_second"] > 0


class TestApiLoad:
    def test_counts_writes_and_delivered_objects(self):
        """Writes by resource and verb; objects an informer delivers by resource (not its SYNCED marks)."""
        registry = CollectorRegistry()
        load = ApiLoad(registry)
        seen = []
        on_event = load.counted("pods", lambda kind, obj: seen.append(kind))
        on_event("ADDED", {"metadata": {}})
        on_event("SYNCED", None)
        load.wrote("events", "create")
        assert seen == ["ADDED", "SYNCED"]
        assert registry.get_sample_value("metallb_speaker_watch_events_total", {"resource": "pods"}) == 1
        assert (
            registry.get_sample_value("metallb_speaker_api_writes_total", {"resource": "events", "verb": "create"}) == 1
        )
        assert (load.writes, load.watch_events) == (1, 1)


MAC_A = frozenset({"02:00:00:00:01:0a"})
MAC_B = frozenset({"02:00:00:00:01:0b", "02:00:00:00:02:0b"})


def writes(kube) -> int:
    """API writes the emulator received so far."""
    return sum(kube.request_count(m) for m in WRITES)


class TestSpeakerMacs:
    """Each mode tells the speakers each other's MACs, bounded, with no write in steady state."""

    def test_meta_holds_at_most_max_macs_and_reads_back(self):
        """The gossip meta of a MAC set reads back as the set; beyond MAX_MACS only the first are kept."""
        assert meta_macs(macs_meta(MAC_B)) == MAC_B
        many = frozenset(f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(100))
        meta = macs_meta(many)
        assert len(meta) == 1 + 6 * MAX_MACS and len(meta_macs(meta)) == MAX_MACS
        assert meta_macs(None) == meta_macs(b"") == meta_macs(b"\x09" + bytes(12)) == frozenset()

    def test_an_annotation_yields_only_valid_macs_and_at_most_max_macs(self):
        """A hostile annotation (garbage, too many MACs, a huge string) yields only valid MACs, at most MAX_MACS."""
        many = ",".join(f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(1000))
        hostile = annotation_macs({"metadata": {"annotations": {MACS_ANNOTATION: "zz:zz,x," + many}}})
        assert 0 < len(hostile) <= MAX_MACS and hostile <= set(many.split(","))
        plain = annotation_macs({"metadata": {"annotations": {MACS_ANNOTATION: "zz:zz, 02:00:00:00:01:0A ,x"}}})
        assert plain == MAC_A
        assert annotation_macs({"metadata": {"annotations": {MACS_ANNOTATION: 7}}}) == frozenset()

    def test_node_mode_writes_its_mac_lease_only_when_the_set_changes(self, kube):
        """Node mode: one write at start-up, none while the MACs stay, one when they change; others' are read."""
        kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        load = ApiLoad(CollectorRegistry())
        n1 = NodeLiveness(kube.api_client(), node_name="n1", namespace=NS, wake=lambda: None, load=load)
        n2 = NodeLiveness(
            kube.api_client(), node_name="n2", namespace=NS, wake=lambda: None, load=ApiLoad(CollectorRegistry())
        )
        for liveness in (n1, n2):
            for name in ("n1", "n2"):
                liveness.on_node("ADDED", node(name))
        n1.mac_leases.start()
        try:
            n1.advertise_macs(MAC_A)
            n2.advertise_macs(MAC_B)
            assert annotation_macs(kube.get("leases", NS, "metallb-speaker-macs-n2")) == MAC_B
            before = writes(kube)
            for _ in range(5):
                n1.advertise_macs(MAC_A)
                n2.advertise_macs(MAC_B)
            assert writes(kube) == before, "steady state: no write"
            wait_for(lambda: n1.peer_macs() == MAC_B, what="n2's MACs known to n1")
            n2.advertise_macs(MAC_A | MAC_B)
            assert writes(kube) - before == 1  # the Lease exists now: one replace
            wait_for(lambda: n1.peer_macs() == MAC_A | MAC_B, what="n2's new MACs")
            n1.on_node("DELETED", node("n2"))
            assert n1.peer_macs() == frozenset(), "a Node that is gone is nobody's"
        finally:
            n1.mac_leases.stop()

    def test_lease_mode_carries_the_macs_in_the_renewals(self, kube):
        """Lease mode: the MACs ride in the Lease's annotation at each renewal (no write of their own)."""
        kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        load = ApiLoad(CollectorRegistry())
        liveness = LeaseLiveness(kube.api_client(), node_name="n1", namespace=NS, wake=lambda: None, load=load)
        liveness.advertise_macs(MAC_A)
        assert load.writes == 0
        liveness.renew_lease()
        own = kube.get("leases", NS, "metallb-speaker-n1")
        assert annotation_macs(own) == MAC_A
        other = dict(own, metadata={**own["metadata"], "name": "metallb-speaker-n2",
                                    "annotations": {MACS_ANNOTATION: ",".join(MAC_B)}},
                     spec={**own["spec"], "holderIdentity": "n2"})  # fmt: skip
        kube.put_object(other)
        (informer,) = liveness.informers()
        informer.start()
        try:
            wait_for(lambda: liveness.peer_macs() == MAC_B, what="n2's MACs from its Lease")
        finally:
            informer.stop()
