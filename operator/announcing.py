"""What one node announces: the announcers, and the loop that keeps them in step with a desired set.

Shared by ``metallb speaker`` and ``metallb standalone``: each works out which
services could be announced from here (the *candidates*) and hands them to
:class:`ServiceAnnouncements`, which asks the announcers, announces, withdraws,
keeps ``metallb_speaker_announced`` and records why the rest is not announced.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping

import pluggy
from metallb.allocator import (
    Announcer,
    AnnouncerSettings,
    ClusterView,
    Config,
    Hooks,
    NodeInfo,
    PluginError,
    ServiceView,
)
from metallb.operator.metrics import SpeakerMetrics

__all__ = ["Announcers", "ServiceAnnouncements", "parse_interfaces"]

log = logging.getLogger(__name__)


def parse_interfaces(values: Iterable[str]) -> tuple[str, ...]:
    """``--interfaces`` as given (repeatable, each comma-separated) as one tuple of names or patterns."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


class Announcers:
    """One announcer per protocol, configured with the node's current config."""

    def __init__(self, pm: pluggy.PluginManager, settings: AnnouncerSettings) -> None:
        self._hooks = Hooks(pm)
        self._settings = settings
        self._by_protocol: dict[str, Announcer] = {}
        self._missing: set[str] = set()  # protocols whose announcer could not be built (logged once)

    def get(self, protocol: str, config: Config | None, node: NodeInfo) -> Announcer | None:
        """The announcer for *protocol*, or None (logged once) when no plugin provides a working one."""
        announcer = self._by_protocol.get(protocol)
        if announcer is None:
            try:
                announcer = self._hooks.make_announcer(protocol, self._settings)
            except PluginError as exc:
                if protocol not in self._missing:
                    self._missing.add(protocol)
                    log.error("%s", exc)
                return None
            if config is not None:
                announcer.set_config(config, node)
            self._by_protocol[protocol] = announcer
        return announcer

    def known(self, protocol: str) -> Announcer | None:
        """The announcer for *protocol* if one was built."""
        return self._by_protocol.get(protocol)

    def set_config(self, config: Config, node: NodeInfo) -> None:
        """Hand a new config (or new node labels) to every announcer."""
        for announcer in self._by_protocol.values():
            announcer.set_config(config, node)

    def close(self) -> None:
        """Close every announcer (each withdraws what it still announces)."""
        for announcer in self._by_protocol.values():
            try:
                announcer.close()
            except Exception:
                log.exception("closing the %s announcer failed", announcer.protocol)


class ServiceAnnouncements:
    """The services this node announces, converged on each :meth:`update` to what is wanted.

    Called from one thread at a time, as the announcers are.

    Attributes:
        announced: service key -> (protocol, view) as last announced.
        reasons: service key -> why it is not announced (the caller's reasons and the announcers').
        failed: service key -> the error of its announcement that failed in the last update.
    """

    def __init__(self, announcers: Announcers, metrics: SpeakerMetrics, *, node_name: str) -> None:
        self.announcers = announcers
        self.announced: dict[str, tuple[str, ServiceView]] = {}
        self.reasons: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self._metrics = metrics
        self._node_name = node_name
        self._applied: tuple[Config, dict[str, str]] | None = None  # what the announcers were last given

    def update(
        self,
        candidates: Mapping[str, tuple[str, ServiceView]],
        cluster: ClusterView,
        config: Config,
        *,
        reasons: Mapping[str, str] | None = None,
        hold: Collection[str] = (),
    ) -> list[str]:
        """Announce each candidate (key -> (protocol, view)) its announcer accepts; withdraw everything else.

        *reasons* say why services that are no candidate are not announced. Services in *hold*
        that are announced stay announced as they are even if no longer wanted (a drain: until
        the next owner announces). Returns the keys announced now that were not announced before.
        """
        node = cluster.node
        if self._applied is None or self._applied[0] is not config or self._applied[1] != node.labels:
            self._applied = (config, dict(node.labels))
            self.announcers.set_config(config, node)
        why = dict(reasons or {})
        desired: dict[str, tuple[str, ServiceView, Announcer]] = {}
        for key, (protocol, view) in candidates.items():
            announcer = self.announcers.get(protocol, config, node)
            if announcer is None:
                why[key] = f"no announcer for protocol {protocol}"
            elif (reason := announcer.should_announce(view, cluster)) is not None:
                why[key] = reason
            else:
                desired[key] = (protocol, view, announcer)
        self.reasons = why  # replaced whole: status pages read it from other threads
        for key, (protocol, view) in list(self.announced.items()):
            wanted = desired.get(key)
            if wanted is None and key in hold:
                continue
            if wanted is None or wanted[0] != protocol or wanted[1].ips != view.ips:
                self.withdraw(key)
        self.failed = {}
        return [key for key, wanted in desired.items() if self._announce(key, *wanted)]

    def _announce(self, key: str, protocol: str, view: ServiceView, announcer: Announcer) -> bool:
        """Announce *view* unless it is announced as it is; True if *key* was not announced before."""
        if self.announced.get(key) == (protocol, view):
            return False
        try:
            announcer.announce(view)
        except Exception as exc:
            log.exception("announcing %s failed", key)
            self.failed[key] = str(exc)
            return False
        new = key not in self.announced
        self.announced[key] = (protocol, view)
        for ip in view.ips:
            self._metrics.announced.labels(key, protocol, self._node_name, str(ip)).set(1)
        if new:
            log.info("%s: announcing %s by %s", key, ",".join(map(str, view.ips)), protocol)
        return new

    def withdraw(self, key: str) -> bool:
        """Withdraw *key* if announced; False (logged) when the announcer failed, so a later update retries."""
        if key not in self.announced:
            return True
        protocol, view = self.announced[key]
        announcer = self.announcers.known(protocol)
        if announcer is not None:
            try:
                announcer.withdraw(key)
            except Exception:
                log.exception("withdrawing %s failed; will try again", key)
                return False
        del self.announced[key]
        for ip in view.ips:
            try:
                self._metrics.announced.remove(key, protocol, self._node_name, str(ip))
            except KeyError:
                pass
        log.info("%s: withdrawn (%s)", key, self.reasons.get(key, "serviceDeleted"))
        return True

    def close(self) -> None:
        """Withdraw everything, then close the announcers."""
        for key in list(self.announced):
            self.withdraw(key)
        self.announcers.close()
