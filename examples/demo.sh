#!/usr/bin/env bash
# The embedded default: install metallb, check the bundled example config, and
# show services getting addresses from its pools (first fit, sharing, IPv6, dual stack).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install.sh
M=.venv/bin/metallb
echo "== metallb check-config examples/config.yaml"
$M check-config examples/config.yaml
echo "== metallb plugins"
$M plugins || true
echo "== metallb allocate"
$M allocate --config examples/config.yaml default/web default/dns-udp default/api@staging \
  default/db=203.0.113.10 'default/v6#6' 'default/dual%4,6'
