"""`metallb standalone` with a ``bfd-profiles`` ConfigMap section, peering with BIRD in a network namespace."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.netns

CONFIG = """
bfd-profiles:
- name: fast
  receive-interval: 100
  transmit-interval: 100
  detect-multiplier: 3
peers:
- peer-address: 192.0.2.1
  peer-asn: 64513
  my-asn: 64512
  router-id: 192.0.2.2
  hold-time: 30s
  bfd-profile: fast
address-pools:
- name: routed
  protocol: bgp
  addresses: [198.51.100.0/28]
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
protocol bfd { interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp node {
  local 192.0.2.1 as 64513;
  neighbor 192.0.2.2 as 64512;
  passive on;
  hold time 30;
  error wait time 1, 5;
  bfd on;
  ipv4 { import all; export none; };
}
"""


class TestStandaloneBfd:
    def test_bfd_comes_up_and_a_cut_path_withdraws_at_once(self, netlab, tmp_path):
        """The standalone speaker runs BFD from the ConfigMap; BIRD shows it Up and withdraws long before the hold time."""
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
        log = tmp_path / "standalone.log"
        proc = netlab.popen(
            node,
            [sys.executable, "-m", "metallb.operator", "standalone", "--node", "n1", "--config",
             str(tmp_path / "config.yaml"), "--services", str(tmp_path / "services.yaml"), "--state",
             str(tmp_path / "state.json"), "--metrics-port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),
            cwd="/",
        )  # fmt: skip

        def birdc(cmd: str) -> str:
            return netlab.run(rtr, f"birdc -s {ctl} {cmd}", check=False).stdout

        def wait(what: str, predicate, timeout: float = 30) -> float:
            start = time.monotonic()
            while not predicate():
                assert time.monotonic() - start < timeout, (
                    f"{what}\n{birdc('show bfd sessions')}\n{log.read_text()[-3000:]}"
                )
                time.sleep(0.05)
            return time.monotonic() - start

        wait("no BFD session Up in BIRD", lambda: " Up " in birdc("show bfd sessions"))
        wait("no route in BIRD", lambda: "198.51.100.0/32" in birdc("show route"))
        netlab.run(node, "tc qdisc replace dev eth0 root pfifo limit 0")
        took = wait("the route stayed", lambda: "198.51.100.0/32" not in birdc("show route"), timeout=5)
        assert took < 1.5  # 300 ms detection; the hold time is 30 s
        netlab.run(node, "tc qdisc del dev eth0 root")
        wait("the route did not come back", lambda: "198.51.100.0/32" in birdc("show route"))
        proc.terminate()
        assert proc.wait(15) == 0
        assert "BFD session to 192.0.2.1" in log.read_text()
