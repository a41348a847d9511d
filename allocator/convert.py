"""A :class:`~metallb.allocator.Config` as MetalLB's resources: ``metallb convert-config`` and check-config's output.

MetalLB shipped such a converter (``configmaptocrs``) for its own move from the ConfigMap;
this one follows its names and order (peers ``peer1``..., then pools, BGP advertisements
``bgpadvertisement1``..., layer-2 advertisements ``l2advertisement1``..., BFD profiles, and
one ``Community`` named ``communities``), and works on any parsed configuration, so a
resource configuration can be printed normalised too. Pools are rendered by the plugin
of their kind (``metallb_render_pool_resource``), with the Secrets they refer to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pluggy
import yaml
from metallb.allocator.errors import ConfigError
from metallb.allocator.model import (
    BgpAdvertisement,
    Config,
    L2Advertisement,
    LabelSelector,
    PeerSpec,
)
from metallb.allocator.plugins import Hooks, default_plugin_manager
from metallb.allocator.resources import GROUP
from metallb.allocator.yamlload import shown

__all__ = ["Conversion", "config_to_resources", "dump_resources", "k8s_name"]

_DNS_LABEL = re.compile(r"^[a-z][-a-z0-9]{0,61}[a-z0-9]$")


def k8s_name(name: str) -> str:
    """*name* as an object name, MetalLB's converter's way: lower case, ``_`` to ``-``, from the first letter, 63 chars.

    Raises ConfigError when *name* has no letter.
    """
    if _DNS_LABEL.match(name):
        return name
    text = name.lower().replace("_", "-")
    first = next((i for i, c in enumerate(text) if "a" <= c <= "z"), None)
    if first is None:
        raise ConfigError(f'pool "{shown(name)}": cannot be made a Kubernetes name (it needs a letter); rename it')
    text = re.sub(r"[^-a-z0-9]", "-", text[first:])[:63].rstrip("-")
    return text


def _selectors(selectors: Sequence[LabelSelector]) -> list[dict[str, Any]]:
    out = []
    for s in selectors:
        item: dict[str, Any] = {}
        if s.match_labels:
            item["matchLabels"] = dict(s.match_labels)
        if s.match_expressions:
            item["matchExpressions"] = [
                {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}
                for e in s.match_expressions
            ]
        out.append(item)
    return out


def _meta(name: str, namespace: str) -> dict[str, str]:
    return {"name": name, "namespace": namespace}


def _object(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": kind, "metadata": _meta(name, namespace), "spec": spec}


def _seconds(value: float) -> str:
    return f"{int(value)}s" if value == int(value) else f"{value:g}s"


def _peer(peer: PeerSpec, name: str, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"myASN": peer.my_asn}
    if peer.peer_asn:
        spec["peerASN"] = peer.peer_asn
    if peer.dynamic_asn:
        spec["dynamicASN"] = peer.dynamic_asn
    if peer.peer_address is not None:
        spec["peerAddress"] = str(peer.peer_address)
    if peer.interface:
        spec["interface"] = peer.interface
    if peer.peer_port != 179:
        spec["peerPort"] = peer.peer_port
    spec["holdTime"] = _seconds(peer.hold_time)
    if peer.keepalive_time is not None:
        spec["keepaliveTime"] = _seconds(peer.keepalive_time)
    if peer.connect_time is not None:
        spec["connectTime"] = _seconds(peer.connect_time)
    for field, value in (("routerID", peer.router_id), ("sourceAddress", peer.source_address)):
        if value is not None:
            spec[field] = str(value)
    if peer.node_selectors:
        spec["nodeSelectors"] = _selectors(peer.node_selectors)
    if peer.password:
        spec["password"] = peer.password
    flags = (
        ("bfdProfile", peer.bfd_profile),
        ("ebgpMultiHop", peer.ebgp_multihop),
        ("enableGracefulRestart", peer.enable_graceful_restart),
        ("disableMP", peer.disable_mp),
        ("dualStackAddressFamily", peer.dual_stack_address_family),
        ("vrf", peer.vrf),
    )
    spec.update({k: v for k, v in flags if v})
    return {"apiVersion": f"{GROUP}/v1beta2", "kind": "BGPPeer", "metadata": _meta(name, namespace), "spec": spec}


def _l2(adv: L2Advertisement, pool: str, extra: Sequence[LabelSelector]) -> dict[str, Any]:
    spec: dict[str, Any] = {"ipAddressPools": [pool]}
    selectors = adv.node_selectors or tuple(extra)
    if selectors:
        spec["nodeSelectors"] = _selectors(selectors)
    if adv.interfaces:
        spec["interfaces"] = list(adv.interfaces)
    return spec


def _bgp(adv: BgpAdvertisement, pool: str, extra: Sequence[LabelSelector], aliases: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"ipAddressPools": [pool]}
    if adv.aggregation_length != 32:
        spec["aggregationLength"] = adv.aggregation_length
    if adv.aggregation_length_v6 != 128:
        spec["aggregationLengthV6"] = adv.aggregation_length_v6
    if adv.localpref:
        spec["localPref"] = adv.localpref
    if adv.communities:
        spec["communities"] = [aliases.get(str(c), str(c)) for c in adv.communities]
    selectors = adv.node_selectors or tuple(extra)
    if selectors:
        spec["nodeSelectors"] = _selectors(selectors)
    if adv.peers:
        spec["peers"] = list(adv.peers)
    return spec


@attrs.frozen(kw_only=True)
class Conversion:
    """Resources equivalent to a configuration.

    Attributes:
        objects: the objects, in MetalLB's converter's order.
        notes: what a reader must know (a pool renamed to be a Kubernetes name ...).
    """

    objects: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...] = ()


def config_to_resources(
    config: Config, *, namespace: str = "metallb-system", plugin_manager: pluggy.PluginManager | None = None
) -> Conversion:
    """Render *config* as resources that parse back to the same pools, peers and advertisements.

    A pool's ``node-selectors`` (a metallb extension of the ConfigMap) become
    its advertisements' ``nodeSelectors``, which has the same effect.
    """
    hooks = Hooks(plugin_manager if plugin_manager is not None else default_plugin_manager())
    notes: list[str] = []
    peers = [_peer(p, k8s_name(p.name) if p.name else f"peer{i}", namespace) for i, p in enumerate(config.peers, 1)]
    pools: list[dict[str, Any]] = []
    secrets: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for pool in config.pools.values():
        name = k8s_name(pool.name)
        if name != pool.name:
            notes.append(
                f'pool "{shown(pool.name)}" is named "{name}" as a resource: update Services whose '
                "metallb.io/address-pool annotation names it"
            )
        names[pool.name] = name
        rendered = hooks.render_pool_resource(attrs.evolve(pool, name=name), namespace)
        pools.append(rendered[0])
        secrets.extend(rendered[1:])
    aliases = {str(value): alias for alias, value in config.communities.items()}
    bgp: list[dict[str, Any]] = []
    l2: list[dict[str, Any]] = []
    for pool in config.pools.values():
        pool_name = names[pool.name]
        for adv in pool.advertisements:
            if isinstance(adv, BgpAdvertisement):
                name = f"bgpadvertisement{len(bgp) + 1}"
                spec = _bgp(adv, pool_name, pool.node_selectors, aliases)
                bgp.append(
                    {
                        "apiVersion": f"{GROUP}/v1beta1",
                        "kind": "BGPAdvertisement",
                        "metadata": _meta(name, namespace),
                        "spec": spec,
                    }
                )
            elif isinstance(adv, L2Advertisement):
                name = f"l2advertisement{len(l2) + 1}"
                spec = _l2(adv, pool_name, pool.node_selectors)
                l2.append(
                    {
                        "apiVersion": f"{GROUP}/v1beta1",
                        "kind": "L2Advertisement",
                        "metadata": _meta(name, namespace),
                        "spec": spec,
                    }
                )
            else:
                notes.append(f'pool "{pool.name}": a {adv.protocol} advertisement has no resource form; left out')
    bfd = []
    for profile in config.bfd_profiles.values():
        spec = {
            key: value
            for key, value in (
                ("receiveInterval", profile.receive_interval),
                ("transmitInterval", profile.transmit_interval),
                ("detectMultiplier", profile.detect_multiplier),
                ("echoInterval", profile.echo_interval),
                ("echoMode", profile.echo_mode),
                ("passiveMode", profile.passive_mode),
                ("minimumTtl", profile.minimum_ttl),
            )
            if value is not None
        }
        bfd.append(
            {
                "apiVersion": f"{GROUP}/v1beta1",
                "kind": "BFDProfile",
                "metadata": _meta(profile.name, namespace),
                "spec": spec,
            }
        )
    community = []
    if config.communities:
        entries = [{"name": alias, "value": str(value)} for alias, value in sorted(config.communities.items())]
        community.append(_object("Community", "communities", namespace, {"communities": entries}))
    objects = (*peers, *pools, *bgp, *l2, *bfd, *community, *secrets)
    return Conversion(objects=tuple(objects), notes=tuple(notes))


def dump_resources(objects: Sequence[Mapping[str, Any]]) -> str:
    """*objects* as one YAML stream, each document after ``---``."""
    return "".join("---\n" + yaml.safe_dump(dict(o), sort_keys=False, default_flow_style=False) for o in objects)
