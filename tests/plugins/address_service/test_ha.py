"""The bundled address service with its leases in Kubernetes, two replicas, and the leader killed mid-run.

The Kubernetes API is the project's emulator (tests/kube_emulator.py) on
loopback; the replicas are ``metallb address-service --kube-leases``
processes leasing from dnsmasq in network namespaces; a small proxy plays the
Kubernetes Service (it sends connections to the replica whose /readyz is 200).
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from metallb.allocator import Allocator, parse_config
from metallb.operator.converge import converge
from metallb.operator.service import read_service
from metallb.plugins.address_service.api import Lease
from metallb.plugins.address_service.kube import GROUP, PLURAL, VERSION, KubeLeaseStore, lease_object

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "operator" / "deploy" / "address-service" / "metallb.io_addressleases.yaml"
NS = "metallb-system"


def _emulator_module() -> Any:
    name = "metallb_tests_kube_emulator"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "kube_emulator.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def kube(tmp_path: Path) -> Any:
    """The API emulator with the metallb-system namespace and the AddressLease CRD, and a kubeconfig for it."""
    emulator = _emulator_module().KubeEmulator().start()
    api = emulator.api_client()
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    crd = yaml.safe_load(CRD.read_text())
    try:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    except ApiException as exc:  # an emulator without CRD serving: declare the resource directly
        if exc.status != 404:
            raise
        emulator.add_resource(GROUP, VERSION, PLURAL, "AddressLease")
    emulator.kubeconfig = str(emulator.write_kubeconfig(tmp_path / "kubeconfig"))
    emulator.api = api
    yield emulator
    api.close()
    emulator.stop()


class ReadyProxy:
    """A Kubernetes Service on 127.0.0.1: each new connection goes to a replica whose /readyz answers 200."""

    def __init__(self, urls: list[str]) -> None:
        self.targets = [(u.rpartition("//")[2].partition(":")[0], int(u.rpartition(":")[2])) for u in urls]
        self.ready: tuple[str, int] | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.closed = threading.Event()
        threading.Thread(target=self._probe, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()

    def _probe(self) -> None:
        while not self.closed.wait(0.05):
            ready = None
            for host, port in self.targets:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://{host}:{port}/readyz", timeout=0.5).status_code == 200:
                        ready = (host, port)
                        break
            self.ready = ready

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            target = self.ready
            try:
                if target is None:
                    raise OSError("no ready endpoint")
                upstream = socket.create_connection(target, timeout=2)
            except OSError:
                conn.close()  # like a Service without endpoints
                continue
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


class TestKubeLeaseStore:
    """AddressLeases: written on bind and release, not on renewals; read back whole."""

    def test_writes_only_what_changed_beyond_renewal(self, kube) -> None:
        """A new lease is created, a renewal writes nothing, a loss replaces it, a release deletes it."""
        store = KubeLeaseStore(kube.api, namespace=NS, instance="as")
        lease = Lease(id="l1", service="ns/a", uid="u1", ip="192.0.2.5", mac="02:00:00:00:00:01", bound=1.0,
                      expires=121.0, routers=("192.0.2.1",))  # fmt: skip
        from metallb.plugins.address_service.store import State

        store.save(State(leases=(lease,)))
        assert store.writes == 1
        renewed = Lease(**{**lease.to_json(), "bound": 61.0, "expires": 181.0})
        store.save(State(leases=(renewed,)))
        assert store.writes == 1  # a renewal is not written
        lost = Lease(**{**renewed.to_json(), "lost": True})
        store.save(State(leases=(lost,)))
        assert store.writes == 2
        (obj,) = kube.objects(PLURAL, NS)
        assert obj["spec"]["lost"] is True and obj["spec"]["routers"] == ["192.0.2.1"] and obj["spec"]["uid"] == "u1"
        again = KubeLeaseStore(kube.api, namespace=NS, instance="as").load()
        assert again.leases == (lost,)
        store.save(State())
        assert kube.objects(PLURAL, NS) == [] and store.writes == 3

    def test_objects_match_the_crd(self, kube) -> None:
        """Every spec field an AddressLease carries is declared by the CRD's schema."""
        crd = yaml.safe_load(CRD.read_text())
        declared = set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
        full = Lease(id="x", service="ns/a", ip="192.0.2.5", renew=1.0, rebind=2.0, expires=3.0)
        assert set(lease_object(full, namespace=NS, instance="as")["spec"]) <= declared


