"""The bundled address service over HTTP: the compatible core, our extensions, metrics, state, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

COMMAND = (sys.executable, "-m", "metallb.operator")


class TestIpEndpoint:
    """POST and DELETE /v1/ip."""

    def test_new_lease_answer(self, bundled) -> None:
        """A new lease is 201 with the fork's keys (ip, id, status) plus service and mac."""
        bundled.service.derive_macs = True
        resp = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a"})
        body = resp.json()
        assert resp.status_code == 201 and resp.headers["content-type"] == "application/json"
        assert resp.content.endswith(b"}\n")  # Go's encoder adds a newline; so do we
        assert body["status"] == "success" and body["ip"] == "192.0.2.1" and body["service"] == "ns/a"
        assert len(body["id"]) == 36 and int(body["mac"][:2], 16) & 0x03 == 0x02

    def test_post_is_idempotent_per_service(self, bundled) -> None:
        """A repeated POST for the same service returns the same lease with 200."""
        first = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a"}).json()
        again = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a"})
        assert again.status_code == 200 and again.json()["id"] == first["id"] and again.json()["ip"] == first["ip"]
        assert len(bundled.service.leases()) == 1

    def test_new_uid_gets_a_new_lease(self, bundled) -> None:
        """The same name with another Service uid is another Service: it gets its own lease."""
        first = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a", "uid": "u1"}).json()
        second = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a", "uid": "u2"})
        assert second.status_code == 201 and second.json()["ip"] != first["ip"]

    def test_requested_ip(self, bundled) -> None:
        """POST may name the wanted ip; a taken one is 409."""
        ok = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a", "ip": "192.0.2.99"})
        taken = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/b", "ip": "192.0.2.99"})
        assert ok.status_code == 201 and ok.json()["ip"] == "192.0.2.99"
        assert taken.status_code == 409 and taken.json()["status"] == "error" and taken.json()["ip"] == ""
        again = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a", "ip": "192.0.2.99"})
        assert again.status_code == 200 and again.json()["id"] == ok.json()["id"]

    @pytest.mark.parametrize(
        ("body", "says"),
        [
            (b"not json", "not JSON"),
            (b'{"service": "no-slash"}', "namespace/name"),
            (b'{"service": "ns/a", "ip": "x"}', "IPv4"),
        ],
    )
    def test_bad_request(self, bundled, body: bytes, says: str) -> None:
        """A bad body is 400 with status "error" and a message; nothing is leased."""
        resp = httpx.post(f"{bundled.url}/v1/ip", content=body)
        assert resp.status_code == 400 and resp.json()["status"] == "error" and says in resp.json()["message"]
        assert bundled.service.leases() == []

    def test_exhausted(self, make_bundled) -> None:
        """When no address is left the answer is 503 with status "error"."""
        server = make_bundled(cidrs=("192.0.2.0/31",))
        for name in ("a", "b"):
            assert httpx.post(f"{server.url}/v1/ip", json={"service": f"ns/{name}"}).status_code == 201
        resp = httpx.post(f"{server.url}/v1/ip", json={"service": "ns/c"})
        assert resp.status_code == 503 and resp.json()["status"] == "error" and "are leased" in resp.json()["message"]

    def test_delete(self, bundled) -> None:
        """DELETE releases; a second DELETE of the same ip is 404 with DHCPManager's body."""
        lease = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a"}).json()
        done = httpx.request("DELETE", f"{bundled.url}/v1/ip", json={"ip": lease["ip"]})
        again = httpx.request("DELETE", f"{bundled.url}/v1/ip", json={"ip": lease["ip"]})
        assert done.status_code == 200 and done.json() == {"ip": lease["ip"], "id": lease["id"], "status": "success"}
        assert again.status_code == 404 and again.json()["id"] == "" and again.json()["status"] == "error"

    def test_delete_checks_the_owner(self, bundled) -> None:
        """A DELETE naming another service or lease id is 409 and releases nothing."""
        lease = httpx.post(f"{bundled.url}/v1/ip", json={"service": "ns/a"}).json()
        other = httpx.request("DELETE", f"{bundled.url}/v1/ip", json={"ip": lease["ip"], "service": "ns/b"})
        stale = httpx.request("DELETE", f"{bundled.url}/v1/ip", json={"ip": lease["ip"], "id": "old-id"})
        assert other.status_code == 409 and stale.status_code == 409
        assert [x.ip for x in bundled.service.leases()] == [lease["ip"]]

    def test_delete_invalid_ip(self, bundled) -> None:
        """An unparsable ip is 400 with ip "invalid", as DHCPManager words it."""
        resp = httpx.request("DELETE", f"{bundled.url}/v1/ip", json={"ip": "nonsense"})
        assert resp.status_code == 400 and resp.json()["ip"] == "invalid"


