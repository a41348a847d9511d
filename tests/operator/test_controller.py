"""`metallb controller` against the Kubernetes API emulator, through the official client."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from metallb.allocator.testing import wait_for
from metallb.operator.controller import Controller
from metallb.operator.service import FINALIZER, POOL_ANNOTATION

NS = "metallb-system"
CONFIG = """
address-pools:
- name: main
  protocol: layer2
  addresses: [192.0.2.10-192.0.2.13]
- name: manual
  protocol: layer2
  auto-assign: false
  addresses: [198.51.100.0/30]
"""


@pytest.fixture(name="core")
def _core(kube):
    api = kube.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NS}}) if kube.get("namespaces", None, NS) is None else None
    core.create_namespaced_config_map(NS, {"metadata": {"name": "config"}, "data": {"config": CONFIG}})
    yield core
    api.close()


@pytest.fixture(name="start")
def _start(kube):
    controllers = []

    def start(**options):
        api = kube.api_client()
        c = Controller(api, watch_timeout=5, **options)
        c.start()
        controllers.append(c)
        return c

    yield start
    for c in controllers:
        c.stop()


def make_service(core, name, *, annotations=None, ports=((80, "TCP"),), **spec):
    body = {
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": p, "protocol": proto} for p, proto in ports], **spec},
    }
    return core.create_namespaced_service("default", body)


def ingress(kube, name):
    obj = kube.get("services", "default", name) or {}
    return [i.get("ip") for i in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()]


def stale(controller):
    return controller.registry.get_sample_value("metallb_k8s_client_config_stale_bool")


def events(kube, name, reason=None):
    return [
        e
        for e in kube.objects("events", "default")
        if e["involvedObject"]["name"] == name and (reason is None or e["reason"] == reason)
    ]


class TestAllocation:
    def test_services_get_addresses_events_and_annotation(self, kube, core, start):
        """Services get addresses in status, an IPAllocated event and the pool annotation."""
        make_service(core, "a")
        start()
        make_service(core, "b", annotations={"metallb.universe.tf/address-pool": "manual"})
        assert wait_for(lambda: ingress(kube, "a")) == ["192.0.2.10"]
        assert wait_for(lambda: ingress(kube, "b")) == ["198.51.100.0"]
        assert kube.get("services", "default", "a")["metadata"]["annotations"][POOL_ANNOTATION] == "main"
        assert wait_for(lambda: events(kube, "a", "IPAllocated"))[0]["type"] == "Normal"
        assert FINALIZER not in (kube.get("services", "default", "a")["metadata"].get("finalizers") or ())

    def test_type_change_releases(self, kube, core, start):
        """Changing a Service to ClusterIP clears its status and frees the address."""
        make_service(core, "a")
        start()
        wait_for(lambda: ingress(kube, "a"))
        core.patch_namespaced_service(
            "a", "default", {"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}}
        )
        wait_for(lambda: ingress(kube, "a") == [], what="status cleared")
        make_service(core, "b")
        assert wait_for(lambda: ingress(kube, "b")) == ["192.0.2.10"]

    def test_exhaustion_event_then_success(self, kube, core, start):
        """A Service that finds the pool full gets AllocationFailed, then an address once one frees up."""
        start()
        for i in range(4):
            make_service(core, f"s{i}")
        held = {i: wait_for(lambda i=i: ingress(kube, f"s{i}")) for i in range(4)}
        assert sorted(ip for ips in held.values() for ip in ips) == [f"192.0.2.{n}" for n in range(10, 14)]
        make_service(core, "late")
        warning = wait_for(lambda: events(kube, "late", "AllocationFailed"))[0]
        assert warning["type"] == "Warning" and "no available IPs" in warning["message"]
        core.delete_namespaced_service("s1", "default")
        assert wait_for(lambda: ingress(kube, "late")) == held[1]


class TestRestart:
    def test_restart_keeps_every_address(self, kube, core, start):
        """A new controller keeps every address in status and allocates nothing twice."""
        first = start()
        for i in range(4):
            make_service(core, f"s{i}")
        before = {f"s{i}": wait_for(lambda i=i: ingress(kube, f"s{i}")) for i in range(4)}
        first.stop()
        allocated = len(kube.objects("events", "default"))
        # While it is down: one Service is deleted, one created.
        core.delete_namespaced_service("s0", "default")
        make_service(core, "new")
        second = start()
        assert wait_for(lambda: ingress(kube, "new")) == ["192.0.2.10"]
        wait_for(lambda: second.synced)
        for i in (1, 2, 3):
            assert ingress(kube, f"s{i}") == before[f"s{i}"]
        assert len(events(kube, "s1", "IPAllocated")) == 1
        assert len(kube.objects("events", "default")) == allocated + 1


class TestConfig:
    def test_bad_config_kept_stale_then_new_pool_used(self, kube, core, start):
        """A bad config is not applied (stale gauge); a later good one is, and pending Services get addresses."""
        c = start()
        for i in range(5):
            make_service(core, f"s{i}")
        # Generous: the first sync lists a dozen informers, slow on a loaded machine (flake hunt, run 3).
        wait_for(lambda: events(kube, "s4", "AllocationFailed"), timeout=60, what="AllocationFailed for s4")
        core.patch_namespaced_config_map("config", NS, {"data": {"config": "address-pools: [broken"}})
        wait_for(lambda: stale(c) == 1, what="stale gauge")
        good = CONFIG + "- name: extra\n  protocol: layer2\n  addresses: [203.0.113.0/30]\n"
        core.patch_namespaced_config_map("config", NS, {"data": {"config": good}})
        assert wait_for(lambda: ingress(kube, "s4")) == ["203.0.113.0"]
        assert stale(c) == 0

    def test_orphaning_config_rejected(self, kube, core, start):
        """A config that drops a pool in use is rejected and the Service keeps its address."""
        c = start()
        make_service(core, "a")
        wait_for(lambda: ingress(kube, "a"))
        core.patch_namespaced_config_map("config", NS, {"data": {"config": "address-pools: []\n"}})
        wait_for(lambda: stale(c) == 1)
        assert ingress(kube, "a") == ["192.0.2.10"]


class TestMisbehavingApi:
    def test_converges_through_faults(self, kube, core, start):
        """409s, 500s, 429s, dropped watches and 410 on resume only delay convergence."""
        kube.faults.conflict_next_writes(3)
        kube.faults.fail_next("PATCH", r"/services/.*/status", 500, count=2)
        kube.faults.fail_next("PATCH", r"/services/", 429, count=1)
        kube.faults.drop_watches_after(2)
        kube.faults.expire_resume(True)
        start()
        for i in range(3):
            make_service(core, f"s{i}")
        got = {wait_for(lambda i=i: tuple(ingress(kube, f"s{i}")), timeout=30) for i in range(3)}
        assert got == {("192.0.2.10",), ("192.0.2.11",), ("192.0.2.12",)}

    @pytest.mark.parametrize("abrupt", [False, True], ids=["empty-200", "connection-cut"])
    def test_watches_ended_at_once_back_off(self, kube, core, start, abrupt):
        """Watches the server ends at once are retried with backoff (not hundreds a second), and resume after."""
        kube.faults.end_watches_at_once(True, abrupt=abrupt)
        c = start()
        wait_for(lambda: c.synced)
        before = len(kube.requests)
        time.sleep(3.0)
        watched = [r.path.partition("?")[0] for r in list(kube.requests)[before:] if r.method == "GET" and "watch=True" in r.path]
        informers = len(set(watched))
        print(f"controller watch requests in 3 s, every watch ended at once: {len(watched)} over {informers} informers")
        # Each informer re-watches about 0.2, 0.4, 0.8, 1.6 s apart: at most 5 in 3 s (without backoff, hundreds).
        assert 0 < len(watched) <= 5 * informers
        kube.faults.clear()
        make_service(core, "a")
        assert wait_for(lambda: ingress(kube, "a"), timeout=15) == ["192.0.2.10"]


class TestStatusCommand:
    def test_cluster_table_shows_addresses_pools_and_pending_reasons(self, kube, core, start, tmp_path):
        """`metallb status --kubeconfig` lists each LoadBalancer with address and pool, or why it is pending."""
        import subprocess
        import sys

        start()
        for i in range(5):
            make_service(core, f"s{i}")
        wait_for(lambda: events(kube, "s4", "AllocationFailed"))
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        result = subprocess.run(
            [sys.executable, "-m", "metallb.operator", "status", "--kubeconfig", str(kubeconfig)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert result.returncode == 0, result.stderr
        lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
        assert set(lines) == {f"default/s{i}" for i in range(5)}
        assert sorted(line.split()[2] for line in lines.values()) == ["-", "main", "main", "main", "main"]
        assert "<pending>" in lines["default/s4"] and "no available IPs" in lines["default/s4"]
