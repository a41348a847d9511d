"""``metallb explain NAMESPACE/SERVICE``: which pool and why, why pending, who announces it and how, last events.

The decision part is pure: :func:`explain` takes the Service, the config and
the other Services' addresses, replays the controller's choice on a private
allocator (static pools only: an address service is never asked) and says
what each pool answered. The gathering part reads a cluster, a standalone
state file with its config and services files, or a running standalone
instance (``--url``), and fills in announcements and events.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import netaddr
import yaml
from metallb.allocator import AllocationError, Allocator, Config, MetalLBError, parse_config
from metallb.allocator.model import BgpAdvertisement, L2Advertisement, PoolSpec
from metallb.allocator.plugins import default_plugin_manager
from metallb.allocator.yamlload import shown
from metallb.operator.cmd_config import read_config_text, reason, shown_path
from metallb.operator.service import POOL_ANNOTATION, ServiceIntent, read_service

__all__ = ["Announcer", "Explanation", "explain", "render", "run"]

#: The kind of the static pools (``address-pools``): the only ones replayed; others ask a remote source.
STATIC_KIND = "address-pools"
#: Events shown by default (``-o wide``: all).
LAST_EVENTS = 5


@attrs.frozen(kw_only=True)
class Announcer:
    """One node announcing the Service: how (layer-2 interfaces, BGP peers and their sessions)."""

    node: str
    protocol: str
    how: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Explanation:
    """Everything ``metallb explain`` prints, also as JSON or YAML.

    Attributes:
        service: ``namespace/name``.
        source: where the facts were read (a cluster, a state file, an instance).
        addresses: what the Service has now (empty: pending).
        pool: the pool of those addresses ("" when pending or unknown).
        selection: the selection steps, in order.
        pending: why it has no address ("" when it has one).
        pools: what each pool answered when tried for it: (pool, answer).
        announcers: the nodes announcing it now.
        announcement: why it is not announced, when it is not.
        events: the latest events, oldest first.
        notes: what more to pass to learn more.
    """

    service: str
    source: str
    addresses: tuple[str, ...] = ()
    pool: str = ""
    selection: tuple[str, ...] = ()
    pending: str = ""
    pools: tuple[tuple[str, str], ...] = ()
    announcers: tuple[Announcer, ...] = ()
    announcement: str = ""
    events: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


# -- the decision ------------------------------------------------------------------------


def _family_names(families: Sequence[int]) -> str:
    return " and ".join(f"IPv{f}" for f in families)


def _steps(intent: ServiceIntent, config: Config) -> tuple[list[str], list[PoolSpec]]:
    """The selection steps and the pools the controller would try, in its order."""
    if intent.requested:
        shown_ips = ", ".join(map(str, intent.requested))
        pools = [p for p in (config.pool_for(ip) for ip in intent.requested) if p is not None]
        if not pools:
            return [f"requests {shown_ips}, which no pool holds"], []
        names = ", ".join(dict.fromkeys(p.name for p in pools))
        return [
            f"requests {shown_ips} (spec.loadBalancerIP or the loadBalancerIPs annotation): pool {names}, "
            "whatever its auto-assign and any address-pool annotation"
        ], list({p.name: p for p in pools}.values())
    if intent.pool is not None:
        pool = config.pools.get(intent.pool)
        step = f'the address-pool annotation names pool "{intent.pool}"'
        return [step if pool is not None else step + ", which the config does not have"], [pool] if pool else []
    auto = [p for p in config.pools.values() if p.auto_assign]
    manual = [p.name for p in config.pools.values() if not p.auto_assign]
    step = "no address or pool requested: the auto-assign pools in configuration order: " + (
        ", ".join(p.name for p in auto) or "none"
    )
    if manual:
        step += f" (skipped, auto-assign: false: {', '.join(manual)})"
    return [step], auto


def _replay(config: Config, others: Iterable[ServiceIntent]) -> Allocator:
    """A private allocator with the static pools and every other Service's current addresses."""
    static = {name: pool for name, pool in config.pools.items() if pool.kind == STATIC_KIND}
    allocator = Allocator(plugin_manager=default_plugin_manager())
    allocator.set_config(attrs.evolve(config, pools=static))
    for other in others:
        if other.current and other.is_load_balancer:
            try:
                allocator.assign(
                    other.key,
                    list(other.current),
                    ports=other.ports,
                    sharing_key=other.sharing_key,
                    backend_key=other.backend_key,
                )
            except AllocationError:
                pass  # an address the config no longer allows: the controller moves it too
    return allocator