class TestOtherEndpoints:
    """Status, config, MACs, router answers, auth, health and metrics."""

    def test_status_shape(self, bundled) -> None:
        """/v1/status has DHCPManager's capitalised shape with Hostname name.namespace, plus Service."""
        bundled.service.derive_macs = True
        httpx.post(f"{bundled.url}/v1/ip", json={"service": "web-ns/front"})
        data = httpx.get(f"{bundled.url}/v1/status").json()
        (alloc,) = data["Allocations"]
        assert alloc["Hostname"] == "front.web-ns" and alloc["State"] == 1 and alloc["Service"] == "web-ns/front"
        assert alloc["Lease"]["FixedAddress"] == "192.0.2.1" and alloc["Lease"]["Expire"] == "0001-01-01T00:00:00Z"
        assert alloc["Interface"]["HardwareAddr"] == alloc["MAC"] and data["AvailableMACs"] is None

    def test_config_lists_cidrs_and_extensions(self, bundled) -> None:
        """/v1/config has the historical cidrs key and our extension list."""
        data = httpx.get(f"{bundled.url}/v1/config").json()
        assert data["cidrs"] == ["192.0.2.0/24"] and "idempotent-post" in data["extensions"]

    def test_mac_pool(self, bundled) -> None:
        """POST /v1/mac adds parsable MACs (Go's spellings), rejects the rest, and DELETE removes them."""
        resp = httpx.post(
            f"{bundled.url}/v1/mac",
            json={"MACs": ["02-00-5E-10-00-01", "0200.5e10.0002", "02.00.5e.10.00.03", "03:00:00:00:00:01"]},
        )
        assert resp.status_code == 200
        assert resp.json()["Status"] == "error" and resp.json()["Rejected"] == [
            "02.00.5e.10.00.03",
            "03:00:00:00:00:01",
        ]
        assert "multicast" in resp.json()["Reasons"]["03:00:00:00:00:01"]
        assert httpx.get(f"{bundled.url}/v1/status").json()["AvailableMACs"] == [
            "02:00:5e:10:00:01",
            "02:00:5e:10:00:02",
        ]
        removed = httpx.request("DELETE", f"{bundled.url}/v1/mac", json={"macs": ["02:00:5e:10:00:01"]})
        assert removed.json() == {"Status": "success", "Unprocessed": None, "Reasons": {}}
        assert bundled.service.available_macs() == ["02:00:5e:10:00:02"]

    def test_router_answers(self, bundled) -> None:
        """Unknown paths get gorilla/mux's text 404 (so clients see /v1/config as optional); wrong methods 405."""
        missing = httpx.get(f"{bundled.url}/v2/ip")
        wrong = httpx.get(f"{bundled.url}/v1/ip")
        assert missing.status_code == 404 and missing.text == "404 page not found\n"
        assert wrong.status_code == 405 and wrong.content == b""

    def test_auth_token(self, make_bundled) -> None:
        """With a token, /v1/* needs X-Auth-Token (401 otherwise); health and metrics stay open."""
        server = make_bundled(auth_token="s3cret")
        denied = httpx.post(f"{server.url}/v1/ip", json={"service": "ns/a"})
        allowed = httpx.post(f"{server.url}/v1/ip", json={"service": "ns/a"}, headers={"X-Auth-Token": "s3cret"})
        assert denied.status_code == 401 and denied.json()["status"] == "unauthorized"
        assert allowed.status_code == 201
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.get(f"{server.url}/metrics").status_code == 200

    def test_metrics(self, bundled) -> None:
        """Prometheus metrics count requests by code and leases by state."""
        with httpx.Client(base_url=bundled.url) as client:  # one connection: each request is counted before the next
            client.post("/v1/ip", json={"service": "ns/a"})
            client.post("/v1/ip", json={"service": "bad"})
            text = client.get("/metrics").text
        assert 'metallb_address_service_requests_total{code="201",method="POST",path="/v1/ip"} 1.0' in text
        assert 'metallb_address_service_requests_total{code="400",method="POST",path="/v1/ip"} 1.0' in text
        assert 'metallb_address_service_leases{state="bound"} 1.0' in text


