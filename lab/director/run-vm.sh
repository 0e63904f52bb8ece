#!/bin/bash
# Run the dsrprov LVS-DR director as a QEMU TCG VM on a lab bridge.
#
#   run-vm.sh start --name NAME --bridge BRIDGE --ipv4 A.B.C.D/N --mac MAC \
#                   --authorized-keys FILE --state-dir DIR \
#                   [--ipv6 ADDR/N] [--gw IPV4] [--gw6 IPV6] [--tap TAP] \
#                   [--image-dir DIR] [--mem MB] [--smp N]
#   run-vm.sh wait  --state-dir DIR --known-hosts FILE [--timeout SECONDS]
#   run-vm.sh stop  --state-dir DIR
#   run-vm.sh status --state-dir DIR
#
# start: builds the image if needed (lab/director/build-image.sh, cached in
#   --image-dir, default $DSRPROV_DIRECTOR_IMAGE_DIR or
#   /var/cache/dsrprov/director), creates a qcow2 overlay on the raw base in
#   the state dir (each start is clean), creates the TAP and adds it to the
#   bridge, and starts QEMU in the background (pidfile DIR/qemu.pid, serial
#   log DIR/serial.log).
# wait: waits until the VM prints "DSRPROV-HOSTKEY ssh-ed25519 KEY" on its
#   serial console and sshd on port 22 offers that same key, then writes
#   "IP ssh-ed25519 KEY" (one line per address) to the known_hosts file.
# stop: kills QEMU, deletes the TAP and the overlay (the serial log is kept).
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
PROG=$(basename "$0")

die() { echo "$PROG ${CMD:-}: $*" >&2; exit 1; }
# No silent exit under set -e: name the step that failed and where to look.
trap 'rc=$?; echo "$PROG ${CMD:-}: failed (exit $rc) at line $LINENO: $BASH_COMMAND${STATE:+; serial log: $STATE/serial.log}" >&2' ERR
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
CMD=$1; shift

NAME= BRIDGE= IPV4= IPV6= GW= GW6= MAC= AKEYS= STATE= TAP= KNOWN= TIMEOUT=180
IMAGE_DIR=${DSRPROV_DIRECTOR_IMAGE_DIR:-/var/cache/dsrprov/director}
MEM=1024 SMP=2
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "option $1 needs a value"
  case "$1" in
    --name) NAME=$2 ;;
    --bridge) BRIDGE=$2 ;;
    --ipv4) IPV4=$2 ;;
    --ipv6) IPV6=$2 ;;
    --gw) GW=$2 ;;
    --gw6) GW6=$2 ;;
    --mac) MAC=$2 ;;
    --authorized-keys) AKEYS=$2 ;;
    --state-dir) STATE=$2 ;;
    --tap) TAP=$2 ;;
    --image-dir) IMAGE_DIR=$2 ;;
    --mem) MEM=$2 ;;
    --smp) SMP=$2 ;;
    --known-hosts) KNOWN=$2 ;;
    --timeout) TIMEOUT=$2 ;;
    *) die "unknown option $1" ;;
  esac
  shift 2
done
[ -n "$STATE" ] || die "--state-dir is required"

