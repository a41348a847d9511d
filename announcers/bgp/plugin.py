"""The BGP plugin's entry module: protocol ``bgp``, its pool key, and the announcer factory.

Light on purpose: it parses configuration on bare installs, so it imports only
metallb's base dependencies. The announcer (``announcer.py``, with asyncio
sessions and prometheus_client) is imported when a speaker asks for it.

The protocol owns one pool key, ``bgp-advertisements``, parsed into
:class:`~metallb.allocator.BgpAdvertisement` values with MetalLB v0.12's rules
(a ``bgp`` pool without advertisements gets one default advertisement).
Peers and ``bgp-communities`` stay core sections: the model shares them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import netaddr
from metallb.allocator.config import as_int, as_list, as_mapping, as_str, field_error, parse_cidrs, parse_community
from metallb.allocator.errors import ConfigError
from metallb.allocator.interfaces import AnnouncerSettings
from metallb.allocator.model import (
    Advertisement,
    BgpAdvertisement,
    Community,
    Config,
    LargeCommunity,
    PeerSpec,
    PoolEntry,
    ProtocolInfo,
    Unapplied,
)
from metallb.allocator.plugins import hookimpl

if TYPE_CHECKING:
    from metallb.announcers.bgp.announcer import BgpAnnouncer

__all__ = [
    "ADVERTISEMENT_KEYS",
    "APPLIED_PEER_FIELDS",
    "BFD_APPLIED",
    "NOT_STARTED_WITHOUT",
    "PROTOCOL",
    "metallb_announcer_protocols",
    "metallb_dump_advertisements",
    "metallb_make_announcer",
    "metallb_parse_advertisements",
    "metallb_unapplied_config",
    "parse_advertisements",
    "sort_key",
    "starts_session",
    "unapplied_peer_fields",
]

PROTOCOL = "bgp"
#: The keys of one ``bgp-advertisements`` item.
ADVERTISEMENT_KEYS = ("aggregation-length", "aggregation-length-v6", "localpref", "communities")


def sort_key(community: Community | LargeCommunity) -> tuple[bool, int, int, int]:
    """Standard communities first, by value, then large ones: the order advertisements keep."""
    if isinstance(community, LargeCommunity):
        return (True, community.global_admin, community.local1, community.local2)
    return (False, community.value, 0, 0)


def _entries(entry: PoolEntry, cidrs: Sequence[netaddr.IPNetwork]) -> list[tuple[netaddr.IPNetwork, ...]]:
    """The pool's CIDRs grouped by the address entry (CIDR or range) each came from.

    MetalLB checks aggregation lengths per entry; a section whose address key
    is not ``addresses`` or ``cidrs`` gets one group per CIDR.
    """
    for key in ("addresses", "cidrs"):
        raw = entry.data.get(key)
        if isinstance(raw, list) and raw:
            groups = [parse_cidrs([item], entry.where(), key) for item in raw]
            if [c for g in groups for c in g] == list(cidrs):
                return groups
    return [(c,) for c in cidrs]


def parse_advertisements(
    raw: object,
    where: str,
    cidrs: Sequence[netaddr.IPNetwork],
    communities: Mapping[str, Community | LargeCommunity],
    *,
    entries: Sequence[Sequence[netaddr.IPNetwork]] | None = None,
) -> tuple[BgpAdvertisement, ...]:
    """A ``bgp-advertisements`` list, MetalLB v0.12's way; one default advertisement when empty.

    *entries* groups *cidrs* by the address entry each came from (default: one
    entry per CIDR): an aggregation length must be at least the prefix length
    of the widest CIDR of each entry, so ``3.3.3.2-3.3.3.254`` (widest piece a
    /26) takes 26.
    """
    groups = [tuple(g) for g in entries] if entries is not None else [(c,) for c in cidrs]
    out: list[BgpAdvertisement] = []
    written: list[tuple[object, ...]] = []  # the entries as written, for the duplicate check
    for i, item in enumerate(as_list(raw, where, "bgp-advertisements"), 1):
        here = f"{where}: bgp advertisement #{i}"
        data = as_mapping(item, here, keys=ADVERTISEMENT_KEYS)
        agg = as_int(data.get("aggregation-length"), here, "aggregation-length", default=32, bits=8)
        agg6 = as_int(data.get("aggregation-length-v6"), here, "aggregation-length-v6", default=128, bits=8)
        if agg > 32:
            raise field_error(here, "aggregation-length", agg, "invalid aggregation length: must be at most 32")
        if agg6 > 128:
            raise field_error(here, "aggregation-length-v6", agg6, "invalid aggregation length: must be at most 128")
        for group in groups:
            if not group:
                continue
            widest = min(group, key=lambda c: c.prefixlen)
            limit, field = (agg, "aggregation-length") if widest.version == 4 else (agg6, "aggregation-length-v6")
            if limit < widest.prefixlen:
                raise field_error(
                    here,
                    field,
                    limit,
                    f"invalid aggregation length: the pool's {widest} is more specific; "
                    f"use a length of at least {widest.prefixlen}",
                )
        localpref = as_int(data.get("localpref"), here, "localpref", default=0)
        parsed: list[Community | LargeCommunity] = []
        texts: list[str] = []
        for value in as_list(data.get("communities"), here, "communities"):
            text = as_str(value, here, "communities")
            if text in texts:  # MetalLB compares the strings: an alias and its value are no duplicates
                raise field_error(here, "communities", text, "duplicate community in one advertisement")
            texts.append(text)
            community = communities.get(text)
            if community is None:
                try:
                    community = parse_community(text)
                except ValueError as exc:
                    raise field_error(here, "communities", text, f"not a bgp-communities alias, and {exc}") from None
            if community not in parsed:
                parsed.append(community)
        # MetalLB v0.12 compares the entries as decoded: an absent key differs from its
        # default ({} and {aggregation-length: 32} are two entries), communities as written.
        given = [data.get(k) is not None for k in ("aggregation-length", "aggregation-length-v6", "localpref")]
        key = (*(v if g else None for v, g in zip((agg, agg6, localpref), given, strict=True)), tuple(texts))
        if key in written:
            raise ConfigError(f"{here}: duplicate advertisement: it repeats an earlier one exactly")
        written.append(key)
        out.append(
            BgpAdvertisement(
                aggregation_length=agg,
                aggregation_length_v6=agg6,
                localpref=localpref,
                communities=tuple(sorted(parsed, key=sort_key)),
            )
        )
    return tuple(out) if out else (BgpAdvertisement(),)


@hookimpl
def metallb_announcer_protocols() -> Sequence[ProtocolInfo]:
    """``bgp``, owning the pool key ``bgp-advertisements``."""
    return [ProtocolInfo(name=PROTOCOL, pool_keys=("bgp-advertisements",))]


@hookimpl
def metallb_parse_advertisements(
    protocol: str, entry: PoolEntry, cidrs: Sequence[netaddr.IPNetwork]
) -> Sequence[Advertisement] | None:
    """A ``bgp`` pool's ``bgp-advertisements``; None for other protocols."""
    if protocol != PROTOCOL:
        return None
    return parse_advertisements(
        entry.data.get("bgp-advertisements"), entry.where(), cidrs, entry.communities, entries=_entries(entry, cidrs)
    )


