#!/usr/bin/env bash
# The embedded default, on one machine as root: install metallb, then run
# `metallb standalone` (controller and speaker without Kubernetes) inside a
# throw-away network namespace "node", give the example Services addresses
# from a static pool (and from the bundled address service), and show the
# address answering ARP from a second namespace "client". Everything it
# creates is removed on exit; no traffic leaves the two namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install.sh >/dev/null
M="$PWD/.venv/bin/metallb"
P=demo$$
NODE=$P-node CLIENT=$P-client
WORK=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NODE" 2>/dev/null || true
  ip netns del "$CLIENT" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== two namespaces joined by a veth pair: node 192.0.2.1, client 192.0.2.2"
ip netns add "$NODE"; ip netns add "$CLIENT"
ip -n "$NODE" link set lo up; ip -n "$CLIENT" link set lo up
ip link add eth0 netns "$NODE" address 02:00:00:00:de:01 type veth peer name eth0 netns "$CLIENT" address 02:00:00:00:de:02
ip -n "$NODE" addr add 192.0.2.1/24 dev eth0; ip -n "$CLIENT" addr add 192.0.2.2/24 dev eth0
ip -n "$NODE" link set eth0 up; ip -n "$CLIENT" link set eth0 up

if "$M" address-service --help >/dev/null 2>&1; then
  echo "== the bundled address service (memory backend) on the node's loopback"
  ip netns exec "$NODE" "$M" address-service --listen 127.0.0.1:8900 --backend memory --cidr 192.0.2.64/28 \
    --state-file "$WORK/as-state.json" >"$WORK/address-service.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do ip netns exec "$NODE" bash -c 'exec 3<>/dev/tcp/127.0.0.1/8900' 2>/dev/null && break; sleep 0.1; done
  CONFIG=examples/demo-config.yaml
else
  CONFIG=examples/demo-config-static.yaml
fi

echo "== metallb check-config $CONFIG"
"$M" check-config -q "$CONFIG" && echo "valid"

echo "== metallb standalone --config $CONFIG --services examples/demo-services.yaml --node demo-node"
ip netns exec "$NODE" "$M" standalone --config "$CONFIG" --services examples/demo-services.yaml \
  --node demo-node --interfaces eth0 --state "$WORK/state.json" --metrics-port 7472 >"$WORK/standalone.out" 2>"$WORK/standalone.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "default/web" "$WORK/standalone.out" 2>/dev/null && break; sleep 0.1; done
cat "$WORK/standalone.out"
sleep 0.5
ADDRS=$(ip netns exec "$NODE" "$M" status --url http://127.0.0.1:7472 --json |
  python3 -c 'import json,sys; print(" ".join(a for s in json.load(sys.stdin).values() for a in s["addresses"]))')
for ip in $ADDRS; do
  echo "== arping $ip from the client namespace (answered by metallb's responder, not the kernel)"
  ip netns exec "$CLIENT" arping -c 2 -i eth0 "$ip"
done
echo "== metallb status"
ip netns exec "$NODE" "$M" status --url http://127.0.0.1:7472
echo "== ip addr on the node (the service address is not there: metallb answers ARP itself)"
ip -n "$NODE" -br addr show eth0
