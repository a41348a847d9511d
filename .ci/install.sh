#!/usr/bin/env bash
# Install what metallb's demo and tests need on a fresh Debian 12 machine, as root.
# Idempotent. Creates the virtual environment $VENV (default: .venv in the repo)
# with metallb installed from a freshly built wheel (so tests see what users get).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-$PWD/.venv}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

# prometheus: only for promtool (tests/operator/test_monitoring.py); about 11 s and 100 MB, and no lighter
# Debian package ships promtool. policy-rc.d below keeps its server from starting.
APT_PKGS=(iproute2 iputils-ping arping ndisc6 libpcap0.8 tcpdump bird2 gobgpd frr dnsmasq-base openssl python3-venv prometheus)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  # Package scripts would start frr/bird in the root namespace; tests start their own.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/metallb-apt.log 2>&1 || { tail -30 /tmp/metallb-apt.log; exit 1; }
  [ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# pip's noisy 'WARNING: Location' lines are dropped; its exit status is kept (pipefail;
# grep finding nothing to print is no failure).
pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
pip install -q -U pip 'setuptools>=69' wheel
rm -rf build dist
pip wheel -q --no-deps --no-build-isolation -w dist .
wheels=(dist/metallb-*.whl)
# Every extra (the operator, address services, DHCP), at the versions CI tests (.ci/constraints.txt).
pip install -q --force-reinstall --no-deps "${wheels[0]}"
pip install -q -c .ci/constraints.txt "${wheels[0]}[all]"
if [ -n "${WITH_TEST_TOOLS:-}" ]; then
  pip install -q -c .ci/constraints.txt -r .ci/requirements-test.txt -r docs/requirements.txt
fi
"$VENV/bin/python" -c "import metallb.allocator, metallb.operator.cli" || { echo "metallb did not install" >&2; exit 1; }
