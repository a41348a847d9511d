"""A tiny third-party announcement protocol: ``vxlan``, with pool keys of its own.

It exists to prove that a protocol installed from its own distribution is
configured exactly like ``layer2`` and ``bgp``: any pool section accepts
``protocol: vxlan`` and the protocol's keys, which this plugin parses::

    address-pools:
    - name: overlay
      protocol: vxlan
      addresses: [192.0.2.0/28]
      vni: 4096                      # required: the VXLAN network identifier, 1-16777215
      flood-to: [198.51.100.7]       # optional: remote VTEPs

Its announcer only records what it is told to announce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
import netaddr
from metallb.allocator import (
    Advertisement,
    AnnouncerBase,
    AnnouncerSettings,
    ClusterView,
    ConfigError,
    PoolEntry,
    ProtocolInfo,
    ServiceView,
    hookimpl,
)
from metallb.allocator.config import as_list, as_str, field_error

PROTOCOL = "vxlan"


@attrs.frozen(kw_only=True)
class VxlanAdvertisement:
    """How a vxlan pool is announced: its network identifier and flood list."""

    protocol: ClassVar[str] = PROTOCOL

    vni: int
    flood_to: tuple[netaddr.IPAddress, ...] = ()


@hookimpl
def metallb_announcer_protocols() -> Sequence[ProtocolInfo]:
    """``vxlan``, owning the pool keys ``vni`` and ``flood-to``."""
    return [ProtocolInfo(name=PROTOCOL, pool_keys=("vni", "flood-to"))]


@hookimpl
def metallb_parse_advertisements(
    protocol: str, entry: PoolEntry, cidrs: Sequence[netaddr.IPNetwork]
) -> Sequence[Advertisement] | None:
    """``vni`` (required) and ``flood-to`` of a vxlan pool."""
    if protocol != PROTOCOL:
        return None
    where = entry.where()
    text = as_str(entry.data.get("vni"), where, "vni").strip()
    if not text:
        raise ConfigError(f'{where}: missing required field "vni": a vxlan pool needs its VXLAN network identifier')
    if not text.isdigit() or not 1 <= int(text) < 1 << 24:
        raise field_error(where, "vni", text, "must be a VXLAN network identifier, 1-16777215")
    flood = []
    for value in as_list(entry.data.get("flood-to"), where, "flood-to"):
        item = as_str(value, where, "flood-to").strip()
        try:
            flood.append(netaddr.IPAddress(item))
        except (netaddr.AddrFormatError, ValueError):
            raise field_error(where, "flood-to", item, "must be the IP address of a remote VTEP") from None
    return [VxlanAdvertisement(vni=int(text), flood_to=tuple(flood))]


@hookimpl
def metallb_dump_advertisements(protocol: str, advertisements: Sequence[Advertisement]) -> Mapping[str, Any] | None:
    """The keys that parse back to *advertisements*."""
    if protocol != PROTOCOL:
        return None
    (adv,) = (a for a in advertisements if isinstance(a, VxlanAdvertisement))
    return {"vni": adv.vni, **({"flood-to": [str(ip) for ip in adv.flood_to]} if adv.flood_to else {})}


class VxlanAnnouncer(AnnouncerBase):
    """Records the advertisements of every service it announces."""

    protocol = PROTOCOL

    def __init__(self, settings: AnnouncerSettings) -> None:
        self.settings = settings
        self.announced: dict[str, tuple[Advertisement, ...]] = {}

    def should_announce(self, service: ServiceView, cluster: ClusterView) -> str | None:
        """Every node announces."""
        return None

    def announce(self, service: ServiceView) -> None:
        """Record *service*'s vxlan advertisements."""
        self.announced[service.key] = service.pool.advertisements_of(PROTOCOL)

    def withdraw(self, key: str) -> None:
        """Forget *key*."""
        self.announced.pop(key, None)


@hookimpl
def metallb_make_announcer(protocol: str, settings: AnnouncerSettings) -> VxlanAnnouncer | None:
    """The recording announcer for ``vxlan``."""
    return VxlanAnnouncer(settings) if protocol == PROTOCOL else None
