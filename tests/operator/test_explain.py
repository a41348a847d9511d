"""`metallb explain`: which pool and why, why pending, who announces and how, events; and status's kubectl habits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from metallb.allocator import parse_config
from metallb.operator.announce_status import bgp_status
from metallb.operator.explain import Announcer, explain, how_announced, render, service_key, sessions_from_metrics
from metallb.operator.metrics import MetricsServer
from metallb.operator.service import read_service
from prometheus_client import CollectorRegistry, Gauge

CONFIG = """
peers:
- my-asn: 64500
  peer-asn: 64501
  peer-address: 192.0.2.1
- my-asn: 64500
  peer-asn: 64502
  peer-address: 192.0.2.2
  node-selectors:
  - match-labels: {rack: r2}
address-pools:
- name: main
  protocol: layer2
  interfaces: [eth1]
  addresses: [192.0.2.10-192.0.2.11]
- name: manual
  protocol: layer2
  auto-assign: false
  addresses: [198.51.100.0/30]
- name: edge
  protocol: bgp
  addresses: [203.0.113.0/32]
address-services:
- name: dhcp
  url: http://127.0.0.1:1
  protocol: layer2
  cidrs: [10.0.0.0/24]
"""
METALLB = [sys.executable, "-m", "metallb.operator"]


def svc(name: str, *, ns: str = "default", ann: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A Service manifest; ``ingress`` becomes its status addresses."""
    ingress = spec.pop("ingress", ())
    body = {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], **spec}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "annotations": ann or {}},
        "spec": body,
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}},
    }


@pytest.fixture(scope="module")
def config():
    return parse_config(CONFIG)


def others(*objs: dict[str, Any]):
    return [read_service(o) for o in objs]


class TestSelection:
    def test_auto_assign_steps_and_held_pool(self, config):
        """Without a request: the auto-assign pools in order (manual ones named as skipped), then what it holds."""
        e = explain(read_service(svc("web", ingress=["192.0.2.10"])), config, source="t")
        assert e.pool == "main" and e.addresses == ("192.0.2.10",) and not e.pending
        assert e.selection[0].startswith("no address or pool requested: the auto-assign pools in configuration order")
        assert "main, edge, dhcp" in e.selection[0] and "auto-assign: false: manual" in e.selection[0]
        assert "holds 192.0.2.10 from pool main" in e.selection[1]
        assert e.pools == ()  # not tried: it has its address (-o wide tries them)

    def test_pending_lists_what_each_pool_answered(self, config):
        """A pending Service: each auto-assign pool's answer, an address service never asked."""
        full = [svc("a", ingress=["192.0.2.10"]), svc("b", ingress=["192.0.2.11"]), svc("c", ingress=["203.0.113.0"])]
        e = explain(read_service(svc("web")), config, others=others(*full), source="t")
        answers = dict(e.pools)
        assert answers["main"] == 'no available IPs in pool "main"'
        assert answers["edge"] == 'no available IPs in pool "edge"'
        assert "not asked here" in answers["dhcp"]
        assert e.pending.startswith('main: no available IPs in pool "main"')
        assert "Pools tried:" in render(e) and "<pending>" in render(e)

    def test_recorded_pending_reason_wins(self, config):
        """The reason the controller recorded (its last Warning event) is the one shown as pending."""
        e = explain(read_service(svc("web")), config, source="t", pending="AllocationFailed: boom")
        assert e.pending == "AllocationFailed: boom" and e.pools

    def test_annotation_selects_a_manual_pool(self, config):
        """The address-pool annotation names the pool, auto-assign: false included; a free one says so."""
        e = explain(read_service(svc("web", ann={"metallb.universe.tf/address-pool": "manual"})), config, source="t")
        assert e.selection == ('the address-pool annotation names pool "manual"',)
        assert e.pools[0][0] == "manual" and e.pools[0][1].startswith("free: 198.51.100.0")

    def test_unknown_pool_annotation(self, config):
        """An annotation naming no pool says the config lacks it."""
        e = explain(read_service(svc("web", ann={"metallb.universe.tf/address-pool": "nope"})), config, source="t")
        assert e.selection[0].endswith("which the config does not have") and e.pending == "no pool to try"

    def test_requested_address_in_use(self, config):
        """A requested address: its pool whatever the annotation, and the sharing refusal when another holds it."""
        obj = svc("web", loadBalancerIP="192.0.2.10", ann={"metallb.universe.tf/address-pool": "edge"})
        e = explain(read_service(obj), config, others=others(svc("a", ingress=["192.0.2.10"])), source="t")
        assert e.selection[0].startswith("requests 192.0.2.10") and "pool main" in e.selection[0]
        assert "does not allow sharing" in dict(e.pools)["main"]

    def test_requested_address_in_no_pool(self, config):
        """An address outside every pool is named as such."""
        e = explain(read_service(svc("web", loadBalancerIP="172.16.0.1")), config, source="t")
        assert e.selection == ("requests 172.16.0.1, which no pool holds",)

    def test_not_a_load_balancer_and_other_class(self, config):
        """Services metallb leaves alone say why, in one step."""
        e = explain(read_service(svc("web", type="ClusterIP")), config, source="t")
        assert e.selection == ("spec.type is not LoadBalancer: metallb leaves it alone",)
        e = explain(read_service(svc("web", loadBalancerClass="other.io/lb")), config, source="t")
        assert "served only by a controller started with --lb-class" in e.selection[0]

    def test_invalid_request_and_dual_stack(self, config):
        """An invalid request is a step (no pool tried); dual-stack families are a step."""
        e = explain(read_service(svc("web", loadBalancerIP="nope")), config, source="t")
        assert any("the request is invalid" in s for s in e.selection) and e.pools == ()
        e = explain(
            read_service(svc("web", ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="RequireDualStack")), config, source="t"
        )
        assert "families: IPv4 and IPv6 (RequireDualStack)" in e.selection

    def test_without_config(self):
        """Without the config: no steps, a note saying what to pass."""
        e = explain(read_service(svc("web", ingress=["192.0.2.10"])), None, source="t", pool="main")
        assert e.selection == () and e.notes == ("pass the config (--config) to see the selection steps",)

    def test_wide_tries_pools_even_when_allocated(self, config):
        """-o wide also shows what each candidate pool would answer for an allocated Service."""
        e = explain(read_service(svc("web", ingress=["192.0.2.10"])), config, source="t", wide=True)
        assert [name for name, _ in e.pools] == ["main", "edge", "dhcp"]


