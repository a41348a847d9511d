"""A running standalone, controller or speaker never dies of a bad edit: it keeps the last good config and says so."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from metallb.allocator.testing import wait_for

NS = "metallb-system"
CONFIG = """
address-pools:
- name: main
  protocol: layer2
  addresses: [192.0.2.10-192.0.2.13]
"""
#: The good config the tests end with: one pool more.
NEW_CONFIG = CONFIG + "- name: extra\n  protocol: layer2\n  addresses: [203.0.113.0/28]\n"


def alias_bomb(levels: int) -> str:
    anchors = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"&{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(levels)]
    return "peers:\n- my-asn: [" + ", ".join(anchors) + "]\n"


#: Config texts of every class of issue 11, and plain mistakes.
HOSTILE_CONFIGS: list[str] = [
    "address-pools: [oops\n",
    "peers: " + "[" * 3000 + "]" * 3000,
    alias_bomb(8),
    "peers:\n- {my-asn: 1, peer-asn: 2, peer-address: 192.0.2.1, hold-time: " + "9" * 400 + "s}\n",
    "peers:\n- my-asn: " + "9" * 5000 + "\n",
    "peers: !!str {a: b}\n",
    "peers: !!map abc\n",
    "name: 2001-13-45\n",
    "peers: \x00\n",
    "address-pools: &a [*a]\n",
    CONFIG + "- name: main\n  protocol: layer2\n  addresses: [198.51.100.0/30]\n",  # a duplicate pool
    "just text\n",
    "- a\n- b\n",
]
#: Valid configs that would take away an address in use: the controller (and standalone) refuse them. The
#: speaker refuses them only while it announces that address, as MetalLB's does.
ORPHANING = [CONFIG.replace("192.0.2.10-192.0.2.13", "198.51.100.0/30"), ""]
#: Services files standalone must refuse.
HOSTILE_SERVICES: list[str | bytes] = [
    "kind: Service\nmetadata: [\n",
    alias_bomb(8).replace("peers", "items"),
    "just text\n",
    "- a\n- b\n",
    "kind: Service\nmetadata: [a]\nspec: {type: LoadBalancer}\n",
    "kind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer, ports: [[80]]}\n",
    "kind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer, ports: [{port: x}]}\n",
    "kind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer, ipFamilies: [{a: b}]}\n",
    "kind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\nstatus: [a]\n",
    b"kind: Service\nmetadata: {name: caf\xe9}\n",
    "a: " + "[" * 1000 + "]" * 1000,
]
#: ConfigMap ``data`` the API server would never store, but a controller must survive all the same.
HOSTILE_DATA: list[object] = [
    *({"config": text} for text in HOSTILE_CONFIGS),
    ["config", CONFIG],
    "config",
    {"config": ["a"]},
    {"config": {"address-pools": []}},
    {"config": 7},
    {"config": None},
    {},
    None,
]


def service(name: str, extra: str = "") -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n{extra}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def metric(base: str, name: str) -> float | None:
    """One unlabelled sample from ``/metrics``, or None while it is absent."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", get(base + "/metrics"), re.MULTILINE)
    return float(found.group(1)) if found else None


