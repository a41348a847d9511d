"""Controller and speaker for one host, without Kubernetes: ``metallb standalone``.

Services are ordinary Kubernetes Service manifests written by hand (several
YAML documents in one file); they need no clusterIP (the family comes from
``ipFamilies``, else from the requested address, else IPv4) and each counts as
having a ready endpoint on this host. Allocations persist in a state file
(written atomically) and survive restarts: on start every address in the state
file is re-assigned before anything new is allocated, so a restart never moves
an address. Both files are re-read when they change; the allocations are
printed as a table and served on the metrics port (``/status``, ``/metrics``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from metallb.allocator import (
    Allocator,
    AnnouncerSettings,
    ClusterView,
    Config,
    ConfigError,
    MetalLBError,
    NodeInfo,
    ServiceView,
    default_plugin_manager,
    parse_config,
)
from metallb.allocator.config import as_int, as_list, as_mapping, as_str
from metallb.allocator.files import write_atomically
from metallb.allocator.retry import Backoff
from metallb.allocator.yamlload import load_yaml_all, shown
from metallb.operator.announcing import NOT_ADVERTISED, Announcers, ServiceAnnouncements, parse_interfaces
from metallb.operator.cmd_config import read_config_text, reason, shown_path
from metallb.operator.cmd_status import read_services
from metallb.operator.converge import converge
from metallb.operator.metrics import ControllerMetrics, MetricsServer, SpeakerMetrics
from metallb.operator.service import ServiceIntent, read_service
from metallb.operator.table import render_table
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

STATE_VERSION = 1


def load_services(path: str) -> list[dict[str, Any]]:
    """Every Service manifest in *path*, checked (documents of other kinds and empty ones are ignored).

    Read like the config (:func:`~metallb.allocator.yamlload.load_yaml_all`: bounded, scalars as
    text); the fields :func:`read_service` reads are checked for their types, and ports converted
    to numbers. ``ConfigError`` names the document, the field and the value; ``OSError`` when the
    file cannot be read.
    """
    out = []
    for number, doc in enumerate(load_yaml_all(Path(path).read_bytes()), 1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(
                f"{shown_path(path)}: document #{number}: must be a manifest (a mapping), not a single value or a list"
            )
        if doc.get("kind", "Service") == "Service":
            out.append(_service_manifest(doc, f"{shown_path(path)}: document #{number}"))
    return out


# The fields of a Service manifest that read_service reads, by type.
_TEXT_FIELDS = ("type", "loadBalancerIP", "loadBalancerClass", "ipFamilyPolicy", "clusterIP", "externalTrafficPolicy")
_LIST_FIELDS = ("ipFamilies", "clusterIPs")


def _service_manifest(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """*doc* with its ports as numbers, once every field read_service reads has its type."""
    meta = as_mapping(doc.get("metadata"), f"{where}: metadata")
    name = as_str(meta.get("name"), where, "metadata.name")
    if not name:
        raise ConfigError(f"{where}: metadata.name is missing")
    where = f"{where} ({shown(as_str(meta.get('namespace'), where, 'metadata.namespace') or 'default')}/{shown(name)})"
    for key, value in as_mapping(meta.get("annotations"), f"{where}: metadata.annotations").items():
        as_str(value, where, f"metadata.annotations.{key}")
    spec = as_mapping(doc.get("spec"), f"{where}: spec")
    for field in _TEXT_FIELDS:
        as_str(spec.get(field), where, f"spec.{field}")
    for field in _LIST_FIELDS:
        for item in as_list(spec.get(field), where, f"spec.{field}"):
            as_str(item, where, f"spec.{field}")
    as_mapping(spec.get("selector"), f"{where}: spec.selector")
    ports = []
    for i, item in enumerate(as_list(spec.get("ports"), where, "spec.ports")):
        entry = as_mapping(item, f"{where}: spec.ports[{i}]")
        as_str(entry.get("protocol"), where, f"spec.ports[{i}].protocol")
        if "port" in entry:
            entry["port"] = as_int(entry["port"], where, f"spec.ports[{i}].port", default=0, bits=16, lo=1)
        ports.append(entry)
    status = as_mapping(doc.get("status"), f"{where}: status")
    balancer = as_mapping(status.get("loadBalancer"), f"{where}: status.loadBalancer")
    for i, item in enumerate(as_list(balancer.get("ingress"), where, "status.loadBalancer.ingress")):
        as_str(as_mapping(item, f"{where}: status.loadBalancer.ingress[{i}]").get("ip"), where, "ip")
    return {**doc, "spec": {**spec, **({"ports": ports} if "ports" in spec else {})}}


@attrs.define(kw_only=True)
class Row:
    """One service in the status table."""

    service: str
    addresses: tuple[str, ...] = ()
    pool: str = ""
    announced: str = ""
    pending: str = ""


class Standalone:
    """The standalone loop: files in, allocations and announcements out."""

    def __init__(
        self,
        *,
        config_path: str,
        services_path: str,
        node: str,
        state_path: str | None,
        interfaces: Sequence[str] = (),
        announce: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config_path = config_path
        self.services_path = services_path
        self.node = NodeInfo(name=node)
        self.state_path = state_path
        self.interfaces = tuple(interfaces)
        self.announce_enabled = announce
        self.registry = registry or CollectorRegistry()
        self.pm = default_plugin_manager()
        self.allocator = Allocator(plugin_manager=self.pm)
        self.metrics = ControllerMetrics(self.registry, self.allocator)
        self.speaker_metrics = SpeakerMetrics(self.registry)
        announcers = Announcers(
            self.pm,
            AnnouncerSettings(node_name=node, interfaces=self.interfaces, registry=self.registry),
        )
        self.announcements = ServiceAnnouncements(announcers, self.speaker_metrics, node_name=node)
        self.rows: dict[str, Row] = {}
        self.previous: dict[str, tuple[str, ...]] = {}  # addresses from the state file
        self.retry = False  # a service is pending for a reason that may pass (a source was down)
        self._mtimes: tuple[float, float] = (0.0, 0.0)
        self._lock = threading.Lock()
        self.config: Config | None = None
        self._failed = {"config": False, "services": False}  # the last read of each file failed
        self.services_error = ""  # why the services file was not applied, "" when it was
        self.config_error = ""  # the same for the config file
        self._services_loaded = False

    # -- files -----------------------------------------------------------------------

    def _mtime(self, path: str) -> float:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return 0.0

    def changed(self) -> bool:
        """Whether either input file changed since the last sync."""
        now = (self._mtime(self.config_path), self._mtime(self.services_path))
        if now != self._mtimes:
            self._mtimes = now
            return True
        return False

    def load_config(self) -> bool:
        """Apply the config file; a bad one keeps the last good config (stale), whatever it holds."""
        try:
            config = parse_config(read_config_text(self.config_path), plugin_manager=self.pm)
            if config != self.config or (self.config is not None and config.warnings != self.config.warnings):
                self.allocator.set_config(config)
                self.config = config
                for warning in config.warnings:
                    log.warning("config %s: %s", shown_path(self.config_path), warning)
        except (MetalLBError, OSError) as exc:
            self.config_error = f"config {shown_path(self.config_path)} not applied: {reason(exc)}"
            self._stale(config=True)
            if self.config is None:
                return False  # nothing to keep: the caller says why, once
            log.error("%s; keeping the last good one", self.config_error)
            return True
        self.config_error = ""
        self.metrics.config_loaded.set(1)
        self._stale(config=False)
        return True

    def _stale(self, **failed: bool) -> None:
        """Record whether the config or the services file failed; stale while either did."""
        self._failed.update(failed)
        self.metrics.config_stale.set(1 if any(self._failed.values()) else 0)

    def restore_state(self) -> None:
        """Read the addresses of the state file; the first sync re-assigns them before anything new."""
        if not self.state_path or not os.path.exists(self.state_path):
            return
        try:
            services = read_services(json.loads(Path(self.state_path).read_bytes()))
            previous = {key: _addresses(entry.get("addresses")) for key, entry in services.items()}
        except (OSError, ValueError, RecursionError) as exc:
            log.error("state file %s unreadable, starting empty: %s", shown_path(self.state_path), reason(exc))
            return
        self.previous.update({key: ips for key, ips in previous.items() if ips})

    def save_state(self) -> None:
        """Write the allocations atomically."""
        if not self.state_path:
            return
        doc = {
            "version": STATE_VERSION,
            "node": self.node.name,
            "services": {
                k: attrs.asdict(r, filter=lambda a, _: a.name != "service") for k, r in sorted(self.rows.items())
            },
        }
        write_atomically(self.state_path, json.dumps(doc, indent=2, default=list) + "\n", prefix=".metallb-state-")

    # -- one pass --------------------------------------------------------------------

    def sync(self) -> list[Row]:
        """Converge every service in the file, announce, persist; return the table rows."""
        with self._lock:
            if not self.load_config():
                raise MetalLBError(self.config_error)
            try:
                manifests = load_services(self.services_path)
            except (OSError, MetalLBError) as exc:
                self.services_error = f"services file {shown_path(self.services_path)} not applied: {reason(exc)}"
                if self._services_loaded:  # else there is nothing to keep: run() says why, once
                    log.error("%s; keeping the current services", self.services_error)
                self._stale(services=True)
                return list(self.rows.values())
            self.services_error = ""
            self._services_loaded = True
            self._stale(services=False)
            intents = {}
            for intent in map(read_service, manifests):
                # Like Service status in a cluster: what this service had before.
                known = self.rows.get(intent.key)
                current = known.addresses if known else self.previous.get(intent.key, ())
                intents[intent.key] = attrs.evolve(intent, current=current) if current else intent
            restored = dict(self.previous)
            self.previous = {}
            for key in list(self.rows):
                if key not in intents:
                    self.allocator.unassign(key)  # its announcement is withdrawn by _announce
                    del self.rows[key]
            # The sync barrier (first sync after a start): every service from the state
            # file keeps its addresses before anything new is allocated.
            for key in restored.keys() & intents.keys():
                converge(intents[key], self.allocator, synced=False)
            self._release_gone(restored, intents)
            rows = {}
            self.retry = False
            for key, intent in intents.items():
                outcome = converge(intent, self.allocator)
                self.retry = self.retry or outcome.retry
                if outcome.failure is not None:
                    self.metrics.allocation_failed(pool=outcome.failure[0], reason=outcome.failure[1])
                rows[key] = Row(
                    service=key,
                    addresses=outcome.ingress,
                    pool=self.allocator.pool_of(key) or "",
                    pending=outcome.pending,
                )
                for event in outcome.events:
                    level = logging.INFO if event.type == "Normal" else logging.WARNING
                    log.log(level, "%s %s: %s", key, event.reason, event.message)
            self.rows = rows
            if self.announce_enabled and self.config is not None:
                self._announce(intents, self.config)
            self.save_state()
            return list(self.rows.values())

    def _release_gone(self, restored: dict[str, tuple[str, ...]], intents: dict[str, ServiceIntent]) -> None:
        """Give back what services gone from the file since the last run held at remote sources.

        Runs after the restored services have their addresses again, so an
        address another service still uses (shared) is never released.
        """
        for key, ips in restored.items():
            if key in intents:
                continue
            free = [ip for ip in ips if not self.allocator.users(ip)]
            if free:
                try:
                    self.allocator.assign(key, free)
                except MetalLBError as exc:
                    log.warning("%s: cannot release %s from the state file: %s", key, ",".join(free), exc)
                self.allocator.unassign(key)
            kept = sorted(set(ips) - set(free))
            log.info(
                "%s: gone from %s; its addresses are released%s",
                key,
                self.services_path,
                f" (not {', '.join(kept)}: still in use)" if kept else "",
            )

    def _announce(self, intents: dict[str, ServiceIntent], config: Config) -> None:
        """Announce every service with addresses from this host (each has a ready endpoint here)."""
        node = self.node.name
        candidates: dict[str, ServiceView] = {}
        for key, intent in intents.items():
            row = self.rows[key]
            spec = config.pools.get(row.pool) if row.pool else None
            if spec is None or not row.addresses:
                continue
            view = ServiceView(
                key=key,
                ips=self.allocator.ips(key),
                pool=spec,
                local_traffic=intent.local_traffic,
                ready_nodes=frozenset({node}),
                has_ready_endpoints=True,
            )
            candidates[key] = view
        cluster = ClusterView(node=self.node, nodes={node: self.node}, live_speakers=frozenset({node}))
        announcements = self.announcements
        announcements.update(candidates, cluster, config)
        for key in candidates:
            if key in announcements.failed:
                self.rows[key].announced = f"announce failed: {announcements.failed[key]}"
            elif key in announcements.announced:
                self.rows[key].announced = f"{', '.join(announcements.announced[key][0])} from {node}"
            elif announcements.reasons[key] == NOT_ADVERTISED:
                pool = self.rows[key].pool
                self.rows[key].announced = f'not announced: no advertisement selects pool "{pool}"'
            else:
                self.rows[key].announced = f"not announced: {announcements.reasons[key]}"

    def follow(self, stop: threading.Event, *, poll_interval: float) -> None:
        """Sync (and print the table) when a file changes or pending services are due a retry, until *stop*."""
        # Pending services are retried with exponential backoff (1 s .. 60 s), from 1 s again after a change.
        backoff = Backoff(initial=1.0, cap=60.0, jitter=0.0)
        next_retry = time.monotonic() + backoff.next()
        while not stop.wait(poll_interval):
            changed = self.changed()
            if not (changed or (self.retry and time.monotonic() >= next_retry)):
                continue
            log.info("input files changed; syncing" if changed else "retrying pending services")
            try:
                print(table(self.sync()), flush=True)
            except MetalLBError as exc:
                log.error("%s", exc)
            except Exception as exc:  # a running standalone never dies of an edit: keep what we have
                log.error("sync failed, keeping the last good state: %s: %s", type(exc).__name__, reason(exc))
                log.debug("sync failed", exc_info=True)
            if changed or not self.retry:
                backoff.reset()
            next_retry = time.monotonic() + backoff.next()

    def status(self) -> dict[str, Any]:
        """The allocations, as served on ``/status``."""
        with self._lock:
            return {"node": self.node.name, "services": {k: attrs.asdict(r) for k, r in sorted(self.rows.items())}}

    def close(self) -> None:
        """Withdraw everything and close announcers and sources (releases no address)."""
        with self._lock:
            self.announcements.close()
            self.allocator.close()


def _addresses(value: object) -> tuple[str, ...]:
    """The addresses of a state-file entry; ValueError when they are not a list of text."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(ip, str) for ip in value):
        raise ValueError('not a metallb state: "addresses" is not a list of text')
    return tuple(value)


