"""What one node announces: the announcers, and the loop that keeps them in step with a desired set.

Shared by ``metallb speaker`` and ``metallb standalone``: each works out which
services could be announced from here (the *candidates*) and hands them to
:class:`ServiceAnnouncements`, which asks the announcers of every protocol of
each service's pool, announces, withdraws, keeps ``metallb_speaker_announced``
and records why the rest is not announced.
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

__all__ = ["NOT_ADVERTISED", "Announcers", "ServiceAnnouncements", "parse_interfaces"]

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


#: Why a service of a pool that no advertisement selects is not announced.
NOT_ADVERTISED = "notAdvertised"


class ServiceAnnouncements:
    """The services this node announces, converged on each :meth:`update` to what is wanted.

    A service is announced by every protocol of its pool (``PoolSpec.protocols``:
    layer 2 and BGP may both apply); a pool that no advertisement selects is
    allocated from but announced by none. Called from one thread at a time, as
    the announcers are.

    Attributes:
        reasons: service key -> why it is not announced (the caller's reasons and
            the announcers'; with several protocols, each one's).
        failed: service key -> the error of its announcement that failed in the last update.
    """

    def __init__(self, announcers: Announcers, metrics: SpeakerMetrics, *, node_name: str) -> None:
        self.announcers = announcers
        self.reasons: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self._pairs: dict[tuple[str, str], ServiceView] = {}  # (service key, protocol) -> view announced
        self._metrics = metrics
        self._node_name = node_name
        self._applied: tuple[Config, dict[str, str]] | None = None  # what the announcers were last given

    @property
    def announced(self) -> dict[str, tuple[tuple[str, ...], ServiceView]]:
        """Service key -> (the protocols announcing it, the view announced)."""
        out: dict[str, tuple[tuple[str, ...], ServiceView]] = {}
        for (key, protocol), view in list(self._pairs.items()):
            protocols = out[key][0] if key in out else ()
            out[key] = ((*protocols, protocol), view)
        return out

    def update(
        self,
        candidates: Mapping[str, ServiceView],
        cluster: ClusterView,
        config: Config,
        *,
        reasons: Mapping[str, str] | None = None,
        hold: Collection[tuple[str, str]] = (),
        refuse: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Announce each candidate by every protocol of its pool that accepts it; withdraw everything else.

        *reasons* say why services that are no candidate are not announced. The (service key,
        protocol) pairs in *hold* that are announced stay announced as they are even if no longer
        wanted (a drain: until the next owner announces). *refuse* maps protocols this node does not
        announce by now to the reason (``bgp`` while it drains). Returns the keys announced now that
        were announced by no protocol before.
        """
        node = cluster.node
        if self._applied is None or self._applied[0] is not config or self._applied[1] != node.labels:
            self._applied = (config, dict(node.labels))
            self.announcers.set_config(config, node)
        why = dict(reasons or {})
        desired: dict[tuple[str, str], tuple[ServiceView, Announcer]] = {}
        for key, view in candidates.items():
            protocols = view.pool.protocols
            if not protocols:
                why[key] = NOT_ADVERTISED
                continue
            refusals: list[tuple[str, str]] = []
            for protocol in protocols:
                announcer = self.announcers.get(protocol, config, node)
                if refuse and protocol in refuse:
                    refusals.append((protocol, refuse[protocol]))
                elif announcer is None:
                    refusals.append((protocol, f"no announcer for protocol {protocol}"))
                elif (reason := announcer.should_announce(view, cluster)) is not None:
                    refusals.append((protocol, reason))
                else:
                    desired[(key, protocol)] = (view, announcer)
            if len(refusals) == len(protocols):
                why[key] = refusals[0][1] if len(refusals) == 1 else ", ".join(f"{p}: {r}" for p, r in refusals)
        self.reasons = why  # replaced whole: status pages read it from other threads
        for pair, view in list(self._pairs.items()):
            wanted = desired.get(pair)
            if wanted is None and pair in hold:
                continue
            if wanted is None or wanted[0].ips != view.ips:
                self._withdraw(*pair)
        before = {key for key, _ in self._pairs}
        self.failed = {}
        for pair, (view, announcer) in desired.items():
            self._announce(pair, view, announcer)
        return list(dict.fromkeys(key for key, _ in self._pairs if key not in before))

    def _announce(self, pair: tuple[str, str], view: ServiceView, announcer: Announcer) -> None:
        """Announce *view* by one protocol unless it is announced as it is."""
        key, protocol = pair
        if self._pairs.get(pair) == view:
            return
        try:
            announcer.announce(view)
        except Exception as exc:
            log.exception("announcing %s by %s failed", key, protocol)
            self.failed[key] = str(exc)
            return
        new = pair not in self._pairs
        self._pairs[pair] = view
        for ip in view.ips:
            self._metrics.announced.labels(key, protocol, self._node_name, str(ip)).set(1)
        if new:
            log.info("%s: announcing %s by %s", key, ",".join(map(str, view.ips)), protocol)

    def _withdraw(self, key: str, protocol: str) -> bool:
        view = self._pairs.get((key, protocol))
        if view is None:
            return True
        announcer = self.announcers.known(protocol)
        if announcer is not None:
            try:
                announcer.withdraw(key)
            except Exception:
                log.exception("withdrawing %s (%s) failed; will try again", key, protocol)
                return False
        del self._pairs[(key, protocol)]
        for ip in view.ips:
            try:
                self._metrics.announced.remove(key, protocol, self._node_name, str(ip))
            except KeyError:
                pass
        log.info("%s: withdrawn from %s (%s)", key, protocol, self.reasons.get(key, "serviceDeleted"))
        return True

    def withdraw(self, key: str) -> bool:
        """Withdraw *key* from every protocol; False (logged) when an announcer failed, so a later update retries."""
        protocols = [p for k, p in list(self._pairs) if k == key]
        return all([self._withdraw(key, p) for p in protocols])

    def close(self) -> None:
        """Close the announcers, then forget every service and its metric.

        Each announcer withdraws what it still announces as it closes (the
        ``Announcer`` contract), except what it keeps announced on purpose: a
        BGP peer with graceful restart keeps our routes while the speaker
        restarts. Withdrawing service by service first would undo that.
        """
        self.announcers.close()
        for (key, protocol), view in self._pairs.items():
            for ip in view.ips:
                try:
                    self._metrics.announced.remove(key, protocol, self._node_name, str(ip))
                except KeyError:
                    pass
        self._pairs.clear()
