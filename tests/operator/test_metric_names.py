"""Each component's ``/metrics`` against MetalLB's documented metrics: same names, types and label names.

The MetalLB lists below are section 1.14 of the behaviour reference (MetalLB
v0.12, the Go client's exposition): a dashboard or alert written for MetalLB
must find every series under the same name.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from metallb.allocator import AllocationError, PoolExhaustedError, SourceUnavailableError, parse_config
from metallb.announcers.bgp.metrics import metrics_for as bgp_metrics
from metallb.announcers.layer2.responder import metrics_for as layer2_metrics
from metallb.operator.controller import Controller
from metallb.operator.converge import failure_reason
from metallb.operator.exposition import render
from metallb.operator.metrics import MetricsServer
from metallb.operator.speaker import Speaker
from metallb.operator.standalone import Standalone
from prometheus_client import CollectorRegistry, Counter

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

#: name -> (type, label names), as MetalLB exposes them.
METALLB_CONTROLLER = {
    "metallb_allocator_addresses_total": ("gauge", ("pool",)),
    "metallb_allocator_addresses_in_use_total": ("gauge", ("pool",)),
    "metallb_allocator_services_allocated_total": ("gauge", ("pool",)),
    "metallb_k8s_client_updates_total": ("counter", ()),
    "metallb_k8s_client_update_errors_total": ("counter", ()),
    "metallb_k8s_client_config_loaded_bool": ("gauge", ()),
    "metallb_k8s_client_config_stale_bool": ("gauge", ()),
}
METALLB_SPEAKER = {
    "metallb_k8s_client_config_loaded_bool": ("gauge", ()),
    "metallb_k8s_client_config_stale_bool": ("gauge", ()),
    "metallb_speaker_announced": ("gauge", ("ip", "node", "protocol", "service")),
    "metallb_layer2_requests_received": ("counter", ("ip",)),
    "metallb_layer2_responses_sent": ("counter", ("ip",)),
    "metallb_layer2_gratuitous_sent": ("counter", ("ip",)),
    "metallb_bgp_session_up": ("gauge", ("peer",)),
    "metallb_bgp_updates_total": ("counter", ("peer",)),
    "metallb_bgp_announced_prefixes_total": ("gauge", ("peer",)),
    "metallb_bgp_pending_prefixes_total": ("gauge", ("peer",)),
}
#: What every Go (MetalLB) and Python (ours) process exports besides: the process_* family names both share.
PROCESS = {
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
}
CONFIG = """
address-pools:
- name: l2
  protocol: layer2
  addresses: [192.0.2.0/29]
- name: edge
  protocol: bgp
  addresses: [198.51.100.0/30]
"""


def families(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Family name -> (type, sorted label names of its samples), from a text exposition."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    labels: dict[str, set[str]] = {name: set() for name in types}
    for name, body in re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$", text, re.M):
        family = next((f for f in (name, re.sub(r"_(bucket|sum|count)$", "", name)) if f in types), None)
        assert family is not None, f"sample {name} has no # TYPE line"
        labels[family] |= set(re.findall(r'(\w+)="', body)) - {"le", "quantile"}
    return {name: (kind, tuple(sorted(labels[name]))) for name, kind in types.items()}


def documented() -> set[str]:
    """The metric names in the first column of docs/metrics.md's tables."""
    return set(re.findall(r"^\| `((?:metallb|process|python)_\w+)` \|", DOC.read_text(), flags=re.M))