def _dnsmasq(netlab, tmp_path: Path) -> tuple[str, Path]:
    """dnsmasq on n0 (198.18.0.2/22) leasing 198.18.0.10-198.18.3.250; returns the client namespace and lease file."""
    server_ns, client_ns = netlab.ns("srv"), netlab.ns("cli")
    netlab.veth(client_ns, "c0", server_ns, "n0", mac_a="02:00:00:00:00:c0", mac_b="02:00:00:00:00:02")
    netlab.run(server_ns, "ip addr add 198.18.0.2/22 dev n0")
    leases, pid = tmp_path / "leases", tmp_path / "dnsmasq.pid"
    netlab.popen(server_ns, [
        "dnsmasq", "--keep-in-foreground", f"--log-facility={tmp_path}/dnsmasq.log", "--port=0", "--no-resolv",
        "--no-hosts", "--user=root", "--no-ping", "--dhcp-authoritative", "--interface=n0", "--bind-interfaces",
        "--dhcp-range=198.18.0.10,198.18.3.250,255.255.252.0,10m", f"--dhcp-leasefile={leases}", f"--pid-file={pid}",
    ])  # fmt: skip
    deadline = time.monotonic() + 5
    while not pid.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pid.exists(), "dnsmasq did not start"
    return client_ns, leases


class TestFailover:
    """Two replicas; the leader is SIGKILLed during 500 allocations."""

    @pytest.mark.slow
    def test_leader_killed_during_500_allocations(self, kube, netlab, start_server, tmp_path, helpers) -> None:
        """Afterwards /v1/status, the AddressLeases, dnsmasq's leases and the Services' status agree exactly."""
        client_ns, leasefile = _dnsmasq(netlab, tmp_path)
        args = (
            "--backend", "dhcp", "--interface", "c0", "--netns", client_ns, "--cidr", "198.18.0.0/22",
            "--derive-macs", "--kube-leases", "--kubeconfig", kube.kubeconfig, "--namespace", NS,
            "--lease-duration", "2",
        )  # fmt: skip
        replicas = [start_server(*args, "--identity", f"r{n}") for n in (1, 2)]
        proxy = ReadyProxy([r.url for r in replicas])
        helpers.wait_for(lambda: proxy.ready is not None, 10, "a leader")
        core = client.CoreV1Api(kube.api)
        count = 500
        core.create_namespace({"metadata": {"name": "apps"}})
        for n in range(count):
            kube.put_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{n}", "namespace": "apps"},
                             "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})  # fmt: skip
        config = parse_config(
            f"address-services:\n- name: dhcp\n  url: {proxy.url}\n  protocol: layer2\n  cidrs: [198.18.0.0/22]\n"
        )
        alloc = Allocator(config=helpers.with_options(config, backoff=0.05))
        done: list[str] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def converge_all(worker: int) -> None:
            try:
                for n in range(worker, count, 8):
                    obj = kube.get("services", "apps", f"s{n}")  # with its uid, as the informer has it
                    deadline = time.monotonic() + 60
                    while True:
                        outcome = converge(read_service(obj), alloc)
                        if outcome.ingress:
                            break
                        assert time.monotonic() < deadline, outcome.pending
                        time.sleep(0.1)  # the controller's requeue
                    ingress = [{"ip": ip} for ip in outcome.ingress]
                    body = {"status": {"loadBalancer": {"ingress": ingress}}}
                    core.patch_namespaced_service_status(f"s{n}", "apps", body)
                    with lock:
                        done.append(f"apps/s{n}")
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        workers = [threading.Thread(target=converge_all, args=(w,)) for w in range(8)]
        for t in workers:
            t.start()
        helpers.wait_for(lambda: len(done) >= count * 2 // 5, 120, "the first 200 allocations")
        leader = next(r for r in replicas if r.url.endswith(f":{proxy.ready[1]}"))
        leader.proc.kill()
        killed = time.monotonic()
        serving_again = None
        while time.monotonic() - killed < 30:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{proxy.url}/v1/status", timeout=2).status_code == 200:
                    serving_again = time.monotonic() - killed
                    break
            time.sleep(0.02)
        for t in workers:
            t.join(timeout=180)
        assert not errors, errors[0]
        assert len(done) == count
        print(f"\nfailover: serving again {serving_again:.2f} s after SIGKILL of the leader")
        assert serving_again is not None and serving_again < 5.0

        status = httpx.get(f"{proxy.url}/v1/status", timeout=10).json()["Allocations"]
        from_status = {a["Lease"]["FixedAddress"]: a["Service"] for a in status if not a["Lost"]}
        stored = {o["spec"]["ip"]: o["spec"]["service"] for o in kube.objects(PLURAL, NS)}
        leased = helpers.read_leases(leasefile)
        dnsmasq = {ip: f"apps/{hostname.rpartition('-apps')[0]}" for ip, (_, _, hostname, _) in leased.items()}
        services = {
            i["ip"]: f"apps/{s['metadata']['name']}"
            for s in kube.objects("services", "apps")
            for i in (s.get("status") or {}).get("loadBalancer", {}).get("ingress") or ()
        }
        assert len(services) == count
        assert from_status == stored == dnsmasq == services
        alloc.close()
        proxy.close()