def _try(allocator: Allocator, intent: ServiceIntent, pool: PoolSpec) -> str:
    """What *pool* answers for *intent* now, on the replayed allocator."""
    if pool.kind != STATIC_KIND:
        return f"a {pool.kind} pool: its service decides at allocation time (not asked here)"
    answers = []
    for family in intent.families:
        wanted = next((ip for ip in intent.requested if ip.version == family), None)
        try:
            ip = allocator.allocate(
                intent.key,
                family=family,
                pool=None if wanted is not None else pool.name,
                ip=wanted,
                ports=intent.ports,
                sharing_key=intent.sharing_key,
                backend_key=intent.backend_key,
            )
        except AllocationError as exc:
            answers.append(str(exc))
        else:
            answers.append(f"free: {ip} (the controller retries pending Services)")
        finally:
            allocator.unassign(intent.key)
    return "; ".join(answers)


def _address(text: str) -> netaddr.IPAddress | None:
    try:
        return netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None


def explain(
    intent: ServiceIntent,
    config: Config | None,
    *,
    others: Iterable[ServiceIntent] = (),
    source: str,
    lb_class: str | None = None,
    pool: str = "",
    pending: str = "",
    wide: bool = False,
) -> Explanation:
    """Why *intent* has its addresses (``intent.current``) or why it has none.

    Args:
        intent: the Service (its ``current`` are the addresses it has).
        config: the config in force, None when unknown (the steps are then left out).
        others: every other Service, whose addresses the replay reserves.
        source: where the facts came from, for the header.
        lb_class: the load-balancer class the controller serves.
        pool: the pool the Service's annotation or state names, when known.
        pending: the pending reason the controller recorded, when known.
        wide: try every candidate pool even when the Service has addresses.
    """
    addresses = tuple(intent.current)
    out = Explanation(service=intent.key, source=source, addresses=addresses, pool=pool, pending=pending)
    if not intent.is_load_balancer:
        return attrs.evolve(out, selection=("spec.type is not LoadBalancer: metallb leaves it alone",))
    if intent.lb_class != lb_class:
        step = f"loadBalancerClass {intent.lb_class!r} is served only by a controller started with --lb-class"
        return attrs.evolve(out, selection=(step,))
    if config is None:
        return attrs.evolve(out, notes=("pass the config (--config) to see the selection steps",))
    steps, candidates = _steps(intent, config)
    if intent.error:
        steps.append(f"the request is invalid: {intent.error} (event LoadBalancerFailed)")
    if len(intent.families) > 1:
        kind = "RequireDualStack" if intent.require_all else "PreferDualStack"
        steps.append(f"families: {_family_names(intent.families)} ({kind})")
    if addresses:
        held = [config.pool_for(ip) for ip in map(_address, intent.current) if ip is not None]
        found = next((p.name for p in held if p is not None), "")
        pool = pool or found
        steps.append(f"holds {', '.join(addresses)} from pool {pool or '?'} (status.loadBalancer.ingress)")
        out = attrs.evolve(out, pool=pool)
    answers: list[tuple[str, str]] = []
    if (not addresses or wide) and not intent.error:
        allocator = _replay(config, others)
        try:
            answers = [(p.name, _try(allocator, intent, p)) for p in candidates]
        finally:
            allocator.close()
        if not addresses and not pending:
            pending = "; ".join(f"{name}: {answer}" for name, answer in answers) or "no pool to try"
    return attrs.evolve(out, selection=tuple(steps), pools=tuple(answers), pending="" if addresses else pending)


