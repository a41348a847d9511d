"""The announce / withdraw / metrics loop the speaker and standalone share, and the --interfaces parser."""

from __future__ import annotations

import netaddr
import pytest
from metallb.allocator import (
    AnnouncerBase,
    AnnouncerSettings,
    ClusterView,
    NodeInfo,
    ServiceView,
    hookimpl,
    parse_config,
)
from metallb.allocator.testing import plugin_manager_with
from metallb.operator.announcing import Announcers, ServiceAnnouncements, parse_interfaces
from metallb.operator.metrics import SpeakerMetrics
from prometheus_client import CollectorRegistry

CONFIG = """
address-pools:
- name: l2
  protocol: layer2
  addresses: [192.0.2.0/28]
- name: routed
  protocol: bgp
  addresses: [198.51.100.0/28]
"""
NODE = NodeInfo(name="n1", labels={"zone": "a"})
CLUSTER = ClusterView(node=NODE, nodes={"n1": NODE}, live_speakers=frozenset({"n1"}))


class RecordingAnnouncer(AnnouncerBase):
    """A layer-2 announcer that records its calls; ``refuse`` and ``broken`` steer its answers."""

    protocol = "layer2"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.refuse: dict[str, str] = {}  # service key -> reason not to announce
        self.broken: set[str] = set()  # service keys whose announce and withdraw raise

    def set_config(self, config: object, node: NodeInfo) -> None:
        self.calls.append(("set_config", dict(node.labels)))

    def should_announce(self, service: ServiceView, cluster: ClusterView) -> str | None:
        return self.refuse.get(service.key)

    def announce(self, service: ServiceView) -> None:
        if service.key in self.broken:
            raise OSError("interface gone")
        self.calls.append(("announce", service.key))

    def withdraw(self, key: str) -> None:
        if key in self.broken:
            raise OSError("interface gone")
        self.calls.append(("withdraw", key))

    def close(self) -> None:
        self.calls.append(("close", None))


class Plugin:
    def __init__(self) -> None:
        self.announcer = RecordingAnnouncer()

    @hookimpl
    def metallb_make_announcer(self, protocol: str, settings: AnnouncerSettings) -> RecordingAnnouncer | None:
        return self.announcer if protocol == "layer2" else None


@pytest.fixture(name="setup")
def _setup():
    plugin = Plugin()
    registry = CollectorRegistry()
    # Without metallb's own protocol plugins: the recording layer-2 announcer is the only announcer.
    announcers = Announcers(plugin_manager_with(plugin, protocols=False), AnnouncerSettings(node_name="n1"))
    announcements = ServiceAnnouncements(announcers, SpeakerMetrics(registry), node_name="n1")
    return announcements, plugin.announcer, registry, parse_config(CONFIG)


def candidate(config, key: str, ip: str, pool: str = "l2") -> ServiceView:
    return ServiceView(key=key, ips=(netaddr.IPAddress(ip),), pool=config.pools[pool])


def announced_metric(registry: CollectorRegistry, key: str, ip: str) -> float | None:
    labels = {"service": key, "protocol": "layer2", "node": "n1", "ip": ip}
    return registry.get_sample_value("metallb_speaker_announced", labels)


