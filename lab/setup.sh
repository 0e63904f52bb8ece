#!/bin/sh
# Install what dsrprov's lab and tests need, idempotently: Debian packages
# (only when one is missing), then .venv with the project and its dev extras
# (only when pyproject.toml changed). A re-run on a ready machine takes seconds.
set -eu
cd "$(dirname "$0")/.."

packages="podman netavark aardvark-dns iptables runc debootstrap iproute2 nftables arping tcpdump openssh-client make python3-venv
qemu-system-x86 qemu-utils e2fsprogs keepalived ipvsadm mono-mcs"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi

# promtool checks the guard's metric file in the lab tests. It comes out of
# Debian's prometheus package, whose server this machine must not run: only
# that one binary is extracted (from the machine's own apt sources).
promtool=/var/cache/dsrprov/promtool/usr/bin/promtool
if [ ! -x "$promtool" ]; then
  echo "extracting promtool from Debian's prometheus package"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  scratch=$(mktemp -d)
  (cd "$scratch" && apt-get download -qq prometheus >/dev/null 2>&1) ||
    { $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq && (cd "$scratch" && apt-get download -qq prometheus); }
  $sudo_cmd mkdir -p /var/cache/dsrprov/promtool
  dpkg-deb --fsys-tarfile "$scratch"/prometheus_*.deb | $sudo_cmd tar -x -C /var/cache/dsrprov/promtool ./usr/bin/promtool
  rm -rf "$scratch"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.dsrprov-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing the Python environment in .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