def how_announced(
    pool: PoolSpec | None, config: Config | None, node_labels: Mapping[str, str], sessions: Mapping[str, bool] | None
) -> tuple[str, ...]:
    """How a node announces *pool*: layer-2 interfaces, or BGP peers with whether each session is up."""
    if pool is None or config is None:
        return ()
    out: list[str] = []
    for adv in pool.advertisements:
        if isinstance(adv, L2Advertisement):
            out.append("interfaces: " + (", ".join(adv.interfaces) or "every interface of the node"))
        elif isinstance(adv, BgpAdvertisement):
            for peer in config.peers:
                if not peer.selects(node_labels):
                    continue
                address = f"{peer.peer_address}:{peer.peer_port}"
                up = None if sessions is None else sessions.get(address)
                state = "unknown" if up is None else "up" if up else "DOWN"
                out.append(f"peer {address} (AS {peer.peer_asn}): session {state}")
    return tuple(dict.fromkeys(out))


def sessions_from_metrics(text: str) -> dict[str, bool]:
    """``metallb_bgp_session_up`` per peer, from a ``/metrics`` text."""
    found = re.findall(r'^metallb_bgp_session_up\{[^}]*peer="([^"]+)"[^}]*\} (\S+)$', text, re.M)
    return {peer: float(value) == 1 for peer, value in found}


# -- the screen --------------------------------------------------------------------------


def render(e: Explanation, *, wide: bool = False) -> str:
    """One screen of text."""
    lines = [f"Service:  {e.service}", f"Source:   {e.source}"]
    if e.addresses:
        lines.append(f"Address:  {', '.join(e.addresses)}" + (f"  (pool {e.pool})" if e.pool else ""))
    else:
        lines.append(f"Address:  <pending>: {shown(e.pending or 'reason unknown', limit=300)}")
    if e.selection:
        lines.append("Why this pool:" if e.addresses else "Selection:")
        lines.extend(f"  {i}. {step}" for i, step in enumerate(e.selection, 1))
    if e.pools:
        lines.append("Pools tried:")
        width = max(len(name) for name, _ in e.pools)
        lines.extend(f"  {name.ljust(width)}  {shown(answer, limit=300)}" for name, answer in e.pools)
    if e.announcers:
        lines.append("Announced by:")
        for a in e.announcers:
            lines.append(f"  {a.node}  {a.protocol}")
            lines.extend(f"    {how}" for how in a.how)
    elif e.addresses:
        lines.append(f"Announced by:  nobody{': ' + e.announcement if e.announcement else ''}")
    if e.events:
        events = e.events if wide else e.events[-LAST_EVENTS:]
        lines.append(f"Events (last {len(events)}):")
        lines.extend(f"  {shown(event, limit=300)}" for event in events)
    lines.extend(f"Note: {note}" for note in e.notes)
    return "\n".join(lines)


def dump(e: Explanation, output: str) -> str:
    """The explanation as JSON or YAML."""
    data = attrs.asdict(e)
    return json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False).rstrip()


# -- gathering ---------------------------------------------------------------------------


def service_key(name: str, namespace: str | None) -> str:
    """``NAMESPACE/SERVICE`` from the argument and ``-n``; ValueError when they disagree."""
    if "/" in name:
        ns, _, svc = name.partition("/")
        if namespace is not None and namespace != ns:
            raise ValueError(f"{name}: the namespace {ns!r} differs from -n {namespace!r}")
        if not ns or not svc or "/" in svc:
            raise ValueError(f"{name}: expected NAMESPACE/SERVICE")
        return name
    return f"{namespace or 'default'}/{name}"


def _config_file(path: str | None) -> Config | None:
    return None if path is None else parse_config(read_config_text(path), plugin_manager=default_plugin_manager())


