"""The announcers of one node, built on first use per protocol through the plugin hook.

Shared by ``metallb speaker`` and ``metallb standalone``.
"""

from __future__ import annotations

import logging

import pluggy
from metallb.allocator import Announcer, AnnouncerSettings, Config, NodeInfo

__all__ = ["Announcers"]

log = logging.getLogger(__name__)


class Announcers:
    """One announcer per protocol, configured with the node's current config."""

    def __init__(self, pm: pluggy.PluginManager, settings: AnnouncerSettings) -> None:
        self._pm = pm
        self._settings = settings
        self._by_protocol: dict[str, Announcer] = {}

    def get(self, protocol: str, config: Config | None, node: NodeInfo) -> Announcer | None:
        """The announcer for *protocol*, or None (logged once) when no plugin provides it."""
        announcer = self._by_protocol.get(protocol)
        if announcer is None:
            announcer = self._pm.hook.metallb_make_announcer(protocol=protocol, settings=self._settings)
            if announcer is None:
                log.error('no plugin announces protocol "%s"; run `metallb plugins`', protocol)
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