class TestAnnouncement:
    def test_layer2_interfaces(self, config):
        """A layer-2 pool is announced on its interfaces (or every interface)."""
        assert how_announced(config.pools["main"], config, {}, None) == ("interfaces: eth1",)
        assert how_announced(config.pools["manual"], config, {}, None) == ("interfaces: every interface of the node",)

    def test_bgp_peers_selected_for_the_node_with_sessions(self, config):
        """A BGP pool lists the peers whose node selectors take the node, each session up, DOWN or unknown."""
        sessions = sessions_from_metrics('metallb_bgp_session_up{peer="192.0.2.1:179"} 1.0\n')
        assert how_announced(config.pools["edge"], config, {"rack": "r1"}, sessions) == (
            "peer 192.0.2.1:179 (AS 64501): session up",
        )
        down = {"192.0.2.1:179": True, "192.0.2.2:179": False}
        assert how_announced(config.pools["edge"], config, {"rack": "r2"}, down)[1] == (
            "peer 192.0.2.2:179 (AS 64502): session DOWN"
        )
        assert how_announced(config.pools["edge"], config, {}, None) == ("peer 192.0.2.1:179 (AS 64501): session unknown",)

    def test_render_announcers_and_events(self, config):
        """The screen lists each announcing node with how, and the last five events (all with -o wide)."""
        e = explain(read_service(svc("web", ingress=["192.0.2.10"])), config, source="t")
        announcer = Announcer(node="n1", protocol="layer2", how=("interfaces: eth1",))
        e = attrs.evolve(e, announcers=(announcer,), events=tuple(f"ev{i}" for i in range(8)))
        text = render(e)
        assert "  n1  layer2\n    interfaces: eth1" in text
        assert "Events (last 5):" in text and "ev2" not in text and "ev7" in text
        assert "ev0" in render(e, wide=True)


class TestNames:
    def test_namespace_flag(self):
        """SERVICE with -n, NAMESPACE/SERVICE alone, default namespace; a disagreement is an error."""
        assert service_key("web", "prod") == "prod/web"
        assert service_key("prod/web", None) == "prod/web"
        assert service_key("web", None) == "default/web"
        with pytest.raises(ValueError, match="differs from -n"):
            service_key("prod/web", "dev")


def metallb(*argv: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("METALLB_", "KUBE"))}
    return subprocess.run(
        [*METALLB, *argv], capture_output=True, text=True, timeout=60, env={**base, "HOME": str(home), **(env or {})}
    )


