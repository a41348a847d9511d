"""``metallb address-service``: its options, and the run that wires backend, service and HTTP server.

The ``metallb`` command line adds this command through the plugin's
``metallb_add_commands`` and sets up logging (``--log-format``,
``--log-level``) before :func:`run`. Only the standard library is imported at
module level, so building the parser costs nothing; :func:`run` imports the
server's dependencies.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING

from metallb.plugins.address_service.api import Backend, BackendOptions

if TYPE_CHECKING:
    import pluggy
    from metallb.plugins.address_service.http import HttpServer, Limits
    from metallb.plugins.address_service.kube import LeaderElection
    from metallb.plugins.address_service.service import AddressService
    from metallb.plugins.address_service.store import LeaseStore

__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_arguments", "make_backend", "run"]

HELP = "run the bundled address service (memory, dhcp or dhcpv6 backend)"
DESCRIPTION = (
    "The bundled address service: an HTTP server that leases addresses to MetalLB pools "
    "(DHCPManager's v1 protocol plus extensions), from memory or from a DHCP server."
)
EPILOG = """\
examples:
  # addresses from fixed ranges, for tests and small sites
  metallb address-service --backend memory --cidr 192.0.2.0/24 --state-file /var/lib/metallb/as.json

  # real DHCP leases on eth1, one derived MAC per service, token from a file
  metallb address-service --backend dhcp --interface eth1 --cidr 192.0.2.0/24 \\
      --derive-macs --state-file /var/lib/metallb/as.json --auth-token-file /etc/metallb/token \\
      --listen 0.0.0.0:8000

  # JSON logs (a global option of metallb, before the command)
  metallb --log-format json address-service --backend memory --cidr 192.0.2.0/24

  # register MACs for leases (networks that allow only known MACs)
  curl -X POST -d '{"macs": ["02:00:5e:10:00:01"]}' http://127.0.0.1:8000/v1/mac

  # the token may also come from METALLB_ADDRESS_SERVICE_TOKEN
"""
#: The extra that brings the server's dependencies.
EXTRA = "address-services"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``metallb address-service``."""
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="address to serve on (default: 127.0.0.1:8000; port 0 picks one)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        help="where addresses come from: memory, dhcp, dhcpv6, or a plugin's backend (default: memory); "
        "repeat for one backend per family (--backend dhcp --backend dhcpv6)",
    )
    parser.add_argument(
        "--cidr",
        action="append",
        default=[],
        help="network addresses come from (repeat; memory: required; dhcp: reported by /v1/config)",
    )
    parser.add_argument(
        "--state-file",
        default="",
        metavar="PATH",
        help="JSON file holding leases and MACs across restarts (put it on a volume)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long POST /v1/ip waits for a lease (default: 10)",
    )
    parser.add_argument(
        "--auth-token-file",
        default="",
        metavar="PATH",
        help="require this X-Auth-Token on /v1/* (else METALLB_ADDRESS_SERVICE_TOKEN, else none)",
    )
    parser.add_argument(
        "--tls-cert", default="", metavar="PATH", help="serve HTTPS with this certificate (PEM, chain included)"
    )
    parser.add_argument("--tls-key", default="", metavar="PATH", help="private key of --tls-cert")
    parser.add_argument(
        "--require-owner",
        action="store_true",
        help='DELETE /v1/ip must name the lease\'s "service" or "id" (else 409); '
        "by default, as in DHCPManager, any token holder may release any address",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a request must arrive whole, and its answer be taken, within this (default: 10)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="close a connection without a request in progress after this (default: 5)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=256,
        metavar="N",
        help="open connections at most; a new one then closes the longest idle, or gets 503 (default: 256)",
    )
    parser.add_argument("--mac", action="append", default=[], help="put this MAC in the pool at start (repeat)")
    ha = parser.add_argument_group("leases in Kubernetes, several replicas (instead of --state-file)")
    ha.add_argument(
        "--kube-leases",
        action="store_true",
        help="keep leases as AddressLease objects and serve only while holding the leader Lease",
    )
    ha.add_argument("--kubeconfig", default="", help="kubeconfig file (default: KUBECONFIG, else the pod's account)")
    ha.add_argument(
        "--namespace",
        default=os.environ.get("METALLB_NAMESPACE", "metallb-system"),
        help="where the AddressLeases and the leader Lease live (default: METALLB_NAMESPACE or metallb-system)",
    )
    ha.add_argument(
        "--instance",
        default="metallb-address-service",
        help="name of this service: the leader Lease's name and the AddressLeases' label (default: %(default)s)",
    )
    ha.add_argument(
        "--identity",
        default="",
        help="this replica's name in the leader Lease (default: POD_NAME, else host name and process id)",
    )
    ha.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="a leader that stops renewing is replaced after this (default: 15)",
    )
    parser.add_argument(
        "--derive-macs",
        action="store_true",
        help="when the MAC pool is empty, derive a locally administered MAC from each service name",
    )
    dhcp = parser.add_argument_group("dhcp backend")
    dhcp.add_argument("--interface", default="", help="interface to send DHCP on (required for dhcp)")
    dhcp.add_argument(
        "--netns",
        default="",
        help="open the DHCP socket in this network namespace (/run/netns/NAME); HTTP stays where the process runs",
    )
    dhcp.add_argument(
        "--offer-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="wait for a DHCPOFFER (default: 5, above the 3 s ping check of servers)",
    )
    dhcp.add_argument(
        "--renew-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="renew this long after each ACK instead of at T1 (tests; default: T1)",
    )