@hookimpl
def metallb_dump_advertisements(protocol: str, advertisements: Sequence[Advertisement]) -> Mapping[str, Any] | None:
    """``bgp-advertisements``, every key written out; None for other protocols."""
    if protocol != PROTOCOL:
        return None
    return {
        "bgp-advertisements": [
            {
                "aggregation-length": a.aggregation_length,
                "aggregation-length-v6": a.aggregation_length_v6,
                "localpref": a.localpref,
                "communities": [str(c) for c in a.communities],
            }
            for a in advertisements
            if isinstance(a, BgpAdvertisement)
        ]
    }


@hookimpl
def metallb_make_announcer(protocol: str, settings: AnnouncerSettings) -> BgpAnnouncer | None:
    """The BGP announcer for ``protocol == "bgp"``; None for any other protocol."""
    if protocol != PROTOCOL:
        return None
    from metallb.announcers.bgp.announcer import BgpAnnouncer

    return BgpAnnouncer(settings)


# -- what the speaker applies ----------------------------------------------------------------

#: The PeerSpec fields metallb's BGP speaker applies. A peer setting another field (to other
#: than its default) is accepted and reported as not applied (``metallb_unapplied_config``).
#: Implementing a field is adding it here.
APPLIED_PEER_FIELDS = frozenset(
    {
        "name",
        "my_asn",
        "peer_asn",
        "peer_address",
        "peer_port",
        "hold_time",
        "router_id",
        "source_address",
        "password",
        "node_selectors",
        "dual_stack_address_family",  # the speaker always sends both families over one session
    }
)
#: Of the fields not applied, those without which a session would be wrong rather than weaker:
#: such a peer gets no session until the field is applied.
NOT_STARTED_WITHOUT = frozenset({"interface", "vrf", "dynamic_asn"})
#: Whether the speaker runs BFD (``BFDProfile`` objects and peers' ``bfd_profile``).
BFD_APPLIED = False

_PEER_DEFAULTS = {f.name: f.default for f in attrs.fields(PeerSpec)}


def unapplied_peer_fields(peer: PeerSpec) -> tuple[str, ...]:
    """The fields of *peer* the speaker does not apply, in model order."""
    out = []
    for field in attrs.fields(PeerSpec):
        name = field.name
        if name in APPLIED_PEER_FIELDS or getattr(peer, name) == _PEER_DEFAULTS[name]:
            continue
        if name == "keepalive_time" and peer.keepalive_time is not None and peer.keepalive_time * 3 == peer.hold_time:
            continue  # what the speaker does anyway: a third of the hold time
        if name == "bfd_profile" and BFD_APPLIED:
            continue
        out.append(name)
    return tuple(out)


def starts_session(peer: PeerSpec) -> bool:
    """Whether the speaker opens a session to *peer* (it has an address, and nothing it needs is missing)."""
    return peer.peer_address is not None and not set(unapplied_peer_fields(peer)) & NOT_STARTED_WITHOUT


@hookimpl
def metallb_unapplied_config(config: Config) -> Sequence[Unapplied]:
    """Peers' fields the speaker does not apply yet, and every BFD profile while BFD is not applied."""
    out = []
    for index, peer in enumerate(config.peers, 1):
        fields = unapplied_peer_fields(peer)
        if fields:
            effect = "the session runs without them" if starts_session(peer) else "the session is not started"
            out.append(Unapplied(kind="BGPPeer", name=peer.name, index=index, fields=fields, effect=effect))
    if not BFD_APPLIED:
        for profile in config.bfd_profiles.values():
            out.append(
                Unapplied(
                    kind="BFDProfile",
                    name=profile.name,
                    fields=("name",),
                    effect="the BGP speaker does not run BFD yet; sessions using the profile run without it",
                )
            )
    return out