class TestServiceAnnouncements:
    def test_announces_once_and_sets_the_metric(self, setup):
        """Accepted candidates are announced once, reported as new, and get metallb_speaker_announced 1."""
        announcements, announcer, registry, config = setup
        wanted = {"ns/a": candidate(config, "ns/a", "192.0.2.1")}
        assert announcements.update(wanted, CLUSTER, config) == ["ns/a"]
        assert announcements.update(wanted, CLUSTER, config) == []
        assert [c for c in announcer.calls if c[0] == "announce"] == [("announce", "ns/a")]
        assert announced_metric(registry, "ns/a", "192.0.2.1") == 1.0
        assert announcements.announced["ns/a"] == (("layer2",), wanted["ns/a"])

    def test_withdraws_what_is_no_longer_wanted(self, setup):
        """A service gone from the candidates is withdrawn and its metric series removed."""
        announcements, announcer, registry, config = setup
        announcements.update({"ns/a": candidate(config, "ns/a", "192.0.2.1")}, CLUSTER, config)
        announcements.update({}, CLUSTER, config, reasons={"ns/a": "noEndpoints"})
        assert ("withdraw", "ns/a") in announcer.calls
        assert announcements.announced == {}
        assert announcements.reasons == {"ns/a": "noEndpoints"}
        assert announced_metric(registry, "ns/a", "192.0.2.1") is None

    def test_new_address_is_withdrawn_then_announced(self, setup):
        """A service whose address changed is withdrawn first, then announced with the new one."""
        announcements, announcer, registry, config = setup
        announcements.update({"ns/a": candidate(config, "ns/a", "192.0.2.1")}, CLUSTER, config)
        announcements.update({"ns/a": candidate(config, "ns/a", "192.0.2.2")}, CLUSTER, config)
        assert [c for c in announcer.calls if c[0] != "set_config"][-2:] == [("withdraw", "ns/a"), ("announce", "ns/a")]
        assert announced_metric(registry, "ns/a", "192.0.2.1") is None
        assert announced_metric(registry, "ns/a", "192.0.2.2") == 1.0

    def test_announcer_reasons_and_missing_announcers(self, setup):
        """The announcer's reason is recorded (and withdraws); a protocol no plugin announces is a reason too."""
        announcements, announcer, _, config = setup
        a = candidate(config, "ns/a", "192.0.2.1")
        announcements.update({"ns/a": a}, CLUSTER, config)
        announcer.refuse["ns/a"] = "notOwner"
        wanted = {"ns/a": a, "ns/b": candidate(config, "ns/b", "198.51.100.1", pool="routed")}
        assert announcements.update(wanted, CLUSTER, config) == []
        assert announcements.reasons == {"ns/a": "notOwner", "ns/b": "no announcer for protocol bgp"}
        assert announcements.announced == {}

    def test_wrong_announcer_is_logged_once(self, caplog):
        """A plugin answering with something that is no Announcer is a reason per service, logged once."""

        class Sloppy:
            @hookimpl
            def metallb_make_announcer(self, protocol: str) -> object:
                return object() if protocol == "bgp" else None

        announcers = Announcers(plugin_manager_with(Sloppy(), protocols=False), AnnouncerSettings(node_name="n1"))
        announcements = ServiceAnnouncements(announcers, SpeakerMetrics(CollectorRegistry()), node_name="n1")
        config = parse_config(CONFIG)
        wanted = {"ns/b": candidate(config, "ns/b", "198.51.100.1", pool="routed")}
        with caplog.at_level("ERROR", logger="metallb.operator.announcing"):
            announcements.update(wanted, CLUSTER, config)
            announcements.update(wanted, CLUSTER, config)
        assert announcements.reasons == {"ns/b": "no announcer for protocol bgp"}
        assert caplog.text.count('metallb_make_announcer for "bgp" returned object') == 1

    def test_failures_are_retried_by_the_next_update(self, setup):
        """A failed announce is recorded and tried again; a failed withdraw keeps the service until one works."""
        announcements, announcer, _, config = setup
        a = {"ns/a": candidate(config, "ns/a", "192.0.2.1")}
        announcer.broken.add("ns/a")
        announcements.update(a, CLUSTER, config)
        assert announcements.failed == {"ns/a": "interface gone"} and announcements.announced == {}
        announcer.broken.clear()
        assert announcements.update(a, CLUSTER, config) == ["ns/a"]
        assert announcements.failed == {}
        announcer.broken.add("ns/a")
        announcements.update({}, CLUSTER, config)
        assert "ns/a" in announcements.announced
        announcer.broken.clear()
        announcements.update({}, CLUSTER, config)
        assert announcements.announced == {}

    def test_config_and_node_labels_handed_over_once_per_change(self, setup):
        """The announcers get set_config for a new config object or new node labels, not on every update."""
        announcements, announcer, _, config = setup
        wanted = {"ns/a": candidate(config, "ns/a", "192.0.2.1")}
        for _ in range(3):
            announcements.update(wanted, CLUSTER, config)
        relabelled = NodeInfo(name="n1", labels={"zone": "b"})
        announcements.update(wanted, ClusterView(node=relabelled, nodes={"n1": relabelled}), config)
        announcements.update(wanted, CLUSTER, parse_config(CONFIG))
        assert [c for c in announcer.calls if c[0] == "set_config"] == [
            ("set_config", {"zone": "a"}),  # the announcer built for the first candidate
            ("set_config", {"zone": "b"}),
            ("set_config", {"zone": "a"}),
        ]

    def test_close_withdraws_everything_then_closes(self, setup):
        """close() withdraws each announced service, then closes the announcers."""
        announcements, announcer, registry, config = setup
        announcements.update({"ns/a": candidate(config, "ns/a", "192.0.2.1")}, CLUSTER, config)
        announcements.close()
        assert announcer.calls[-2:] == [("withdraw", "ns/a"), ("close", None)]
        assert announced_metric(registry, "ns/a", "192.0.2.1") is None


class TestParseInterfaces:
    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ([], ()),
            (["eth0"], ("eth0",)),
            (["eth0,eth1", "bond*"], ("eth0", "eth1", "bond*")),
            ([" eth0 , ,eth1 ", ""], ("eth0", "eth1")),
        ],
    )
    def test_repeatable_and_comma_separated(self, values, expected):
        """--interfaces may be repeated and each value may list names or patterns separated by commas."""
        assert parse_interfaces(values) == expected