qemu_pid() {
  local pid
  pid=$(cat "$STATE/qemu.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Make sure the pid is still our QEMU, not a recycled pid.
  grep -qa -- "$STATE/overlay.qcow2" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

load_env() {
  [ -r "$STATE/vm.env" ] || die "no VM state in $STATE (not started?)"
  # shellcheck disable=SC1091
  . "$STATE/vm.env"
}

cmd_start() {
  [ -n "$NAME" ] && [ -n "$BRIDGE" ] && [ -n "$IPV4" ] && [ -n "$MAC" ] && [ -n "$AKEYS" ] \
    || die "start needs --name --bridge --ipv4 --mac --authorized-keys --state-dir"
  [[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,62}$ ]] || die "bad --name $NAME"
  [[ $IPV4 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]] || die "--ipv4 must be A.B.C.D/N"
  [ -z "$IPV6" ] || [[ $IPV6 =~ ^[0-9a-fA-F:]+/[0-9]+$ ]] || die "--ipv6 must be ADDR/N"
  [[ $MAC =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || die "bad --mac $MAC"
  [ -r "$AKEYS" ] || die "cannot read $AKEYS"
  ip link show "$BRIDGE" >/dev/null 2>&1 || die "no bridge $BRIDGE (netavark creates a podman network's bridge only when its first container starts)"
  if [ -z "$TAP" ]; then
    TAP="dtap-$(echo "$NAME" | tr -cd 'A-Za-z0-9' | cut -c1-10)"
  fi
  [ ${#TAP} -le 15 ] || die "tap name $TAP longer than 15 characters"

  mkdir -p "$STATE"
  STATE=$(readlink -f "$STATE")
  if qemu_pid >/dev/null; then die "VM already running (pid $(qemu_pid)); stop it first"; fi

  "$HERE/build-image.sh" "$IMAGE_DIR"
  IMAGE_DIR=$(readlink -f "$IMAGE_DIR")

  # Stale TAP from an earlier run of this state dir, or someone else's?
  if ip link show "$TAP" >/dev/null 2>&1; then
    if [ -r "$STATE/vm.env" ] && grep -qx "TAP=$TAP" "$STATE/vm.env"; then
      ip link del "$TAP"
    else
      die "interface $TAP exists and is not ours; pass --tap"
    fi
  fi

  rm -f "$STATE/overlay.qcow2" "$STATE/qemu.pid" "$STATE/serial.log"
  qemu-img create -q -f qcow2 -F raw -b "$IMAGE_DIR/director.img" "$STATE/overlay.qcow2"
  install -m 600 "$AKEYS" "$STATE/authorized_keys"

  {
    echo "NAME=$NAME"
    echo "BRIDGE=$BRIDGE"
    echo "TAP=$TAP"
    echo "IPV4=$IPV4"
    echo "IPV6=$IPV6"
    echo "MAC=$MAC"
    echo "STARTED=$(date +%s.%N)"
  } > "$STATE/vm.env"

  ip tuntap add dev "$TAP" mode tap
  ip link set "$TAP" master "$BRIDGE"
  ip link set "$TAP" up

  local append="root=/dev/vda rw console=ttyS0,115200 panic=-1 mitigations=off"
  append+=" systemd.hostname=$NAME dsrprov.addr=$IPV4"
  [ -n "$IPV6" ] && append+=" dsrprov.addr6=$IPV6"
  [ -n "$GW" ] && append+=" dsrprov.gw=$GW"
  [ -n "$GW6" ] && append+=" dsrprov.gw6=$GW6"

  if ! qemu-system-x86_64 \
      -name "dsrprov-$NAME" \
      -accel tcg,thread=multi -cpu max -m "$MEM" -smp "$SMP" \
      -kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img" -append "$append" \
      -drive "file=$STATE/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe,discard=unmap" \
      -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" \
      -device "virtio-net-pci,netdev=n0,mac=$MAC" \
      -device virtio-rng-pci \
      -fw_cfg "name=opt/dsrprov/authorized_keys,file=$STATE/authorized_keys" \
      -display none -monitor none -serial "file:$STATE/serial.log" \
      -no-reboot -daemonize -pidfile "$STATE/qemu.pid"; then
    ip link del "$TAP" 2>/dev/null || true
    die "qemu failed to start"
  fi
  echo "started $NAME: pid $(cat "$STATE/qemu.pid"), tap $TAP on $BRIDGE, $IPV4${IPV6:+ $IPV6}, serial $STATE/serial.log"
}

cmd_wait() {
  [ -n "$KNOWN" ] || die "wait needs --known-hosts FILE"
  STATE=$(readlink -f "$STATE")
  load_env
  local ip=${IPV4%/*} ip6=${IPV6%/*} deadline=$(( $(date +%s) + TIMEOUT )) key= scanned=
  while :; do
    qemu_pid >/dev/null || die "QEMU is not running; see $STATE/serial.log"
    if [ -z "$key" ]; then
      key=$(tr -d '\r' < "$STATE/serial.log" 2>/dev/null \
            | sed -n 's/.*DSRPROV-HOSTKEY \(ssh-ed25519 [A-Za-z0-9+/=]\{40,\}\).*/\1/p' | tail -n1)
    fi
    if [ -n "$key" ]; then
      # sshd may not listen yet, or the bridge may not pass traffic yet:
      # ssh-keyscan failing is normal until the deadline, never fatal.
      scanned=$(ssh-keyscan -T 3 -t ed25519 "$ip" 2>/dev/null | awk '$2=="ssh-ed25519" {print $2" "$3; exit}' || true)
      if [ -n "$scanned" ]; then
        [ "$scanned" = "$key" ] || die "host key on port 22 of $ip ($scanned) differs from the serial console's ($key)"
        break
      fi
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      if [ -n "$key" ]; then
        die "timeout after ${TIMEOUT}s: the VM printed its host key but ssh-keyscan $ip never answered (does this host have an address on bridge $BRIDGE? ip -4 addr show $BRIDGE); see $STATE/serial.log"
      fi
      die "timeout after ${TIMEOUT}s: the VM never printed its host key on the serial console; see $STATE/serial.log"
    fi
    sleep 1
  done
  {
    echo "$ip $key"
    [ -n "$ip6" ] && echo "$ip6 $key"
  } > "$KNOWN.tmp"
  mv "$KNOWN.tmp" "$KNOWN"
  printf 'VM %s ready: ssh on %s answers with the serial-console key, %.1f s after start; known_hosts in %s\n' \
    "$NAME" "$ip" "$(awk -v a="$(date +%s.%N)" -v b="$STARTED" 'BEGIN{print a-b}')" "$KNOWN"
}

cmd_stop() {
  STATE=$(readlink -f "$STATE")
  [ -r "$STATE/vm.env" ] || { echo "nothing to stop in $STATE"; return 0; }
  load_env
  local pid i
  if pid=$(qemu_pid); then
    kill "$pid"
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  fi
  ip link show "$TAP" >/dev/null 2>&1 && ip link del "$TAP" || true
  rm -f "$STATE/overlay.qcow2" "$STATE/qemu.pid" "$STATE/authorized_keys"
  echo "stopped $NAME (tap $TAP removed)"
}

cmd_status() {
  STATE=$(readlink -f "$STATE")
  load_env
  if pid=$(qemu_pid); then echo "$NAME running, pid $pid, tap $TAP, $IPV4"; else echo "$NAME not running"; return 1; fi
}

case "$CMD" in
  start) cmd_start ;;
  wait) cmd_wait ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  -h|--help|help) usage ;;
  *) die "unknown command $CMD (start|wait|stop|status)" ;;
esac