def make_backend(kind: str, options: BackendOptions, *, plugin_manager: pluggy.PluginManager | None = None) -> Backend:
    """The backend *kind*, from whichever plugin builds it (``metallb_make_backend``).

    Raises :class:`~metallb.allocator.PluginError` when no plugin builds
    *kind*, its dependencies are missing, or a plugin returns no
    :class:`Backend`, and ``ValueError`` naming *kind* when the options do
    not suit it.
    """
    from metallb.allocator import PluginError, default_plugin_manager

    pm = plugin_manager if plugin_manager is not None else default_plugin_manager()
    try:
        backend = pm.hook.metallb_make_backend(kind=kind, options=options)
    except ValueError as exc:
        raise ValueError(f"backend {kind!r}: {exc}") from None
    if backend is None:
        raise PluginError(f"unknown backend {kind!r}: built in are memory, dhcp and dhcpv6; plugins may add more")
    if not isinstance(backend, Backend):
        raise PluginError(f"backend {kind!r}: the plugin returned a {type(backend).__name__}, not a Backend")
    return backend


def _backends(args: argparse.Namespace) -> Backend:
    """The ``--backend`` (one), or one per family behind :class:`~.api.FamilyBackends`."""
    from metallb.plugins.address_service.api import FamilyBackends

    kinds = list(dict.fromkeys(args.backend or ["memory"]))
    options = _backend_options(args)
    backends = [make_backend(kind, options) for kind in kinds]
    return backends[0] if len(backends) == 1 else FamilyBackends(backends)


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise ValueError(f"--listen {text!r}: write HOST:PORT") from None


def _backend_options(args: argparse.Namespace) -> BackendOptions:
    return BackendOptions(
        cidrs=args.cidr,
        interface=args.interface,
        netns=args.netns,
        offer_timeout=args.offer_timeout,
        renew_after=args.renew_after or None,
    )


def _limits(args: argparse.Namespace) -> Limits:
    from metallb.plugins.address_service.http import Limits

    for option, value in (("--read-timeout", args.read_timeout), ("--idle-timeout", args.idle_timeout)):
        if not 0 < value < float("inf"):
            raise ValueError(f"{option} {value:g}: must be a number of seconds above 0")
    if args.max_connections < 1:
        raise ValueError(f"--max-connections {args.max_connections}: must be at least 1")
    return Limits(read_timeout=args.read_timeout, idle_timeout=args.idle_timeout, max_connections=args.max_connections)


