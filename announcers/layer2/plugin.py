"""The layer-2 plugin's entry module: protocol ``layer2``, its pool key, and the announcer factory.

Light on purpose: it parses configuration on bare installs, so it imports only
metallb's base dependencies. The announcer (``announcer.py``, with the
responder and prometheus_client) is imported when a speaker asks for it.

The protocol owns one pool key, ``interfaces`` (interface names or shell
patterns to answer on), parsed into one :class:`~metallb.allocator.L2Advertisement`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import netaddr
from metallb.allocator.config import as_list, as_str, field_error
from metallb.allocator.interfaces import AnnouncerSettings
from metallb.allocator.model import Advertisement, L2Advertisement, PoolEntry, ProtocolInfo
from metallb.allocator.plugins import hookimpl

if TYPE_CHECKING:
    from metallb.announcers.layer2.announcer import Layer2Announcer

__all__ = [
    "PROTOCOL",
    "metallb_announcer_protocols",
    "metallb_dump_advertisements",
    "metallb_make_announcer",
    "metallb_parse_advertisements",
]

PROTOCOL = "layer2"
#: Longest Linux interface name (IFNAMSIZ - 1).
_IFNAME_MAX = 15


@hookimpl
def metallb_announcer_protocols() -> Sequence[ProtocolInfo]:
    """``layer2``, owning the pool key ``interfaces``."""
    return [ProtocolInfo(name=PROTOCOL, pool_keys=("interfaces",))]


@hookimpl
def metallb_parse_advertisements(
    protocol: str, entry: PoolEntry, cidrs: Sequence[netaddr.IPNetwork]
) -> Sequence[Advertisement] | None:
    """A layer-2 pool's ``interfaces`` as one advertisement; None for other protocols."""
    if protocol != PROTOCOL:
        return None
    where = entry.where()
    raw = as_list(entry.data.get("interfaces"), where, "interfaces")
    interfaces = tuple(as_str(v, where, "interfaces").strip() for v in raw)
    for pattern in interfaces:
        if not pattern or (len(pattern) > _IFNAME_MAX and not any(c in pattern for c in "*?[")):
            raise field_error(
                where, "interfaces", pattern, "must be an interface name (at most 15 characters) or a shell pattern"
            )
    return [L2Advertisement(interfaces=interfaces)]


@hookimpl
def metallb_dump_advertisements(protocol: str, advertisements: Sequence[Advertisement]) -> Mapping[str, Any] | None:
    """``interfaces``, when the advertisements restrict them; None for other protocols."""
    if protocol != PROTOCOL:
        return None
    ads = [a for a in advertisements if isinstance(a, L2Advertisement)]
    if not ads or any(not a.interfaces for a in ads):
        return {}
    return {"interfaces": list(dict.fromkeys(i for a in ads for i in a.interfaces))}


@hookimpl
def metallb_make_announcer(protocol: str, settings: AnnouncerSettings) -> Layer2Announcer | None:
    """Build the layer-2 announcer for protocol ``layer2``; None for any other protocol."""
    if protocol != PROTOCOL:
        return None
    from metallb.announcers.layer2.announcer import Layer2Announcer

    return Layer2Announcer(settings)