def scrape(registry: CollectorRegistry) -> str:
    """``/metrics`` of a MetricsServer serving *registry*, over HTTP."""
    server = MetricsServer(registry, port=0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            return str(resp.read().decode())
    finally:
        server.stop()


def drive_speaker(registry: CollectorRegistry) -> None:
    """One sample in each announcer family, through the announcers' own metric objects."""
    l2 = layer2_metrics(registry)
    for counter in (l2.requests_received, l2.responses_sent, l2.gratuitous_sent, l2.takeovers):
        counter.labels(ip="192.0.2.1").inc()
    bgp = bgp_metrics(registry)
    bgp.session_up("203.0.113.1:179", True)
    bgp.update_sent("203.0.113.1:179")
    bgp.announced("203.0.113.1:179", 1)
    bgp.pending("203.0.113.1:179", 0)


def check(found: dict[str, tuple[str, tuple[str, ...]]], metallb: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    """Every MetalLB metric is there with MetalLB's type and labels; everything else is a documented addition."""
    for name, want in metallb.items():
        assert found.get(name) == want, f"{name}: MetalLB has {want}, we expose {found.get(name)}"
    for name, kind in PROCESS.items():
        assert found.get(name, ("",))[0] == kind, name
    assert any(name.startswith("python_") for name in found)
    assert not [name for name in found if name.endswith(("_created", "_gsum", "_gcount"))]
    extra = {n for n in found if n.startswith("metallb_")} - metallb.keys()
    assert extra <= documented(), f"additions missing from docs/metrics.md: {sorted(extra - documented())}"


@pytest.fixture
def controller(kube_client) -> Iterator[Controller]:
    found = Controller(kube_client)
    found.allocator.set_config(parse_config(CONFIG))
    found.metrics.config_loaded.set(1)
    found.metrics.allocation_failed(pool="l2", reason="exhausted")
    try:
        yield found
    finally:
        found.allocator.close()


class TestMetalLBNames:
    def test_controller(self, controller):
        """The controller's /metrics has each MetalLB controller metric, same type and labels, and no _created."""
        found = families(scrape(controller.registry))
        check(found, METALLB_CONTROLLER)
        assert found["metallb_allocator_allocation_failures_total"] == ("counter", ("pool", "reason"))

    def test_speaker(self, kube_client):
        """The speaker's /metrics has each MetalLB speaker metric; the layer-2 counters keep their bare names."""
        speaker = Speaker(kube_client, node_name="node-a")
        speaker.metrics.announced.labels("default/web", "layer2", "node-a", "192.0.2.1").set(1)
        speaker.metrics.suspect("node-b")
        drive_speaker(speaker.registry)
        try:
            text = scrape(speaker.registry)
        finally:
            speaker.announcements.close()
        found = families(text)
        check(found, METALLB_SPEAKER)
        assert re.search(r'^metallb_layer2_requests_received\{ip="192.0.2.1"\} 1.0$', text, re.M)
        assert "metallb_layer2_requests_received_total" not in text
        assert found["metallb_speaker_membership_suspicions_total"] == ("counter", ("node",))
        assert found["metallb_layer2_takeovers_total"] == ("counter", ("ip",))
        assert found["metallb_bgp_session_state_changes_total"] == ("counter", ("peer", "state"))

    def test_standalone_serves_both(self, tmp_path):
        """`metallb standalone` serves the controller's and the speaker's MetalLB metrics on one port."""
        (tmp_path / "config.yaml").write_text(CONFIG)
        (tmp_path / "services.yaml").write_text(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
            "spec: {type: LoadBalancer, loadBalancerIP: 203.0.113.9, ports: [{port: 80}]}\n"
        )
        app = Standalone(
            config_path=str(tmp_path / "config.yaml"),
            services_path=str(tmp_path / "services.yaml"),
            node="node-a",
            state_path=None,
            announce=False,
        )
        try:
            app.load_config()
            app.sync()
            app.speaker_metrics.announced.labels("default/web", "layer2", "node-a", "192.0.2.1").set(1)
            drive_speaker(app.registry)
            text = scrape(app.registry)
        finally:
            app.close()
        check(families(text), METALLB_CONTROLLER | METALLB_SPEAKER)
        # The requested address is in no pool: counted as a failure without a pool name.
        assert 'metallb_allocator_allocation_failures_total{pool="",reason="not-allowed"} 1.0' in text


class TestExposition:
    def test_counter_names_as_registered(self):
        """A counter is exposed as <name>_total unless it is one of MetalLB's bare ones; no _created series."""
        registry = CollectorRegistry()
        Counter("metallb_x_total", "x", registry=registry).inc()
        Counter("metallb_layer2_responses_sent", "y", ["ip"], registry=registry).labels("a").inc(2)
        text = render([registry]).decode()
        assert text == (
            "# HELP metallb_x_total x\n# TYPE metallb_x_total counter\nmetallb_x_total 1.0\n"
            "# HELP metallb_layer2_responses_sent y\n# TYPE metallb_layer2_responses_sent counter\n"
            'metallb_layer2_responses_sent{ip="a"} 2.0\n'
        )

    def test_label_values_escaped_and_empty_families_left_out(self):
        """Quotes, backslashes and newlines in label values are escaped; a labelled family without children is absent."""
        registry = CollectorRegistry()
        Counter("metallb_unused", "never touched", ["ip"], registry=registry)
        Counter("metallb_odd", "odd", ["v"], registry=registry).labels('a"b\\c\nd').inc()
        text = render([registry]).decode()
        assert "metallb_unused" not in text
        assert 'metallb_odd_total{v="a\\"b\\\\c\\nd"} 1.0' in text


class TestNewMetrics:
    def test_bgp_state_changes(self):
        """Each up/down transition of a session is counted once; a new session still down is no change."""
        registry = CollectorRegistry()
        bgp = bgp_metrics(registry)
        peer = "203.0.113.1:179"
        for up in (False, True, True, False, True):
            bgp.session_up(peer, up)
        value = registry.get_sample_value
        assert value("metallb_bgp_session_state_changes_total", {"peer": peer, "state": "up"}) == 2
        assert value("metallb_bgp_session_state_changes_total", {"peer": peer, "state": "down"}) == 1
        bgp.forget(peer)
        assert "state_changes" not in render([registry]).decode()

    def test_membership_suspicion(self, kube_client):
        """--liveness lease: a speaker Lease that stops changing counts one suspicion of its node; a deleted one none."""
        speaker = Speaker(kube_client, node_name="node-a", liveness="lease", lease_duration=0.2)
        try:
            for node in ("node-b", "node-c"):
                speaker.liveness._on_lease("ADDED", {"spec": {"holderIdentity": node, "renewTime": "t1"}})
            assert speaker.live_speakers() == {"node-a", "node-b", "node-c"}
            speaker.liveness._on_lease("DELETED", {"spec": {"holderIdentity": "node-c"}})
            time.sleep(0.3)
            assert speaker.live_speakers() == speaker.live_speakers() == {"node-a"}
        finally:
            speaker.announcements.close()
        value = speaker.registry.get_sample_value
        assert value("metallb_speaker_membership_suspicions_total", {"node": "node-b"}) == 1
        assert value("metallb_speaker_membership_suspicions_total", {"node": "node-c"}) is None

    def test_allocation_failure_reasons(self, controller):
        """Each allocation error class maps to its reason label; anything else is "other"."""
        assert failure_reason(PoolExhaustedError("x")) == "exhausted"
        assert failure_reason(SourceUnavailableError("x")) == "source-unavailable"
        assert failure_reason(AllocationError("x")) == "other"
        value = controller.registry.get_sample_value
        assert value("metallb_allocator_allocation_failures_total", {"pool": "l2", "reason": "exhausted"}) == 1