def table(rows: Sequence[Row]) -> str:
    """The status table: service, addresses, pool, announcement, why pending."""
    return render_table(
        ("SERVICE", "ADDRESSES", "POOL", "ANNOUNCED", "PENDING"),
        ((r.service, ",".join(r.addresses) or "<pending>", r.pool or "-", r.announced or "-", r.pending) for r in rows),
    )


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT (or once with --once)."""
    app = Standalone(
        config_path=args.config,
        services_path=args.services,
        node=args.node,
        state_path=args.state,
        interfaces=parse_interfaces(args.interfaces),
        announce=not (args.no_announce or args.once),
    )
    try:
        app.load_config()
        app.restore_state()
        app.changed()
        rows = app.sync()
        if app.services_error:  # at start there are no last good services to keep
            raise MetalLBError(app.services_error)
    except MetalLBError as exc:
        print(f"metallb standalone: {exc}", file=sys.stderr)
        app.close()
        return 1
    print(table(rows), flush=True)
    if args.once:
        app.close()
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    if args.metrics_port:
        server = MetricsServer(app.registry, host=args.metrics_host, port=args.metrics_port, status=app.status).start()
        log.info("serving /metrics and /status on %s:%d", args.metrics_host, server.port)
    try:
        app.follow(stop, poll_interval=args.poll_interval)
    finally:
        app.close()
        if server is not None:
            server.stop()
    log.info("stopped; every announcement withdrawn")
    return 0