def _intents_from_files(services: str | None, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, ServiceIntent]:
    """The Services of a standalone services file, with the addresses the state or instance says they hold."""
    if services is None:
        return {}
    from metallb.operator.standalone import load_services

    out = {}
    for obj in load_services(services):
        intent = read_service(obj)
        held = rows.get(intent.key, {}).get("addresses") or ()
        out[intent.key] = attrs.evolve(intent, current=tuple(map(str, held)))
    return out


def from_standalone(key: str, args: argparse.Namespace) -> Explanation:
    """A standalone state file or a running instance, plus its config and services files when given."""
    metrics = ""
    if args.state:
        source = f"state file {shown_path(args.state)}"
        doc = json.loads(Path(args.state).read_bytes())
    else:
        source = f"instance {shown_path(args.url)}"
        base = args.url.rstrip("/")
        with urllib.request.urlopen(base + "/status", timeout=5) as answer:
            doc = json.loads(answer.read())
        try:
            with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
                metrics = answer.read().decode()
        except OSError:
            pass
    from metallb.operator.cmd_status import read_services

    rows = read_services(doc)
    config = _config_file(args.config)
    intents = _intents_from_files(args.services, rows)
    row = rows.get(key)
    if key not in intents and row is None:
        raise LookupError(f"no service {key} in the {source}" + (" or the services file" if args.services else ""))
    row = row or {}
    intent = intents.get(key) or ServiceIntent(key=key, current=tuple(map(str, row.get("addresses") or ())))
    notes = [] if args.services else ["pass the services file (--services) to replay the selection for this Service"]
    e = explain(
        intent,
        config,
        others=[i for k, i in intents.items() if k != key],
        source=source,
        pool=str(row.get("pool") or ""),
        pending=str(row.get("pending") or ""),
        wide=args.output == "wide",
    )
    announced = str(row.get("announced") or "")
    announcers: tuple[Announcer, ...] = ()
    found = re.fullmatch(r"(\S+) from (\S+)", announced)
    if found:
        spec = config.pools.get(e.pool) if config and e.pool else None
        sessions = sessions_from_metrics(metrics) if metrics else None
        how = how_announced(spec, config, {}, sessions)
        announcers = (Announcer(node=found[2], protocol=found[1], how=how),)
    return attrs.evolve(
        e, announcers=announcers, announcement="" if found else announced, notes=(*e.notes, *notes)
    )