@pytest.fixture
def standalone_files(tmp_path):
    """A config, a services file and the state `metallb standalone --once` wrote for them."""
    (tmp_path / "c.yaml").write_text(CONFIG.split("address-services:")[0])
    docs = [svc("a"), svc("b"), svc("c", ns="other"), svc("d", ann={"metallb.universe.tf/address-pool": "main"})]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump_all([{k: v for k, v in d.items() if k != "status"} for d in docs]))
    argv = ["standalone", "--config", "c.yaml", "--services", "s.yaml", "--node", "n1", "--once", "--state", "st.json"]
    result = subprocess.run([*METALLB, *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path


class TestCommand:
    def test_standalone_state(self, standalone_files):
        """From a state file with its config and services: the pool steps, and the pending one's answers."""
        tmp = standalone_files
        files = ["--state", str(tmp / "st.json"), "--config", str(tmp / "c.yaml"), "--services", str(tmp / "s.yaml")]
        done = metallb("explain", "default/a", *files, home=tmp)
        assert done.returncode == 0, done.stderr
        assert "Address:  192.0.2.10  (pool main)" in done.stdout and "auto-assign pools" in done.stdout
        pending = metallb("explain", "d", "-n", "default", *files, "-o", "json", home=tmp)
        doc = json.loads(pending.stdout)
        assert doc["addresses"] == [] and doc["pools"] == [["main", 'no available IPs in pool "main"']]
        assert yaml.safe_load(metallb("explain", "default/d", *files, "-o", "yaml", home=tmp).stdout)["service"] == "default/d"

    def test_state_without_files_says_what_to_pass(self, standalone_files):
        """With only the state file: what it holds, and notes naming --config and --services."""
        done = metallb("explain", "default/a", "--state", str(standalone_files / "st.json"), home=standalone_files)
        assert done.returncode == 0 and "(pool main)" in done.stdout
        assert "Note: pass the config (--config)" in done.stdout and "--services" in done.stdout

    def test_unknown_service(self, standalone_files):
        """A Service the source does not have: one line, status 1."""
        done = metallb("explain", "default/zz", "--state", str(standalone_files / "st.json"), home=standalone_files)
        assert done.returncode == 1 and done.stderr == f"metallb explain: no service default/zz in the state file {standalone_files / 'st.json'}\n"

    def test_running_instance_with_bgp_sessions(self, tmp_path):
        """From --url: the instance's /status row and its sessions from /metrics."""
        registry = CollectorRegistry()
        Gauge("metallb_bgp_session_up", "x", ["peer"], registry=registry).labels("192.0.2.1:179").set(1)
        row = {"addresses": ["203.0.113.0"], "pool": "edge", "announced": "bgp from n1", "pending": ""}
        server = MetricsServer(registry, port=0, status=lambda: {"node": "n1", "services": {"default/web": row}}).start()
        (tmp_path / "c.yaml").write_text(CONFIG)
        try:
            done = metallb("explain", "default/web", "--url", f"http://127.0.0.1:{server.port}", "--config",
                           str(tmp_path / "c.yaml"), home=tmp_path)  # fmt: skip
        finally:
            server.stop()
        assert done.returncode == 0, done.stderr
        assert "  n1  bgp\n    peer 192.0.2.1:179 (AS 64501): session up" in done.stdout

    @pytest.mark.parametrize("command", [["status"], ["explain", "default/web"]])
    def test_no_source_says_what_it_tried(self, tmp_path, command):
        """Without a cluster, state file or instance: what was tried and what to pass, one line, status 1."""
        done = metallb(*command, home=tmp_path)
        assert done.returncode == 1 and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert "tried KUBECONFIG (unset)" in line and "--kubeconfig FILE [--context NAME]" in line
        assert "--state FILE" in line and "--url http://HOST:7472" in line


class TestStatusHabits:
    def test_namespace_and_outputs(self, standalone_files):
        """status -n keeps one namespace; -o yaml and json agree; --json still means -o json; -o wide keeps columns."""
        state = ["--state", str(standalone_files / "st.json")]
        as_yaml = yaml.safe_load(metallb("status", *state, "-n", "other", "-o", "yaml", home=standalone_files).stdout)
        assert list(as_yaml) == ["other/c"]
        as_json = json.loads(metallb("status", *state, "--json", home=standalone_files).stdout)
        assert set(as_json) == {"default/a", "default/b", "other/c", "default/d"}
        wide = metallb("status", *state, "-o", "wide", home=standalone_files).stdout
        assert wide.splitlines()[0].split() == ["SERVICE", "ADDRESSES", "POOL", "ANNOUNCED", "PENDING"]

    def test_cluster_context_namespace_and_wide(self, kube, tmp_path):
        """--context picks the kubeconfig context; -n lists one namespace; -o wide adds requested address and class."""
        kube.put_object(svc("web", ingress=["192.0.2.10"], loadBalancerIP="192.0.2.10"))
        kube.put_object(svc("api", ns="other"))
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        doc = json.loads(path.read_text())
        doc["contexts"].append({"name": "broken", "context": {"cluster": "nowhere", "user": "emulator"}})
        doc["current-context"] = "broken"
        path.write_text(json.dumps(doc))
        bad = metallb("status", "--kubeconfig", str(path), home=tmp_path)
        assert bad.returncode == 1 and "cannot read the cluster" in bad.stderr
        done = metallb("status", "--kubeconfig", str(path), "--context", "emulator", "-n", "default", "-o", "wide",
                       home=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        header, *rows = done.stdout.splitlines()
        assert header.split() == ["SERVICE", "ADDRESSES", "POOL", "ANNOUNCED", "REQUESTED", "CLASS", "PENDING"]
        assert len(rows) == 1 and rows[0].split()[:2] == ["default/web", "192.0.2.10"]
        assert "192.0.2.10" in rows[0].split()[4]


class TestCluster:
    def test_explains_from_the_api(self, kube, tmp_path):
        """In a cluster: config from its ConfigMap, the Service's events, the node from nodeAssigned, sessions unknown."""
        kube.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config",
                         "namespace": "metallb-system"}, "data": {"config": CONFIG}})  # fmt: skip
        kube.put_object(svc("web", ingress=["203.0.113.0"], ann={"metallb.io/ip-allocated-from-pool": "edge"}))
        kube.put_object(svc("queued"))
        kube.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"rack": "r2"}}})
        for i, (reason, kind, message) in enumerate([
            ("IPAllocated", "Normal", 'Assigned IP ["203.0.113.0"]'),
            ("nodeAssigned", "Normal", 'announcing from node "n1"'),
        ]):  # fmt: skip
            kube.put_object({
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"web.{i}", "namespace": "default"},
                "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
                "reason": reason, "type": kind, "message": message, "lastTimestamp": f"2026-01-01T00:00:0{i}Z",
            })  # fmt: skip
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        done = metallb("explain", "default/web", "--kubeconfig", str(path), home=tmp_path)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "Address:  203.0.113.0  (pool edge)" in out
        assert "  n1  bgp\n    peer 192.0.2.1:179 (AS 64501): session unknown\n    peer 192.0.2.2:179" in out
        assert "Normal nodeAssigned: announcing from node \"n1\"" in out
        assert "Note: node n1: cannot read its speaker's sessions" in out or "session unknown" in out
        pending = metallb("explain", "queued", "-n", "default", "--kubeconfig", str(path), "-o", "json", home=tmp_path)
        doc = json.loads(pending.stdout)
        assert doc["addresses"] == [] and dict(map(tuple, doc["pools"]))["main"].startswith("free: 192.0.2.10")
        missing = metallb("explain", "default/nope", "--kubeconfig", str(path), home=tmp_path)
        assert missing.returncode == 1 and missing.stderr == "metallb explain: no Service default/nope in the cluster\n"

    def test_announcers_from_the_status_objects(self, kube, tmp_path):
        """With ServiceBGPStatus objects, explain and status name who advertises now, not every node ever assigned."""
        kube.add_resource("metallb.io", "v1beta1", "servicebgpstatuses", "ServiceBGPStatus", status=True)
        kube.put_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config",
                         "namespace": "metallb-system"}, "data": {"config": CONFIG}})  # fmt: skip
        kube.put_object(svc("web", ingress=["203.0.113.0"], ann={"metallb.io/ip-allocated-from-pool": "edge"}))
        for node in ("n1", "n2"):
            kube.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        kube.put_object({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.0", "namespace": "default"},
            "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
            "reason": "nodeAssigned", "type": "Normal", "message": 'announcing from node "n1"',
        })  # fmt: skip
        kube.put_object(bgp_status("n2", "default/web", ["peer1"], namespace="metallb-system"))
        kube.put_object(bgp_status("n1", "default/web", [], namespace="metallb-system"))  # no peer: not advertising
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        done = metallb("explain", "default/web", "--kubeconfig", str(path), home=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "  n2  bgp\n" in done.stdout and "  n1  bgp" not in done.stdout
        status = metallb("status", "--kubeconfig", str(path), "-o", "json", home=tmp_path)
        assert json.loads(status.stdout)["default/web"]["announced"] == "n2"