class Process:
    """A metallb command in its own process, its stderr collected line by line."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metallb.operator", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env={**os.environ, "PYTHONSAFEPATH": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def errors(self) -> list[str]:
        return [line for line in self.lines if " ERROR " in line]

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)


def stale_cycle(base: str, write_good: Any, write_bad: Any, process: Process, what: object) -> None:
    """Good then bad: stale goes 0 then 1, so the bad edit was surely read; the process lives on."""
    write_good()
    wait_for(lambda: metric(base, "metallb_k8s_client_config_stale_bool") == 0.0, ignore=(OSError,))
    errors = len(process.errors())
    write_bad()
    shown = repr(what)[:100]
    try:
        wait_for(lambda: metric(base, "metallb_k8s_client_config_stale_bool") == 1.0, ignore=(OSError,), what=shown)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last lines:\n" + "\n".join(process.lines[-10:])) from None
    assert process.alive(), "\n".join(process.lines[-20:])
    wait_for(lambda: len(process.errors()) > errors, what="an error line")
    time.sleep(0.3)  # one line per edit: no second one comes
    new = process.errors()[errors:]
    assert len(new) == 1 and "not applied" in new[0], new


# -- standalone ---------------------------------------------------------------------------


@pytest.fixture(name="standalone")
def _standalone(tmp_path: Path) -> Iterator[tuple[Path, str, Process]]:
    """A running standalone (no announcing) on CONFIG with Services a and b."""
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "services.yaml").write_text(service("a") + service("b"))
    port = free_port()
    process = Process(
        [
            "standalone", "--no-announce", "--node", "n1", "--poll-interval", "0.05", "--metrics-port", str(port),
            "--config", str(tmp_path / "config.yaml"), "--services", str(tmp_path / "services.yaml"),
            "--state", str(tmp_path / "state.json"),
        ]
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(json.loads(get(base + "/status"))["services"]) == 2, ignore=(OSError,))
        yield tmp_path, base, process
    finally:
        process.stop()
    assert not [line for line in process.lines if "Traceback" in line], "\n".join(process.lines)


_mtimes = itertools.count(1)


def overwrite(path: Path, content: str | bytes) -> None:
    """Replace *path* by *content* at once, with a new modification time (standalone polls mtimes)."""
    new = path.with_suffix(".new")
    new.write_bytes(content if isinstance(content, bytes) else content.encode())
    stamp = time.time() + next(_mtimes)
    os.utime(new, (stamp, stamp))
    os.replace(new, path)


class TestStandalone:
    """Each hostile edit of a file a running standalone reads keeps the last good one, stale, in one line."""

    def test_hostile_configs(self, standalone: tuple[Path, str, Process]) -> None:
        """The status stays, stale is 1 after each hostile config; a good config then applies."""
        tmp, base, process = standalone
        before = json.loads(get(base + "/status"))
        for text in HOSTILE_CONFIGS + ORPHANING:
            stale_cycle(
                base,
                lambda: overwrite(tmp / "config.yaml", CONFIG),
                lambda text=text: overwrite(tmp / "config.yaml", text),
                process,
                text,
            )
            assert json.loads(get(base + "/status")) == before, text[:80]
        overwrite(tmp / "config.yaml", NEW_CONFIG)
        wait_for(lambda: 'metallb_allocator_addresses_total{pool="extra"} 16.0' in get(base + "/metrics"))
        assert metric(base, "metallb_k8s_client_config_stale_bool") == 0.0
        assert json.loads(get(base + "/status")) == before

    def test_hostile_services_files(self, standalone: tuple[Path, str, Process]) -> None:
        """The status stays, stale is 1 after each hostile services file; a good one then applies."""
        tmp, base, process = standalone
        before = json.loads(get(base + "/status"))
        good = service("a") + service("b")
        for content in HOSTILE_SERVICES:
            stale_cycle(
                base,
                lambda: overwrite(tmp / "services.yaml", good),
                lambda content=content: overwrite(tmp / "services.yaml", content),
                process,
                content,
            )
            assert json.loads(get(base + "/status")) == before, content[:80]
        overwrite(tmp / "services.yaml", good + service("c"))
        status = wait_for(lambda: json.loads(get(base + "/status"))["services"].get("default/c"))
        assert status["addresses"] == ["192.0.2.12"]
        assert metric(base, "metallb_k8s_client_config_stale_bool") == 0.0

    def test_stale_until_both_files_are_good(self, standalone: tuple[Path, str, Process]) -> None:
        """A bad config and a bad services file: stale stays 1 until the last of the two is fixed."""
        tmp, base, process = standalone
        overwrite(tmp / "config.yaml", "peers: !!str {a: b}\n")
        overwrite(tmp / "services.yaml", "just text\n")
        wait_for(lambda: metric(base, "metallb_k8s_client_config_stale_bool") == 1.0)
        wait_for(lambda: any("services file" in line for line in process.errors()))
        errors = len(process.errors())
        overwrite(tmp / "config.yaml", CONFIG)  # read, and then the services file again: an error line
        wait_for(lambda: len(process.errors()) > errors and "services file" in process.errors()[-1])
        assert metric(base, "metallb_k8s_client_config_stale_bool") == 1.0
        overwrite(tmp / "services.yaml", service("a") + service("b"))
        wait_for(lambda: metric(base, "metallb_k8s_client_config_stale_bool") == 0.0)


# -- controller and speaker, against the API emulator ----------------------------------------


def configmap(data: object) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": NS}, "data": data}


def ingress(kube: Any, name: str) -> list[str]:
    obj = kube.get("services", "default", name) or {}
    return [i.get("ip") for i in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()]


def put_service(kube: Any, name: str, *, ip: str = "", annotations: dict[str, str] | None = None) -> None:
    kube.put_object(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
            **({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}} if ip else {}),
        }
    )


@pytest.fixture(name="cluster")
def _cluster(kube: Any, tmp_path: Path) -> tuple[Any, Path]:
    """The emulator with the namespace, node n1, the good ConfigMap; and a kubeconfig for it."""
    kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kube.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    kube.put_object(configmap({"config": CONFIG}))
    return kube, kube.write_kubeconfig(tmp_path / "kubeconfig")


def hostile_configmaps(kube: Any, base: str, process: Process, extra: list[object]) -> None:
    """Each hostile ConfigMap in turn, after the good one: stale, one error line, the process alive."""
    for data in HOSTILE_DATA + extra:
        stale_cycle(
            base,
            lambda: kube.put_object(configmap({"config": CONFIG})),
            lambda data=data: kube.put_object(configmap(data)),
            process,
            data,
        )


class TestController:
    """The controller keeps allocating from the last good config whatever the ConfigMap holds."""

    def test_hostile_configmaps(self, cluster: tuple[Any, Path]) -> None:
        """Stale after each hostile ConfigMap, addresses kept, new Services served from the last good config."""
        kube, kubeconfig = cluster
        put_service(kube, "a")
        port = free_port()
        argv = ["controller", "--kubeconfig", str(kubeconfig), "--namespace", NS, "--metrics-port", str(port)]
        process = Process([*argv, "--lease-duration", "1"])
        base = f"http://127.0.0.1:{port}"
        try:
            assert wait_for(lambda: ingress(kube, "a"), timeout=30) == ["192.0.2.10"]
            hostile_configmaps(kube, base, process, [{"config": text} for text in ORPHANING])
            kube.put_object(configmap({"config": "peers: !!str {a: b}\n"}))  # end on a hostile one
            wait_for(lambda: metric(base, "metallb_k8s_client_config_stale_bool") == 1.0)
            put_service(kube, "b")
            assert wait_for(lambda: ingress(kube, "b")) == ["192.0.2.11"]  # the last good config
            assert ingress(kube, "a") == ["192.0.2.10"]
            kube.put_object(configmap({"config": NEW_CONFIG}))
            wait_for(lambda: metric(base, "metallb_k8s_client_config_stale_bool") == 0.0)
            put_service(kube, "c", annotations={"metallb.io/address-pool": "extra"})
            assert wait_for(lambda: ingress(kube, "c")) == ["203.0.113.0"]
        finally:
            process.stop()
        assert not [line for line in process.lines if "Traceback" in line], "\n".join(process.lines)


class TestSpeaker:
    """The speaker keeps its last good config whatever the ConfigMap holds."""

    def test_hostile_configmaps(self, cluster: tuple[Any, Path]) -> None:
        """Stale after each hostile ConfigMap, and its view of which addresses are in a pool unchanged."""
        kube, kubeconfig = cluster
        put_service(kube, "a", ip="192.0.2.10")  # in a pool: not announced for want of endpoints
        put_service(kube, "b", ip="203.0.113.5")  # in no pool yet
        port = free_port()
        argv = ["speaker", "--kubeconfig", str(kubeconfig), "--namespace", NS, "--node-name", "n1"]
        process = Process([*argv, "--metrics-port", str(port)])
        base = f"http://127.0.0.1:{port}"
        expected = {"default/a": "noEndpoints", "default/b": "ipNotAllowed"}
        try:
            assert wait_for(lambda: json.loads(get(base + "/status"))["not_announced"] == expected, ignore=(OSError,))
            assert metric(base, "metallb_k8s_client_config_loaded_bool") == 1.0
            hostile_configmaps(kube, base, process, [])
            put_service(kube, "c", ip="192.0.2.11")  # wakes the sync: it still sees the last good pools
            expected["default/c"] = "noEndpoints"
            assert wait_for(lambda: json.loads(get(base + "/status"))["not_announced"] == expected)
            kube.put_object(configmap({"config": NEW_CONFIG}))
            expected["default/b"] = "noEndpoints"
            assert wait_for(lambda: json.loads(get(base + "/status"))["not_announced"] == expected)
            assert metric(base, "metallb_k8s_client_config_stale_bool") == 0.0
        finally:
            process.stop()
        assert not [line for line in process.lines if "Traceback" in line], "\n".join(process.lines)