def from_cluster(key: str, args: argparse.Namespace) -> Explanation:
    """A cluster: the Service, the config ConfigMap, the other Services, events and the speakers' metrics."""
    from kubernetes import client
    from metallb.operator.kube import api_client
    from metallb.operator.kube_status import announcing_nodes

    api = api_client(args.kubeconfig, context=args.context)
    core = client.CoreV1Api(api)
    namespace, name = key.split("/", 1)
    try:
        obj = api.sanitize_for_serialization(core.read_namespaced_service(name, namespace))
    except client.ApiException as exc:
        if exc.status == 404:
            raise LookupError(f"no Service {key} in the cluster") from None
        raise
    config: Config | None = None
    notes: list[str] = []
    try:
        cm = core.read_namespaced_config_map(args.config_name, args.metallb_namespace)
        config = parse_config((cm.data or {}).get("config", ""), plugin_manager=default_plugin_manager())
    except client.ApiException as exc:
        notes.append(f"config {args.metallb_namespace}/{args.config_name}: cannot read it ({exc.status} {exc.reason})")
    except MetalLBError as exc:
        notes.append(f"config {args.metallb_namespace}/{args.config_name} is invalid: {reason(exc)}")
    services = api.sanitize_for_serialization(core.list_service_for_all_namespaces()).get("items") or []
    others = [read_service(s) for s in services if f"{s['metadata']['namespace']}/{s['metadata']['name']}" != key]
    about = f"involvedObject.kind=Service,involvedObject.name={name}"
    events = sorted(
        core.list_namespaced_event(namespace, field_selector=about).items,
        key=lambda ev: str(ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp or ""),
    )
    lines = tuple(
        f"{ev.last_timestamp or ev.event_time or ''} {ev.type} {ev.reason}: {ev.message}".strip() for ev in events
    )
    warning = next((f"{ev.reason}: {ev.message}" for ev in reversed(events) if ev.type == "Warning"), "")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    e = explain(
        read_service(obj),
        config,
        others=others,
        source=f"cluster ({args.context or 'current context'})",
        lb_class=args.lb_class,
        pool=annotations.get(POOL_ANNOTATION, ""),
        pending=warning,
        wide=args.output == "wide",
    )
    # Who announces now, from the ServiceL2Status / ServiceBGPStatus objects; else every node ever assigned.
    now = announcing_nodes(api) or {}
    nodes = dict.fromkeys(sorted(now[key])) if key in now else dict.fromkeys(
        (ev.message or "").rsplit(" ", 1)[-1].strip('"') for ev in events if ev.reason == "nodeAssigned"
    )
    announcers = []
    spec = config.pools.get(e.pool) if config and e.pool else None
    for node in nodes:
        labels: Mapping[str, str] = {}
        sessions = None
        try:
            labels = core.read_node(node).metadata.labels or {}
            pods = core.list_namespaced_pod(
                args.metallb_namespace,
                label_selector="app.kubernetes.io/component=speaker",
                field_selector=f"spec.nodeName={node}",
            ).items
            if pods and spec is not None and any(isinstance(a, BgpAdvertisement) for a in spec.advertisements):
                text = core.connect_get_namespaced_pod_proxy_with_path(
                    f"{pods[0].metadata.name}:7472", args.metallb_namespace, "metrics"
                )
                sessions = sessions_from_metrics(str(text))
        except client.ApiException as exc:
            notes.append(f"node {node}: cannot read its speaker's sessions ({exc.status} {exc.reason})")
        protocol = spec.protocol if spec is not None else "?"
        announcers.append(Announcer(node=node, protocol=protocol, how=how_announced(spec, config, labels, sessions)))
    return attrs.evolve(e, announcers=tuple(announcers), events=lines, notes=(*e.notes, *notes))


def no_source_message(command: str) -> str | None:
    """What ``status``/``explain`` tried when there is no cluster to find and no file or URL was given; None if
    a cluster may be there (a kubeconfig exists or we run in a pod)."""
    import os

    kubeconfig = os.environ.get("KUBECONFIG")
    home = os.path.expanduser("~/.kube/config")
    if kubeconfig or os.path.exists(home) or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    return (
        f"metallb {command}: no cluster, state file or instance to read: tried KUBECONFIG (unset), "
        f"{home} (absent) and the in-cluster service account (KUBERNETES_SERVICE_HOST unset); pass "
        "--kubeconfig FILE [--context NAME] for a cluster, --state FILE for a standalone state file, "
        "or --url http://HOST:7472 for a running `metallb standalone`"
    )


def run(args: argparse.Namespace) -> int:
    """Print the explanation; 1 when the Service or its source cannot be read."""
    try:
        key = service_key(args.service, args.namespace)
    except ValueError as exc:
        print(f"metallb explain: {exc}", file=sys.stderr)
        return 2
    if not (args.state or args.url) and (message := no_source_message("explain")) and not args.kubeconfig:
        print(message, file=sys.stderr)
        return 1
    try:
        e = from_standalone(key, args) if args.state or args.url else from_cluster(key, args)
    except LookupError as exc:
        print(f"metallb explain: {exc.args[0]}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RecursionError, MetalLBError) as exc:
        where = shown_path(args.state or args.url or args.config or args.services or "")
        print(f"metallb explain: cannot read {where}: {reason(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bad kubeconfig, an unreachable or refusing API read the same
        print(f"metallb explain: cannot read the cluster: {reason(exc)}", file=sys.stderr)
        return 1
    print(dump(e, args.output) if args.output in ("json", "yaml") else render(e, wide=args.output == "wide"))
    return 0
