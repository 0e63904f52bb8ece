#!/bin/bash
# End-to-end check of the director VM on a throw-away podman network.
#
# Usage: lab/director/test-vm.sh [IMAGE_DIR]
#   IMAGE_DIR defaults to $DSRPROV_DIRECTOR_IMAGE_DIR or /var/cache/dsrprov/director.
#
# Builds the image (cached), creates podman network dsrprov-vmtest
# (10.250.9.0/24), boots the VM as 10.250.9.2/24, waits for the serial-console
# host key and sshd, logs in with StrictHostKeyChecking=yes against the
# recorded known_hosts, runs modprobe ip_vs / ipvsadm -Ln / keepalived
# --version, then removes VM, TAP and network. Prints the timings.
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
REPO=$(readlink -f "$HERE/../..")
IMAGE_DIR=${1:-${DSRPROV_DIRECTOR_IMAGE_DIR:-/var/cache/dsrprov/director}}
NET=dsrprov-vmtest
SUBNET=10.250.9.0/24
VMIP=10.250.9.2
MAC=52:54:00:fa:09:02
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/lab/containers.conf}

WORK=$(mktemp -d /tmp/dsrprov-vmtest.XXXXXX)
STATE=$WORK/state
created_net=
made_bridge=
BRIDGE=
cleanup() {
  "$HERE/run-vm.sh" stop --state-dir "$STATE" >/dev/null 2>&1 || true
  [ -n "$created_net" ] && podman network rm -f "$NET" >/dev/null 2>&1 || true
  if [ -n "$made_bridge" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" || true; fi
  if [ -f "$STATE/serial.log" ]; then cp "$STATE/serial.log" /tmp/dsrprov-vmtest-serial.log; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

t0=$(date +%s)
"$HERE/build-image.sh" "$IMAGE_DIR"
t1=$(date +%s)
echo "image ready in $((t1 - t0)) s"

if podman network exists "$NET"; then
  echo "podman network $NET already exists; remove it first" >&2; exit 1
fi
podman network create --subnet "$SUBNET" "$NET" >/dev/null
created_net=1
BRIDGE=$(podman network inspect "$NET" --format '{{.NetworkInterface}}')
echo "network $NET on bridge $BRIDGE"
# netavark creates the bridge lazily (with the first container); make sure it exists.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge
  ip addr add 10.250.9.1/24 dev "$BRIDGE"
  ip link set "$BRIDGE" up
  made_bridge=1
fi

ssh-keygen -q -t ed25519 -N '' -f "$WORK/id" -C dsrprov-vmtest
"$HERE/run-vm.sh" start --name vmtest --bridge "$BRIDGE" --ipv4 "$VMIP/24" \
  --ipv6 fd00:250:9::2/64 --mac "$MAC" --authorized-keys "$WORK/id.pub" \
  --state-dir "$STATE" --image-dir "$IMAGE_DIR"
t2=$(date +%s.%N)
"$HERE/run-vm.sh" wait --state-dir "$STATE" --known-hosts "$WORK/known_hosts" --timeout 240
t3=$(date +%s.%N)
cat "$WORK/known_hosts"

ssh -i "$WORK/id" -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
  -o UserKnownHostsFile="$WORK/known_hosts" -o GlobalKnownHostsFile=/dev/null \
  -o BatchMode=yes -o ConnectTimeout=10 root@"$VMIP" '
    set -e
    uname -r
    modprobe ip_vs
    ipvsadm -Ln
    keepalived --version 2>&1 | head -n1
    ip -br addr
    systemctl is-system-running || true
    systemd-analyze || true
  '
t4=$(date +%s.%N)
awk -v a="$t2" -v b="$t3" -v c="$t4" 'BEGIN{printf "boot-to-ssh %.1f s, ssh checks %.1f s\n", b-a, c-b}'
echo "director VM test OK"
