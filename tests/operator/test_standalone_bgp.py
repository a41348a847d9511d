"""`metallb standalone` with the BGP plugin, peering with a real BIRD in a network namespace."""

from __future__ import annotations

import subprocess
import sys
import time

CONFIG = """
peers:
- peer-address: 192.0.2.1
  peer-asn: 64513
  my-asn: 64512
  router-id: 192.0.2.2
  hold-time: 9s
address-pools:
- name: routed
  protocol: bgp
  addresses: [198.51.100.0/28]
  bgp-advertisements:
  - localpref: 150
    communities: ["64512:7"]
"""
SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
"""
BIRD = """
router id 192.0.2.1;
protocol device {}
protocol bgp node {
  local 192.0.2.1 as 64513;
  neighbor 192.0.2.2 as 64512;
  passive on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
"""


class TestStandaloneBgp:
    def test_route_reaches_bird_and_is_withdrawn_on_sigterm(self, netlab, tmp_path):
        """The Service address appears in BIRD's table with our next hop and attributes, and goes on SIGTERM."""
        rtr, node = netlab.ns("rtr"), netlab.ns("node")
        netlab.veth(rtr, "eth0", node, "eth0")
        netlab.run(rtr, "ip addr add 192.0.2.1/24 dev eth0")
        netlab.run(node, "ip addr add 192.0.2.2/24 dev eth0")
        (tmp_path / "bird.conf").write_text(BIRD)
        ctl = tmp_path / "bird.ctl"
        netlab.popen(
            rtr, ["bird", "-f", "-c", str(tmp_path / "bird.conf"), "-s", str(ctl), "-P", str(tmp_path / "bird.pid")]
        )
        (tmp_path / "config.yaml").write_text(CONFIG)
        (tmp_path / "services.yaml").write_text(SERVICES)
        proc = netlab.popen(
            node,
            [
                sys.executable,
                "-m",
                "metallb.operator",
                "standalone",
                "--node",
                "n1",
                "--config",
                str(tmp_path / "config.yaml"),
                "--services",
                str(tmp_path / "services.yaml"),
                "--state",
                str(tmp_path / "state.json"),
                "--metrics-port",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "standalone.log", "wb"),
            cwd="/",
        )

        def routes() -> str:
            return netlab.run(rtr, f"birdc -s {ctl} show route all", check=False).stdout

        deadline = time.monotonic() + 30
        while "198.51.100.0/32" not in routes():
            assert time.monotonic() < deadline, (
                f"no route in BIRD\n{routes()}\n{(tmp_path / 'standalone.log').read_text()[-2000:]}"
            )
            time.sleep(0.2)
        table = routes()
        assert "via 192.0.2.2" in table
        assert "BGP.as_path: 64512" in table  # eBGP: our AS on the path, and no LOCAL_PREF sent
        assert "BGP.local_pref: 150" not in table
        assert "(64512,7)" in table
        proc.terminate()
        assert proc.wait(15) == 0
        deadline = time.monotonic() + 10
        while "198.51.100.0/32" in routes():
            assert time.monotonic() < deadline, "route not withdrawn after SIGTERM"
            time.sleep(0.2)
