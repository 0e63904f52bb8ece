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

# Binaries the guard's lab tests use, out of Debian packages this machine
# must not install (their servers would run here): only the one file is
# extracted, from the machine's own apt sources, into /var/cache/dsrprov/DIR.
# promtool (package prometheus) checks the guard's metric file;
# prometheus-node-exporter is copied into a lab real server, where it serves
# the guard's metrics through its textfile collector.
extract_binary() {  # PACKAGE DIR MEMBER
  [ ! -x "/var/cache/dsrprov/$2/$3" ] || return 0
  echo "extracting $3 from Debian's $1 package"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  scratch=$(mktemp -d)
  (cd "$scratch" && apt-get download -qq "$1" >/dev/null 2>&1) ||
    { $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq && (cd "$scratch" && apt-get download -qq "$1"); }
  $sudo_cmd mkdir -p "/var/cache/dsrprov/$2"
  dpkg-deb --fsys-tarfile "$scratch"/"$1"_*.deb | $sudo_cmd tar -x -C "/var/cache/dsrprov/$2" "./$3"
  rm -rf "$scratch"
}
extract_binary prometheus promtool usr/bin/promtool
extract_binary prometheus-node-exporter node-exporter usr/bin/prometheus-node-exporter

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