def _raise_descriptor_limit() -> None:
    """Lift the soft descriptor limit to the hard one (as Go programs do): connections need descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _token(args: argparse.Namespace) -> str:
    if args.auth_token_file:
        try:
            with open(args.auth_token_file, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ValueError(f"--auth-token-file {args.auth_token_file!r}: {exc.strerror}") from None
    return os.environ.get("METALLB_ADDRESS_SERVICE_TOKEN", "").strip()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    try:
        from metallb.allocator import PluginError
        from metallb.plugins.address_service.http import make_http_server
        from metallb.plugins.address_service.service import AddressService
        from metallb.plugins.address_service.store import StateFile
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
            disable_created_metrics,
        )
    except ImportError as exc:
        from metallb.plugins.address_service.plugin import missing_dependency

        module = missing_dependency(exc)
        print(
            f"metallb address-service: needs the Python module {module!r}, which is not installed: "
            f"pip install 'metallb[{EXTRA}]'",
            file=sys.stderr,
        )
        return 1
    try:
        host, port = _listen_address(args.listen)
        limits = _limits(args)
        token = _token(args)
        backend = _backends(args)
    except (PluginError, ValueError) as exc:  # a bad option, no such backend, or its dependencies missing
        print(exc, file=sys.stderr)
        return 2
    if args.kube_leases and args.state_file:
        print("--kube-leases and --state-file exclude each other: leases live in one place", file=sys.stderr)
        return 2
    election = None
    store: LeaseStore | None = StateFile(args.state_file) if args.state_file else None
    if args.kube_leases:
        try:
            store, election = _kube(args)
        except (ImportError, RuntimeError) as exc:
            print(f"metallb address-service --kube-leases: {exc}", file=sys.stderr)
            return 1
    service = AddressService(
        backend=backend,
        store=store,
        macs=args.mac,
        derive_macs=args.derive_macs,
        request_timeout=args.request_timeout,
        require_owner=args.require_owner,
    )
    service.deferred_start = election is not None
    if election is None:
        try:
            service.start()
        except OSError as exc:  # typically: no CAP_NET_RAW, or no such interface or namespace
            print(f"cannot start the {backend.kind} backend: {exc}", file=sys.stderr)
            return 1
    disable_created_metrics()  # type: ignore[no-untyped-call]  # MetalLB's (Go's) exposition has no *_created series
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    _raise_descriptor_limit()
    try:
        httpd = make_http_server(
            service,
            host=host,
            port=port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            auth_token=token,
            registry=registry,
            limits=limits,
        )
    except OSError as exc:  # port taken, unreadable certificate
        print(f"cannot serve on {args.listen}: {exc}", file=sys.stderr)
        if service.started:
            service.close()
        return 1
    return _serve(service, httpd, election)


def _kube(args: argparse.Namespace) -> tuple[LeaseStore, LeaderElection]:
    """The AddressLease store and the leader election of ``--kube-leases``."""
    try:
        from metallb.plugins.address_service import kube
    except ImportError as exc:
        from metallb.plugins.address_service.plugin import missing_dependency

        raise ImportError(
            f"needs {missing_dependency(exc)}, which is not installed: pip install 'metallb[all]'"
        ) from None
    api = kube.api_client(args.kubeconfig)
    identity = args.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    store = kube.KubeLeaseStore(api, namespace=args.namespace, instance=args.instance)
    election = kube.LeaderElection(
        api,
        namespace=args.namespace,
        name=args.instance,
        identity=identity,
        duration=args.lease_duration,
        renew=max(0.2, args.lease_duration / 3),
    )
    return store, election


def _serve(service: AddressService, httpd: HttpServer, election: LeaderElection | None = None) -> int:
    """Serve until SIGTERM or SIGINT (or, with an election, until leadership is lost), releasing nothing."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    httpd.start_thread()
    log.info("address service (%s backend) listening on %s", service.backend.kind, httpd.url)
    print(f"listening on {httpd.url}", flush=True)  # readiness line for scripts and tests
    status = 0
    if election is not None:
        threading.Thread(target=election.run, args=(stop,), name="leader-election", daemon=True).start()
        log.info("waiting to lead (%s/%s)", election.namespace, election.name)
        while not stop.is_set() and not election.held.wait(0.1):
            pass
        if not stop.is_set():
            try:
                service.start()  # the leases of the last leader, each renewed at once
            except Exception as exc:  # noqa: BLE001 - the API or the backend: exit, the pod restarts
                log.error("cannot start serving: %s", exc)
                stop.set()
                status = 1
            else:
                log.info("leading: serving %d leases", len(service.leases()))
    while not stop.wait(0.2):
        if election is not None and election.lost.is_set():
            status = 1  # another replica may lead now: stop at once, never serve beside it
            break
    log.info("stopping: leases stay and resume at the next start")
    httpd.shutdown()
    httpd.server_close()
    if service.started:
        service.close()
    if election is not None and status == 0:
        election.release()
    return status