class TestProcess:
    """The server as a process: state file, restarts, command line."""

    def test_leases_survive_sigkill(self, start_server, tmp_path) -> None:
        """After SIGKILL and a restart the state file brings every lease back; new leases avoid them."""
        state = str(tmp_path / "state.json")
        args = ("--backend", "memory", "--cidr", "192.0.2.0/29", "--state-file", state)
        first = start_server(*args)
        lease = httpx.post(f"{first.url}/v1/ip", json={"service": "ns/a"}).json()
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=5)
        second = start_server(*args)
        again = httpx.post(f"{second.url}/v1/ip", json={"service": "ns/a"})
        other = httpx.post(f"{second.url}/v1/ip", json={"service": "ns/b"}).json()
        assert again.status_code == 200 and again.json()["id"] == lease["id"]
        assert other["ip"] != lease["ip"]
        assert json.loads(Path(state).read_text())["leases"][0]["id"] == lease["id"]

    def test_help_has_examples(self) -> None:
        """metallb address-service --help shows usage examples."""
        out = subprocess.run(
            [*COMMAND, "address-service", "--help"],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONSAFEPATH": "1"},
        ).stdout  # fmt: skip
        assert "examples:" in out and "--backend dhcp --interface eth1" in out

    def test_json_logs(self, start_server) -> None:
        """metallb's --log-format json (set up by the command line before the server runs) writes JSON lines."""
        server = start_server("--cidr", "192.0.2.0/29", options=("--log-format", "json"))
        httpx.post(f"{server.url}/v1/ip", json={"service": "ns/a"})
        server.proc.terminate()
        assert server.proc.wait(timeout=10) == 0
        lines = [json.loads(line) for line in server.log.read_text().splitlines()]
        assert any(line["msg"].startswith("leased 192.0.2.1 to ns/a") for line in lines)

    def test_unknown_backend(self) -> None:
        """An unknown backend name fails at start with a message naming the built-in ones."""
        proc = subprocess.run(
            [*COMMAND, "address-service", "--backend", "nope"],
            capture_output=True, text=True, env={**os.environ, "PYTHONSAFEPATH": "1"},
        )  # fmt: skip
        assert proc.returncode == 2 and "unknown backend 'nope': built in are memory, dhcp and dhcpv6" in proc.stderr

    @pytest.mark.parametrize(
        ("args", "says"),
        [
            (["--backend", "memory"], "backend 'memory': the memory backend needs at least one --cidr"),
            (["--listen", "nowhere", "--cidr", "192.0.2.0/24"], "--listen 'nowhere': write HOST:PORT"),
            (
                ["--auth-token-file", "/nonexistent/token", "--cidr", "192.0.2.0/24"],
                "--auth-token-file '/nonexistent/token': No such file or directory",
            ),
        ],
    )
    def test_bad_options(self, args: list[str], says: str) -> None:
        """A bad option stops the command with status 2 and one line naming the option, never a traceback."""
        proc = subprocess.run(
            [*COMMAND, "address-service", *args],
            capture_output=True, text=True, env={**os.environ, "PYTHONSAFEPATH": "1"}, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [says]

    def test_missing_interface(self) -> None:
        """A dhcp backend on an interface that does not exist fails at start, naming the interface."""
        proc = subprocess.run(
            [*COMMAND, "address-service", "--backend", "dhcp", "--interface", "nosuch0"],
            capture_output=True, text=True, env={**os.environ, "PYTHONSAFEPATH": "1"}, timeout=30,
        )  # fmt: skip
        assert proc.returncode == 1
        assert "cannot start the dhcp backend: [Errno 19] interface 'nosuch0': No such device" in proc.stderr
