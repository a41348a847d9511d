"""`metallb standalone` end to end in network namespaces: its addresses answer real clients."""

from __future__ import annotations

import re
import subprocess
import sys

from metallb.allocator.testing import wait_for

CONFIG = """
address-pools:
- name: l2
  protocol: layer2
  addresses: [192.0.2.100-192.0.2.101, "2001:db8:1::100/127"]
"""
SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80}]
"""


class TestStandaloneLayer2:
    def test_arping_and_ndisc6_reach_standalone_addresses(self, netlab, tmp_path):
        """A dual-stack Service from standalone mode answers arping and ndisc6 from a client namespace, until SIGTERM."""
        node, client = netlab.ns("node"), netlab.ns("client")
        netlab.veth(node, "eth0", client, "eth0", mac_a="02:00:00:00:aa:01", mac_b="02:00:00:00:aa:02")
        netlab.run(node, "ip addr add 192.0.2.1/24 dev eth0 && ip addr add 2001:db8:1::1/64 dev eth0 nodad")
        netlab.run(client, "ip addr add 192.0.2.2/24 dev eth0 && ip addr add 2001:db8:1::2/64 dev eth0 nodad")
        (tmp_path / "config.yaml").write_text(CONFIG)
        (tmp_path / "services.yaml").write_text(SERVICES)
        out = open(tmp_path / "out.txt", "wb")
        proc = netlab.popen(
            node,
            [
                sys.executable,
                "-m",
                "metallb.operator",
                "standalone",
                "--node",
                "n1",
                "--interfaces",
                "eth0",
                "--config",
                str(tmp_path / "config.yaml"),
                "--services",
                str(tmp_path / "services.yaml"),
                "--state",
                str(tmp_path / "state.json"),
                "--metrics-port",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
        wait_for(lambda: "default/web" in (tmp_path / "out.txt").read_text())
        arp = wait_for(
            lambda: re.search(
                r"from (\S+) \(192\.0\.2\.100\)",
                netlab.run(client, "arping -c 1 -w 1 -i eth0 192.0.2.100", check=False).stdout,
            )
        )
        assert arp.group(1).lower() == "02:00:00:00:aa:01"
        nd = netlab.run(client, "ndisc6 -1 -r 3 -w 500 2001:db8:1::100 eth0", check=False).stdout
        assert "02:00:00:00:AA:01" in nd.upper(), nd
        # The address is answered by metallb, never configured on the node.
        assert "192.0.2.100" not in netlab.run(node, "ip addr").stdout
        proc.terminate()
        assert proc.wait(10) == 0
        after = netlab.run(client, "arping -c 2 -w 2 -i eth0 192.0.2.100", check=False).stdout
        assert "bytes from" not in after
